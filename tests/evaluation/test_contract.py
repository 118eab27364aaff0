"""Contract tests: our requests through the real client and the official `openai` package against the fake
OpenAI-compatible HTTP server (chat for generation, completions with echo + logprobs for multiple choice)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from evaluation.kinds.choice import loglikelihood_request
from evaluation.registry import TaskRegistry
from evaluation.runner import RunOptions, run_task
from evaluation.send import send
from evaluation.store import RunStore
from evaluation.types import Request
from llm_backend.client import OpenAIChatClient
from llm_backend.errors import BackendUnavailableError
from llm_backend.settings import Settings
from llm_backend.testing import FakeOpenAIServer, FakeReply


def _client(url: str) -> OpenAIChatClient:
    return OpenAIChatClient(Settings.load(base_url=url, max_retries=0))


async def test_loglikelihood_sums_continuation_tokens_only() -> None:
    with FakeOpenAIServer([FakeReply(token_logprobs={"Answer": -5.0, "1": -0.25, "2": -0.5})]) as server:
        # The fake tokenizer makes " 1" and " 2" two tokens (as Qwen splits digits): both are summed, "Answer" is not.
        response = await send(_client(server.url), loglikelihood_request("Answer:", " 1 2"))
        body = server.requests[-1][1]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 0
    assert response.error is None and response.logprob == pytest.approx(-0.75)


async def test_send_turns_server_errors_into_sample_errors() -> None:
    with FakeOpenAIServer([FakeReply(status=500, error="kaboom")]) as server:
        response = await send(_client(server.url), Request(kind="chat", body={"messages": [{"role": "user", "content": "x"}]}, params={"temperature": 0}))
    assert response.error is not None and "500" in response.error and "kaboom" in response.error


async def test_send_raises_when_server_is_down() -> None:
    client = OpenAIChatClient(Settings.load(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0, connect_timeout=0.5))
    with pytest.raises(BackendUnavailableError):
        await send(client, Request(kind="chat", body={"messages": [{"role": "user", "content": "x"}]}))


def test_multiple_choice_run_through_http(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "mc" / "test"
    folder.mkdir(parents=True)
    (folder / "geo_test.csv").write_text("question,choice0,choice1,choice2,choice3,answer\nCapital of France?,Rome,Paris,Oslo,Bern,1\nCapital of Norway?,Rome,Paris,Oslo,Bern,2\n")

    def responder(body: dict[str, Any]) -> FakeReply:
        # The model always prefers " B"; the fake tokenizer gives the option letter as its own token.
        return FakeReply(token_logprobs={"A": -3.0, "B": -0.2, "C": -1.5, "D": -4.0})

    with FakeOpenAIServer(responder=responder) as server:
        settings = Settings.load(base_url=server.url, home=tmp_path / "home", data_dir=tmp_path / "data", max_retries=0)
        task = TaskRegistry().get("mmlu").with_overrides(data={"dir": "mc"})
        result = run_task(task, client=OpenAIChatClient(settings), settings=settings, options=RunOptions(concurrency=4))
        prompts = [body["prompt"] for path, body in server.requests if path.endswith("/completions")]
    assert result.metrics["acc"].value == 0.5 and result.counts["errors"] == 0
    assert sorted(p[-2:] for p in prompts) == [" A", " A", " B", " B", " C", " C", " D", " D"]
    rec = RunStore(Path(result.run_dir)).read_samples()[1]
    assert rec.extra["logprobs"] == [-3.0, -0.2, -1.5, -4.0] and rec.metrics == {"acc": 0.0}


async def test_server_without_echo_logprobs_is_a_sample_error() -> None:
    from llm_backend.types import CompletionResult

    class NoLogprobs:
        async def achat(self, messages, **kwargs):  # type: ignore[no-untyped-def]
            raise AssertionError

        async def acompletion(self, prompt: str, **kwargs: Any) -> CompletionResult:
            return CompletionResult(text=prompt)

    response = await send(NoLogprobs(), loglikelihood_request("Q:", " A"))
    assert response.error is not None and "echo + logprobs" in response.error
