"""Integration: the real vLLM CPU server (started once per session by tests/conftest.py), default model."""

from __future__ import annotations

import re

import pytest

from llm_backend.client import OpenAIChatClient

pytestmark = pytest.mark.integration

WEATHER = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]


def test_english_answer(real_client: OpenAIChatClient) -> None:
    result = real_client.chat([{"role": "user", "content": "What is the capital of France? Answer in one word."}], temperature=0, max_tokens=10)
    assert "paris" in result.text.lower()
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


def test_chinese_answer_streams(real_client: OpenAIChatClient) -> None:
    chunks = list(real_client.stream([{"role": "user", "content": "中国的首都是哪个城市？请用中文回答。"}], temperature=0, max_tokens=30))
    text = "".join(c.delta for c in chunks)
    assert len([c for c in chunks if c.delta]) > 1, "expected several streamed pieces"
    assert "北京" in text
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].usage is not None


def test_forced_tool_call_round_trip(real_client: OpenAIChatClient) -> None:
    messages = [{"role": "user", "content": "What's the weather like in Paris right now?"}]
    first = real_client.chat(messages, tools=WEATHER, tool_choice="required", temperature=0, max_tokens=60)
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert call.name == "get_weather"
    assert "paris" in call.parsed_arguments()["city"].lower()
    messages += [first.to_message(), {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21, "sky": "sunny"}'}]
    final = real_client.chat(messages, tools=WEATHER, temperature=0, max_tokens=60)
    assert re.search(r"21|sunny", final.text.lower())


def test_named_tool_call_streams_well_formed(real_client: OpenAIChatClient) -> None:
    final = list(real_client.stream([{"role": "user", "content": "Weather in Berlin?"}], tools=WEATHER, tool_choice="get_weather", temperature=0, max_tokens=60))[-1]
    assert final.tool_calls and final.tool_calls[0].parsed_arguments()["city"]


def test_echo_logprobs_rank_the_right_answer(real_client: OpenAIChatClient) -> None:
    ctx = "Question: What is 2 + 2?\nAnswer:"
    four = real_client.completion(ctx + " 4", max_tokens=0, echo=True, logprobs=1)
    five = real_client.completion(ctx + " 5", max_tokens=0, echo=True, logprobs=1)
    assert four.continuation_logprob(len(ctx)) > five.continuation_logprob(len(ctx))
