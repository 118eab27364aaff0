"""End-to-end runs on in-process fakes: scoring, errors, resume, cache, concurrency, multiple choice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from evaluation.registry import TaskRegistry
from evaluation.runner import RunInterrupted, RunOptions, run_task
from evaluation.store import RunStore
from llm_backend.errors import BackendError, BackendUnavailableError
from llm_backend.settings import Settings
from llm_backend.testing import ScriptedChatClient
from llm_backend.types import ChatResult, CompletionResult, TokenLogprob, Usage


def _answer(messages: list[dict[str, Any]]) -> str:
    q = messages[-1]["content"]  # "Q: 2*i?\nA:"
    i = int(q.split("*")[1].split("?")[0])
    return f"twice {i} is {2 * i}.\n#### {2 * i}" if i % 3 else f"it is {2 * i + 1}"


def _settings(tmp_path: Path, data: Path) -> Settings:
    return Settings.load(home=tmp_path / "home", data_dir=data, base_url="http://fake/v1")


def test_generate_run_scores_and_writes_results(tmp_path: Path, tiny) -> None:
    task_file, data = tiny
    client = ScriptedChatClient(default=_answer)
    result = run_task(TaskRegistry().get(str(task_file)), client=client, settings=_settings(tmp_path, data), options=RunOptions(concurrency=3))
    # i = 0..5: i % 3 == 0 (0 and 3) answer wrongly without "####"
    assert result.metrics["exact_match,strict"].value == pytest.approx(4 / 6)
    assert result.metrics["exact_match,flexible"].value == pytest.approx(4 / 6)
    assert result.counts == {"samples": 6, "scored": 6, "errors": 0, "cached": 0, "resumed": 0}
    run_dir = Path(result.run_dir)
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["model"] == "scripted-model" and saved["provenance"]["git"]["commit"]
    assert saved["settings"]["api_key_set"] is False and "api_key" not in saved["settings"]
    assert saved["config"]["fewshot"]["n"] == 1
    # The one few-shot example went in as a user/assistant pair.
    first = client.calls[0]["messages"]
    assert [m["role"] for m in first] == ["user", "assistant", "user"] and first[1]["content"] == "#### 20"
    assert client.calls[0]["temperature"] == 0.0 and client.calls[0]["stop"] == ["Q:"]


def test_failed_requests_are_errors_not_wrong_answers_and_are_retried(tmp_path: Path, tiny) -> None:
    task_file, data = tiny
    task = TaskRegistry().get(str(task_file))
    settings = _settings(tmp_path, data)
    failing = ScriptedChatClient(default=lambda m: (_ for _ in ()).throw(BackendError("server answered 500")) if "2*4?" in m[-1]["content"] else _answer(m))
    first = run_task(task, client=failing, settings=settings, options=RunOptions(concurrency=1))
    assert first.counts["errors"] == 1 and first.counts["scored"] == 5
    assert first.metrics["exact_match,strict"].n == 5  # the failed sample is not a zero
    assert not first.complete
    records = RunStore(Path(first.run_dir)).read_samples()
    assert [r.sample_id for r in records if r.error] == ["4"] and "500" in (records[4].error or "")
    # Same command again: only the failed sample is asked again.
    healthy = ScriptedChatClient(default=_answer)
    second = run_task(task, client=healthy, settings=settings, options=RunOptions(concurrency=1, use_cache=False))
    assert len(healthy.calls) == 1
    assert second.counts == {"samples": 6, "scored": 6, "errors": 0, "cached": 0, "resumed": 5}
    assert second.metrics["exact_match,strict"].value == pytest.approx(4 / 6)


def test_unreachable_server_stops_the_run_resumably(tmp_path: Path, tiny) -> None:
    task_file, data = tiny
    task = TaskRegistry().get(str(task_file))
    settings = _settings(tmp_path, data)
    state = {"n": 0}

    def flaky(messages: list[dict[str, Any]]) -> str:
        state["n"] += 1
        if state["n"] > 2:
            raise BackendUnavailableError("model server not reachable at http://fake/v1")
        return _answer(messages)

    with pytest.raises(RunInterrupted, match="stopped after 2 of 6 samples.*resume"):
        run_task(task, client=ScriptedChatClient(default=flaky), settings=settings, options=RunOptions(concurrency=1))
    client = ScriptedChatClient(default=_answer)
    result = run_task(task, client=client, settings=settings, options=RunOptions(concurrency=1, use_cache=False))
    assert len(client.calls) == 4 and result.counts["scored"] == 6 and result.counts["resumed"] == 2


def test_cache_answers_a_rerun(tmp_path: Path, tiny) -> None:
    task_file, data = tiny
    task = TaskRegistry().get(str(task_file))
    settings = _settings(tmp_path, data)
    run_task(task, client=ScriptedChatClient(default=_answer), settings=settings, options=RunOptions())
    again = ScriptedChatClient(default=_answer)
    result = run_task(task, client=again, settings=settings, options=RunOptions(rerun=True))
    assert again.calls == [] and result.counts["cached"] == 6 and result.timings["cache_hits"] == 6
    nocache = ScriptedChatClient(default=_answer)
    run_task(task, client=nocache, settings=settings, options=RunOptions(rerun=True, use_cache=False))
    assert len(nocache.calls) == 6


class _SlowClient(ScriptedChatClient):
    """Counts requests in flight."""

    def __init__(self) -> None:
        super().__init__(default=_answer)
        self.active = 0
        self.peak = 0

    async def achat(self, messages, **kwargs):  # type: ignore[no-untyped-def]
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.02)
        self.active -= 1
        return self._next(messages, kwargs)


def test_concurrency_limit(tmp_path: Path, tiny) -> None:
    task_file, data = tiny
    client = _SlowClient()
    run_task(TaskRegistry().get(str(task_file)), client=client, settings=_settings(tmp_path, data), options=RunOptions(concurrency=2))
    assert client.peak == 2
    client = _SlowClient()
    run_task(TaskRegistry().get(str(task_file)), client=client, settings=_settings(tmp_path, data), options=RunOptions(concurrency=1, rerun=True, use_cache=False))
    assert client.peak == 1


class _LogprobClient:
    """Completions whose continuation log-probability depends on the option letter."""

    model = "lp-model"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.prompts: list[str] = []

    async def achat(self, messages, **kwargs) -> ChatResult:  # type: ignore[no-untyped-def]
        raise AssertionError("multiple choice must not use chat")

    async def acompletion(self, prompt: str, **kwargs: Any) -> CompletionResult:
        assert kwargs == {"max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0.0}
        self.prompts.append(prompt)
        cont = prompt[prompt.rindex(" ") :]
        head = prompt[: -len(cont)]
        tokens = (TokenLogprob(head, None, 0), TokenLogprob(cont[:2], self.scores[cont.strip()], len(head)))
        return CompletionResult(text=prompt, tokens=tokens, usage=Usage(10, 0))


def test_multiple_choice_by_loglikelihood(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "mc" / "test"
    folder.mkdir(parents=True)
    (folder / "math_test.csv").write_text("question,choice0,choice1,choice2,choice3,answer\n1+1?,1,2,3,4,1\n2+2?,4,5,6,7,0\n")
    task = TaskRegistry().get("mmlu").with_overrides(data={"dir": "mc"})
    client = _LogprobClient({"A": -2.0, "B": -0.5, "C": -3.0, "D": -4.0})
    settings = Settings.load(home=tmp_path / "home", data_dir=tmp_path / "data")
    result = run_task(task, client=client, settings=settings, options=RunOptions())
    assert result.metrics["acc"].value == 0.5  # B is right for the first question only
    assert len(client.prompts) == 8
    assert client.prompts[0].startswith("The following are multiple choice questions (with answers) about math.\n\n1+1?\nA. 1")
    rec = RunStore(Path(result.run_dir)).read_samples()[0]
    assert rec.extracted == {"choice": "B"} and rec.extra["logprobs"] == [-2.0, -0.5, -3.0, -4.0]


def test_shards_merge_into_the_full_run(tmp_path: Path, tiny) -> None:
    from evaluation.runner import merge_runs

    task_file, data = tiny
    task = TaskRegistry().get(str(task_file))
    settings = _settings(tmp_path, data)
    full = run_task(task, client=ScriptedChatClient(default=_answer), settings=settings, options=RunOptions(use_cache=False), run_dir=tmp_path / "full")
    shards = []
    for i in range(2):
        client = ScriptedChatClient(default=_answer)
        r = run_task(task, client=client, settings=settings, options=RunOptions(use_cache=False, shard=(i, 2)), run_dir=tmp_path / f"s{i}")
        assert len(client.calls) == 3 and r.counts["samples"] == 3
        shards.append(tmp_path / f"s{i}")
    merged = merge_runs(shards, tmp_path / "merged")
    assert merged.counts["samples"] == 6
    assert merged.metrics["exact_match,strict"].value == full.metrics["exact_match,strict"].value
    ids = [json.loads(x)["sample_id"] for x in (tmp_path / "merged" / "samples.jsonl").read_text().splitlines()]
    assert ids == [str(i) for i in range(6)]
    other = run_task(task.with_overrides(fewshot={"n": 0}), client=ScriptedChatClient(default=_answer), settings=settings,
                     options=RunOptions(use_cache=False, shard=(0, 2)), run_dir=tmp_path / "other")
    from llm_backend.errors import ConfigError

    with pytest.raises(ConfigError, match="not a shard of the same run"):
        merge_runs([shards[0], Path(other.run_dir)], tmp_path / "bad")
