"""Unit tests: building payloads and parsing responses are pure functions on dicts."""

from __future__ import annotations

import pytest

from llm_backend.payloads import (
    CHAT_FIELDS,
    ChatStreamAssembler,
    build_chat_payload,
    build_completion_payload,
    build_rerank_payload,
    parse_chat_response,
    parse_completion_response,
    parse_embeddings_response,
    parse_rerank_response,
    split_known,
)
from llm_backend.types import ToolCall

MSG = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]


def test_minimal_chat_payload() -> None:
    assert build_chat_payload(MSG, model="m") == {"model": "m", "messages": MSG}


def test_chat_payload_with_everything() -> None:
    payload = build_chat_payload(
        MSG, model="m", tools=TOOLS, tool_choice="add", json_schema={"type": "object"}, stop=["\n"], stream=True,
        temperature=0, max_tokens=5, top_k=3, seed=None,
    )
    assert payload == {
        "model": "m",
        "messages": MSG,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "add"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True}},
        "stop": ["\n"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": 5,
        "top_k": 3,
    }


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
def test_tool_choice_keywords_pass_through(choice: str) -> None:
    assert build_chat_payload(MSG, model="m", tools=TOOLS, tool_choice=choice)["tool_choice"] == choice


def test_tool_choice_must_name_a_tool() -> None:
    with pytest.raises(ValueError, match="not among the tools"):
        build_chat_payload(MSG, model="m", tools=TOOLS, tool_choice="subtract")
    with pytest.raises(ValueError, match="needs tools"):
        build_chat_payload(MSG, model="m", tool_choice="required")


def test_split_known_sends_vllm_extras_in_extra_body() -> None:
    kwargs, extra = split_known({"model": "m", "messages": [], "top_k": 2, "temperature": 0}, CHAT_FIELDS)
    assert kwargs == {"model": "m", "messages": [], "temperature": 0}
    assert extra == {"top_k": 2}


def test_parse_chat_response_with_tool_calls() -> None:
    data = {
        "model": "m",
        "choices": [{"message": {"content": None, "tool_calls": [{"id": "c1", "function": {"name": "add", "arguments": '{"a": 1}'}}]}, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    result = parse_chat_response(data)
    assert result.text == ""
    assert result.tool_calls == (ToolCall("c1", "add", '{"a": 1}'),)
    assert result.usage.total_tokens == 10
    assert result.finish_reason == "tool_calls"
    assert result.to_message() == {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]}


def test_parse_chat_response_without_choices_is_an_error() -> None:
    with pytest.raises(ValueError, match="no choices"):
        parse_chat_response({"choices": []})


def test_stream_assembler_joins_text_and_tool_call_pieces() -> None:
    asm = ChatStreamAssembler()
    chunks = [
        {"model": "m", "choices": [{"delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"delta": {"content": "Hel"}}]},
        {"choices": [{"delta": {"content": "lo"}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "add", "arguments": '{"a"'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "add", "arguments": "{}"}}]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}},
    ]
    deltas = [c.delta for c in (asm.feed(ch) for ch in chunks) if c is not None]
    assert deltas == ["Hel", "lo"]
    final = asm.final_chunk()
    assert final.finish_reason == "tool_calls"
    assert final.usage is not None and final.usage.completion_tokens == 4
    assert final.tool_calls == (ToolCall("c1", "add", '{"a": 1}'), ToolCall("c2", "add", "{}"))
    assert asm.result().text == "Hello"


def test_tool_call_arguments_parse_errors_name_the_tool() -> None:
    assert ToolCall("1", "add", "").parsed_arguments() == {}
    with pytest.raises(ValueError, match="'add' are not valid JSON"):
        ToolCall("1", "add", "{a: 1").parsed_arguments()
    with pytest.raises(ValueError, match="must be a JSON object"):
        ToolCall("1", "add", "[1]").parsed_arguments()


def test_completion_payload_and_echo_logprobs() -> None:
    assert build_completion_payload("Q: 2+2?\nA:", model="m", max_tokens=0, echo=True, logprobs=1) == {
        "model": "m", "prompt": "Q: 2+2?\nA:", "max_tokens": 0, "echo": True, "logprobs": 1,
    }
    data = {
        "choices": [{"text": "ab c", "logprobs": {"tokens": ["ab", " c"], "token_logprobs": [None, -0.5], "text_offset": [0, 2]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 0},
    }
    result = parse_completion_response(data)
    assert [t.token for t in result.tokens] == ["ab", " c"]
    assert result.continuation_logprob(2) == -0.5
    assert result.continuation_logprob(0) == -0.5  # the first token has no logprob and is skipped


def test_embeddings_are_put_back_in_input_order() -> None:
    data = {"data": [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [1, 0]}]}
    assert parse_embeddings_response(data) == [[1.0, 0.0], [0.0, 1.0]]


def test_rerank_payload_and_results_sorted() -> None:
    assert build_rerank_payload("q", ["a", "b"], model="r", top_n=1) == {"model": "r", "query": "q", "documents": ["a", "b"], "top_n": 1}
    results = parse_rerank_response({"results": [{"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.9}]})
    assert [r.index for r in results] == [1, 0]
