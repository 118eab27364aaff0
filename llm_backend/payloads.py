"""Build request payloads and parse responses: pure functions on dicts, no network (tested by comparing dicts).

The client sends what :func:`build_chat_payload` builds and hands the JSON it gets back to
:func:`parse_chat_response` (or, for streams, to a :class:`ChatStreamAssembler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_backend.types import (
    ChatChunk,
    ChatResult,
    CompletionResult,
    Message,
    RerankResult,
    TokenLogprob,
    ToolCall,
    Usage,
)

# Fields the official client accepts as keyword arguments of chat.completions.create; anything else an
# OpenAI-compatible server understands (vLLM's top_k, repetition_penalty, structured_outputs, ...) travels in
# extra_body so that the same payload dict works everywhere.
CHAT_FIELDS = frozenset(
    {
        "messages", "model", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "max_completion_tokens",
        "n", "parallel_tool_calls", "presence_penalty", "response_format", "seed", "stop", "stream",
        "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "metadata",
    }
)
COMPLETION_FIELDS = frozenset(
    {
        "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n",
        "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature", "top_p", "user",
    }
)


def tool_choice_payload(tool_choice: str | None) -> str | dict[str, Any] | None:
    """``"auto" | "required" | "none"`` pass through; any other string forces that named function."""
    if tool_choice is None or tool_choice in ("auto", "required", "none"):
        return tool_choice
    return {"type": "function", "function": {"name": tool_choice}}


def json_schema_format(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    """``response_format`` asking for output that matches ``schema`` (grammar-constrained on vLLM)."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def build_chat_payload(
    messages: Sequence[Message],
    *,
    model: str,
    tools: Sequence[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
    json_schema: dict[str, Any] | None = None,
    stop: Sequence[str] | None = None,
    stream: bool = False,
    **params: Any,
) -> dict[str, Any]:
    """The JSON body of a ``/v1/chat/completions`` request.

    >>> build_chat_payload([{"role": "user", "content": "hi"}], model="m", tool_choice="get_weather",
    ...                    tools=[{"type": "function", "function": {"name": "get_weather"}}])["tool_choice"]
    {'type': 'function', 'function': {'name': 'get_weather'}}
    """
    if tool_choice not in (None, "auto", "none") and not tools:
        raise ValueError(f"tool_choice={tool_choice!r} needs tools")
    if tools and tool_choice not in (None, "auto", "required", "none"):
        names = [t.get("function", {}).get("name") for t in tools]
        if tool_choice not in names:
            raise ValueError(f"tool_choice names {tool_choice!r}, which is not among the tools: {names}")
    payload: dict[str, Any] = {"model": model, "messages": list(messages)}
    if tools:
        payload["tools"] = list(tools)
    if tool_choice is not None:
        payload["tool_choice"] = tool_choice_payload(tool_choice)
    if json_schema is not None:
        payload["response_format"] = json_schema_format(json_schema)
    if stop:
        payload["stop"] = list(stop)
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    payload.update({k: v for k, v in params.items() if v is not None})
    return payload


@dataclass(frozen=True)
class ChatRequest:
    """One chat request as the caller asked for it, built once by every chat method of a client.

    ``model`` is None when the client's default model should answer; ``params`` (temperature, max_tokens, seed,
    vLLM extras such as top_k) pass through to the payload.

    >>> ChatRequest.of([{"role": "user", "content": "hi"}], stop=["END"], temperature=0).payload("m")["stop"]
    ['END']
    """

    messages: Sequence[Message]
    tools: Sequence[dict[str, Any]] | None = None
    tool_choice: str | None = None
    json_schema: dict[str, Any] | None = None
    stop: Sequence[str] | None = None
    model: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        messages: Sequence[Message],
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] | None = None,
        model: str | None = None,
        **params: Any,
    ) -> ChatRequest:
        """The request for ``client.chat(messages, tools=..., tool_choice=..., json_schema=..., stop=..., **params)``:
        ``tool_choice`` is ``"auto"``, ``"required"``, ``"none"`` or a tool's name; ``json_schema`` asks for output
        matching that schema."""
        return cls(messages, tools, tool_choice, json_schema, stop, model or None, params)

    def payload(self, model: str, *, stream: bool = False) -> dict[str, Any]:
        """The JSON body for ``model`` (see :func:`build_chat_payload`, which validates ``tool_choice``)."""
        return build_chat_payload(
            self.messages, model=model, tools=self.tools, tool_choice=self.tool_choice, json_schema=self.json_schema,
            stop=self.stop, stream=stream, **self.params,
        )


def split_known(payload: dict[str, Any], known: frozenset[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a payload into keyword arguments the official client knows and ``extra_body`` for the rest."""
    kwargs = {k: v for k, v in payload.items() if k in known}
    extra = {k: v for k, v in payload.items() if k not in known}
    return kwargs, extra


def parse_usage(data: dict[str, Any] | None) -> Usage:
    if not data:
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _tool_calls(raw: list[dict[str, Any]] | None) -> tuple[ToolCall, ...]:
    calls = []
    for i, item in enumerate(raw or []):
        fn = item.get("function") or {}
        calls.append(ToolCall(id=item.get("id") or f"call_{i}", name=fn.get("name") or "", arguments=fn.get("arguments") or ""))
    return tuple(calls)


def parse_chat_response(data: dict[str, Any]) -> ChatResult:
    """A ``ChatResult`` from the JSON of a non-streamed chat completion."""
    choices = data.get("choices") or []
    if not choices:
        raise ValueError(f"chat response has no choices: {str(data)[:300]}")
    choice = choices[0]
    message = choice.get("message") or {}
    return ChatResult(
        text=message.get("content") or "",
        tool_calls=_tool_calls(message.get("tool_calls")),
        usage=parse_usage(data.get("usage")),
        finish_reason=choice.get("finish_reason"),
        model=data.get("model") or "",
        raw=data,
    )


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ChatStreamAssembler:
    """Turns streamed chunk dicts into :class:`ChatChunk` deltas and assembles the final :class:`ChatResult`.

    Tool calls arrive in pieces keyed by ``index`` (name first, then argument fragments); they are joined here.
    """

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model = ""

    def feed(self, chunk: dict[str, Any]) -> ChatChunk | None:
        """Consume one chunk; return its text delta, or ``None`` when it carries no text (tool-call pieces,
        finish reason and usage are kept for :meth:`final_chunk`)."""
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = parse_usage(chunk["usage"])
        delta_text = ""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                delta_text += delta["content"]
            for piece in delta.get("tool_calls") or []:
                call = self.calls.setdefault(int(piece.get("index", 0)), _PartialCall())
                call.id = piece.get("id") or call.id
                fn = piece.get("function") or {}
                if fn.get("name"):
                    call.name += fn["name"]
                if fn.get("arguments"):
                    call.arguments.append(fn["arguments"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if delta_text:
            self.text.append(delta_text)
            return ChatChunk(delta=delta_text)
        return None

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=c.id or f"call_{i}", name=c.name, arguments="".join(c.arguments))
            for i, c in sorted(self.calls.items())
        )

    def final_chunk(self) -> ChatChunk:
        """The closing chunk handed to callers: finish reason, usage and assembled tool calls."""
        return ChatChunk(delta="", finish_reason=self.finish_reason, usage=self.usage or Usage(), tool_calls=self.tool_calls())

    def result(self) -> ChatResult:
        return ChatResult(
            text="".join(self.text),
            tool_calls=self.tool_calls(),
            usage=self.usage or Usage(),
            finish_reason=self.finish_reason,
            model=self.model,
        )


def build_completion_payload(
    prompt: str,
    *,
    model: str,
    max_tokens: int = 16,
    echo: bool = False,
    logprobs: int | None = None,
    stop: Sequence[str] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """The JSON body of a ``/v1/completions`` request. For log-likelihood scoring use ``echo=True, logprobs=1,
    max_tokens=0`` (vLLM then returns the prompt tokens' log-probabilities)."""
    payload: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens}
    if echo:
        payload["echo"] = True
    if logprobs is not None:
        payload["logprobs"] = logprobs
    if stop:
        payload["stop"] = list(stop)
    payload.update({k: v for k, v in params.items() if v is not None})
    return payload


def parse_completion_response(data: dict[str, Any]) -> CompletionResult:
    """A ``CompletionResult`` from ``/v1/completions`` JSON, with per-token logprobs and character offsets."""
    choices = data.get("choices") or []
    if not choices:
        raise ValueError(f"completion response has no choices: {str(data)[:300]}")
    choice = choices[0]
    lp = choice.get("logprobs") or {}
    tokens = tuple(
        TokenLogprob(token=t, logprob=lp_, offset=o)
        for t, lp_, o in zip(lp.get("tokens") or [], lp.get("token_logprobs") or [], lp.get("text_offset") or [], strict=False)
    )
    return CompletionResult(
        text=choice.get("text") or "",
        tokens=tokens,
        usage=parse_usage(data.get("usage")),
        finish_reason=choice.get("finish_reason"),
        raw=data,
    )


def parse_embeddings_response(data: dict[str, Any]) -> list[list[float]]:
    """Vectors in input order (servers may return them out of order; ``index`` says where each belongs)."""
    items = sorted(data.get("data") or [], key=lambda d: d.get("index", 0))
    return [list(map(float, item["embedding"])) for item in items]


def build_rerank_payload(query: str, documents: Sequence[str], *, model: str, top_n: int | None = None) -> dict[str, Any]:
    """Body of a ``/rerank`` request (the Jina/Cohere shape that vLLM serves for cross-encoder models)."""
    payload: dict[str, Any] = {"model": model, "query": query, "documents": list(documents)}
    if top_n is not None:
        payload["top_n"] = top_n
    return payload


def parse_rerank_response(data: dict[str, Any]) -> list[RerankResult]:
    """Results sorted by score, best first."""
    results = [RerankResult(index=int(r["index"]), score=float(r.get("relevance_score", r.get("score", 0.0)))) for r in data.get("results") or []]
    return sorted(results, key=lambda r: r.score, reverse=True)
