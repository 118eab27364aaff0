"""Contract tests of `ragent api` through the official `openai` client (sync, async, streaming), the real service on
uvicorn, and the fake OpenAI-compatible backend."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import openai

from knowledge.embedders import make_embedder
from llm_backend.testing import FakeOpenAIServer, FakeReply
from tests.apps.api_helpers import QUESTION, api_service
from tests.apps.conftest import make_kb


def test_models_lists_backend_kb_and_agents(api: str) -> None:
    ids = [m.id for m in openai.OpenAI(base_url=api, api_key="-").models.list().data]
    assert ids[0] == "fake-model"
    assert "kb:guide" in ids and "agent:kb:guide" in ids and "agent:calculator,python,datetime" in ids


def test_kb_answer_carries_citations_in_text_and_extension(api: str) -> None:
    reply = openai.OpenAI(base_url=api, api_key="-").chat.completions.create(
        model="kb:guide", messages=[{"role": "user", "content": QUESTION}]
    )
    message = reply.choices[0].message
    assert "ragent serve --detach" in (message.content or "") and "[1]" in (message.content or "")
    citations = (message.model_extra or {})["citations"]
    assert citations[0]["number"] == 1 and citations[0]["source"].endswith("serving.md")
    assert "ragent serve --detach" in citations[0]["text"]
    segments = (message.model_extra or {})["segments"]
    assert segments[0]["kind"] == "model" and segments[0]["citations"] == [1]
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_kb_answer_streams_and_ends_with_citations(api: str) -> None:
    stream = openai.OpenAI(base_url=api, api_key="-").chat.completions.create(
        model="kb:guide", messages=[{"role": "user", "content": QUESTION}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    extra = finals[0].choices[0].delta.model_extra or {}
    assert extra["citations"][0]["source"].endswith("serving.md")
    assert "[1]" in extra["cited_content"] and "ragent serve --detach" in text
    assert chunks[-1].usage is not None and not chunks[-1].choices  # include_usage: the usage chunk comes last


def test_kb_follow_up_is_rewritten_from_history(api: str, backend: FakeOpenAIServer) -> None:
    backend.script("How do I start the model server in the background?")  # the rewrite
    openai.OpenAI(base_url=api, api_key="-").chat.completions.create(
        model="kb:guide",
        messages=[
            {"role": "user", "content": "Tell me about serving."},
            {"role": "assistant", "content": "ragent serves models with vLLM."},
            {"role": "user", "content": "How do I start it?"},
        ],
    )
    bodies = backend.chat_requests()
    assert "Tell me about serving." in str(bodies[0]["messages"])  # the rewrite request saw the history
    assert "in the background" in bodies[1]["messages"][-1]["content"]  # and the answer used the rewritten query


async def test_async_client_kb_and_pass_through(api: str) -> None:
    client = openai.AsyncOpenAI(base_url=api, api_key="-")
    kb, plain = await asyncio.gather(
        client.chat.completions.create(model="kb:guide", messages=[{"role": "user", "content": QUESTION}]),
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hello"}]),
    )
    assert (kb.choices[0].message.model_extra or {})["citations"]
    assert plain.choices[0].message.content == "echo: hello"
    stream = await client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi there"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "echo: hi there"
    await client.close()


def test_pass_through_forwards_parameters_and_tools(api: str, backend: FakeOpenAIServer) -> None:
    backend.script(FakeReply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    tools: list[Any] = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    reply = openai.OpenAI(base_url=api, api_key="-").chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "weather?"}], tools=tools, temperature=0.3, max_tokens=17, seed=4
    )
    call: Any = reply.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather" and '"Paris"' in call.function.arguments
    body = backend.chat_requests()[-1]
    assert body["model"] == "fake-model" and body["temperature"] == 0.3 and body["max_tokens"] == 17 and body["seed"] == 4
    assert body["tools"][0]["function"]["name"] == "get_weather"


def test_agent_model_runs_tools_and_returns_steps(api: str, backend: FakeOpenAIServer) -> None:
    backend.script(
        FakeReply(tool_calls=[{"name": "calculator", "arguments": {"expression": "17 * 3"}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "51"}}]),
    )
    reply = openai.OpenAI(base_url=api, api_key="-").chat.completions.create(
        model="agent:calculator", messages=[{"role": "user", "content": "What is 17 times 3?"}]
    )
    message = reply.choices[0].message
    assert message.content == "51"
    steps = (message.model_extra or {})["steps"]
    assert steps[0]["tool_calls"][0]["name"] == "calculator" and steps[0]["tool_calls"][0]["observation"] == "51"
    assert [t["function"]["name"] for t in backend.chat_requests()[0]["tools"]] == ["calculator", "final_answer"]


def test_agent_streams_steps_then_answer(api: str, backend: FakeOpenAIServer) -> None:
    backend.script(
        FakeReply(tool_calls=[{"name": "search_knowledge_base", "arguments": {"query": "start server"}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "Run ragent serve --detach."}}]),
    )
    stream = openai.OpenAI(base_url=api, api_key="-").chat.completions.create(
        model="agent:kb:guide", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    steps = [s for c in chunks for s in (c.choices[0].delta.model_extra or {}).get("steps", [])]
    assert "ragent serve --detach" in steps[0]["tool_calls"][0]["observation"]  # the kb search ran on the base
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Run ragent serve --detach."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_by_kb_and_embedder_name(api: str) -> None:
    make_kb("vectors", {"a.md": "# A\n\nsome text\n"}, embedder="hash")
    client = openai.OpenAI(base_url=api, api_key="-")
    default = client.embeddings.create(model="kb:vectors", input=["the model server", "知识库"])  # the SDK asks for base64
    floats = client.embeddings.create(model="hash", input="the model server", encoding_format="float")
    want = make_embedder("hash").embed_documents(["the model server", "知识库"])  # type: ignore[union-attr]
    assert np.allclose(default.data[0].embedding, want[0], atol=1e-6) and np.allclose(default.data[1].embedding, want[1], atol=1e-6)
    assert np.allclose(floats.data[0].embedding, want[0], atol=1e-6)
    query = client.embeddings.create(model="hash", input="q", extra_body={"input_type": "query"})
    assert len(query.data[0].embedding) == len(want[0])


def test_health_is_open_and_reports_backend(backend: FakeOpenAIServer) -> None:
    import httpx

    with api_service(backend.url, api_key="s3cret") as url:
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
        assert health["status"] == "ok" and health["backend"] is True
        models = openai.OpenAI(base_url=url, api_key="s3cret").models.list()
        assert models.data[0].id == "fake-model"


def test_requests_beyond_the_concurrency_limit_wait_their_turn(backend: FakeOpenAIServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    backend.script(*(FakeReply(text=f"answer {i}", delay=0.2) for i in range(3)))
    with api_service(backend.url, concurrency=1) as url:
        client = openai.OpenAI(base_url=url, api_key="-")

        def ask(i: int) -> str:
            reply = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": f"q{i}"}])
            return reply.choices[0].message.content or ""

        with ThreadPoolExecutor(3) as pool:
            answers = sorted(pool.map(ask, range(3)))
    assert answers == ["answer 0", "answer 1", "answer 2"] and backend.max_in_flight == 1
