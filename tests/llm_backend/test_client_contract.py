"""Contract tests: our client through the official ``openai`` client against a real HTTP fake server."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import Iterator

import pytest

from llm_backend.client import ChatClient, OpenAIChatClient
from llm_backend.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ModelNotFoundError,
    StreamInterruptedError,
)
from llm_backend.settings import Settings
from llm_backend.testing import FakeOpenAIServer, FakeReply, ScriptedChatClient

USER = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=["fake-model", "other-model"]) as srv:
        yield srv


def make_client(server: FakeOpenAIServer, **kw: object) -> OpenAIChatClient:
    return OpenAIChatClient(Settings.load(base_url=server.url, max_retries=kw.pop("max_retries", 0), **kw))


def test_both_clients_satisfy_the_protocol(server: FakeOpenAIServer) -> None:
    assert isinstance(make_client(server), ChatClient)
    assert isinstance(ScriptedChatClient(), ChatClient)


def test_chat_uses_first_served_model_and_reports_usage(server: FakeOpenAIServer) -> None:
    server.script("Paris")
    result = make_client(server).chat(USER, temperature=0, top_k=1)
    assert result.text == "Paris"
    assert result.model == "fake-model"
    assert result.usage.completion_tokens == 1
    body = server.chat_requests()[-1]
    assert body["model"] == "fake-model" and body["temperature"] == 0
    assert body["top_k"] == 1  # vLLM extras travel in the body


def test_stream_yields_deltas_then_a_final_chunk(server: FakeOpenAIServer) -> None:
    server.script("Paris is the capital")
    chunks = list(make_client(server).stream(USER))
    assert "".join(c.delta for c in chunks) == "Paris is the capital"
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.usage is not None and final.usage.completion_tokens == 4
    assert server.chat_requests()[-1]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("stream", [False, True])
def test_forced_tool_call_round_trip(server: FakeOpenAIServer, stream: bool) -> None:
    server.script(FakeReply(tool_calls=[{"name": "get_weather", "arguments": {"city": "巴黎"}}]), "It is sunny in Paris.")
    client = make_client(server)
    if stream:
        calls = list(client.stream(USER, tools=TOOLS, tool_choice="get_weather"))[-1].tool_calls
    else:
        calls = client.chat(USER, tools=TOOLS, tool_choice="required").tool_calls
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].parsed_arguments() == {"city": "巴黎"}
    messages = [*USER, {"role": "assistant", "content": "", "tool_calls": [c.to_message_dict() for c in calls]},
                {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}]
    assert client.chat(messages).text == "It is sunny in Paris."
    first = server.chat_requests()[0]
    assert first["tool_choice"] == ({"type": "function", "function": {"name": "get_weather"}} if stream else "required")


def test_json_schema_request(server: FakeOpenAIServer) -> None:
    server.script('{"answer": 4}')
    result = make_client(server).chat(USER, json_schema={"type": "object", "properties": {"answer": {"type": "integer"}}})
    assert result.text == '{"answer": 4}'
    assert server.chat_requests()[-1]["response_format"]["type"] == "json_schema"


@pytest.mark.fault
def test_retries_on_5xx_and_429_then_succeeds(server: FakeOpenAIServer) -> None:
    server.script(FakeReply(status=500), FakeReply(status=429, retry_after=0), FakeReply(status=503), "finally")
    assert make_client(server, max_retries=3).chat(USER).text == "finally"
    assert len(server.chat_requests()) == 4


@pytest.mark.fault
def test_gives_up_after_retries_with_status_in_message(server: FakeOpenAIServer) -> None:
    server.script(*[FakeReply(status=500, error="engine exploded")] * 3)
    with pytest.raises(BackendError, match="answered 500: engine exploded.*Gave up after 2 retries") as err:
        make_client(server, max_retries=2).chat(USER)
    assert err.value.status_code == 500


@pytest.mark.fault
def test_bad_request_is_not_retried(server: FakeOpenAIServer) -> None:
    server.script(FakeReply(status=400, error="This model's maximum context length is 4096 tokens"), "never")
    with pytest.raises(BackendError, match="lower top-k"):
        make_client(server, max_retries=3).chat(USER)
    assert len(server.chat_requests()) == 1


@pytest.mark.fault
def test_timeout(server: FakeOpenAIServer) -> None:
    server.script(FakeReply(text="late", delay=1.5))
    with pytest.raises(BackendTimeoutError, match="did not answer within"):
        make_client(server, timeout=0.3).chat(USER)


@pytest.mark.fault
def test_connection_dropped_mid_stream_keeps_partial_text(server: FakeOpenAIServer) -> None:
    server.script(FakeReply(text="one two three four five", drop_after=3))
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as err:
        for chunk in make_client(server).stream(USER):
            received.append(chunk.delta)
    assert err.value.partial == "".join(received) == "one two"
    assert "closed the stream" in str(err.value)


def test_wrong_model_lists_served_ones(server: FakeOpenAIServer) -> None:
    with pytest.raises(ModelNotFoundError, match="Served models: fake-model, other-model") as err:
        make_client(server, model="fake-modle").chat(USER)
    assert "Did you mean 'fake-model'" in str(err.value)


def test_no_server_says_how_to_start_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIChatClient(Settings.load(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0))
    with pytest.raises(BackendUnavailableError, match="ragent serve"):
        client.chat(USER)
    assert client.health() is False


def test_completion_echo_logprobs(server: FakeOpenAIServer) -> None:
    server.script(FakeReply(token_logprobs={"4": -0.1, "5": -4.0}), FakeReply(token_logprobs={"4": -0.1, "5": -4.0}))
    client = make_client(server)
    ctx = "Question: What is 2 + 2?\nAnswer:"
    four = client.completion(ctx + " 4", max_tokens=0, echo=True, logprobs=1)
    five = client.completion(ctx + " 5", max_tokens=0, echo=True, logprobs=1)
    assert four.text == ctx + " 4"
    assert four.continuation_logprob(len(ctx)) > five.continuation_logprob(len(ctx))
    body = server.requests[-1][1]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 0


def test_embeddings_and_rerank(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    vectors = client.embed(["hello world", "hello world", "完全不同"], batch_size=2)
    assert len(vectors) == 3 and vectors[0] == vectors[1] and vectors[0] != vectors[2]
    ranked = client.rerank("capital of France", ["bananas are yellow", "Paris is the capital of France"])
    assert ranked[0].index == 1


def test_async_chat_respects_concurrency_limit(server: FakeOpenAIServer) -> None:
    server.responder = lambda body: FakeReply(text="ok", delay=0.2)
    client = make_client(server, concurrency=2)

    async def main() -> list[str]:
        async with client:
            results = await asyncio.gather(*[client.achat(USER) for _ in range(6)])
        return [r.text for r in results]

    assert asyncio.run(main()) == ["ok"] * 6
    assert server.max_in_flight == 2


def test_async_stream_and_new_event_loops(server: FakeOpenAIServer) -> None:
    client = make_client(server)
    server.script("a b c", "d e")

    async def collect() -> str:
        return "".join([c.delta async for c in client.astream(USER)])

    assert asyncio.run(collect()) == "a b c"
    assert asyncio.run(collect()) == "d e"  # a second event loop gets fresh connections


def test_clients_of_a_finished_event_loop_are_released_quietly(server: FakeOpenAIServer) -> None:
    """Reusing one client across asyncio.run calls must not schedule the old loop's close on the new loop."""
    client = make_client(server)
    server.script("one", "two")
    errors: list[dict[str, object]] = []

    async def ask() -> str:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        text = (await client.achat(USER)).text
        gc.collect()  # the first loop's clients are dropped here, while the second loop runs
        for _ in range(3):
            await asyncio.sleep(0)
        return text

    assert asyncio.run(ask()) == "one"
    first = client._async
    assert asyncio.run(ask()) == "two"
    assert first is not None and all(c.is_closed() for c in first)
    assert errors == []


def test_replicas_are_used_round_robin() -> None:
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        client = OpenAIChatClient(Settings.load(base_url=a.url, replica_urls=[b.url], model="fake-model", max_retries=0))
        for _ in range(4):
            client.chat(USER)
        assert len(a.chat_requests()) == 2 and len(b.chat_requests()) == 2
