"""In-process test double of :class:`~llm_backend.client.ChatClient`, and the scripted reply both fakes play.

- :class:`FakeReply`: one scripted answer (text, tool calls, delays, a status code, a dropped stream).
- :class:`ScriptedChatClient`: returns scripted replies in order and records the requests it got; for unit tests of
  code that calls a model.

Test support only: product code never imports this module.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_backend.types import ChatChunk, ChatResult, CompletionResult, Message, TokenLogprob, ToolCall, Usage


@dataclass
class FakeReply:
    """One scripted answer. ``tool_calls`` items are ``{"name": ..., "arguments": dict | str}``."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    error: str = "scripted failure"
    drop_after: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    token_logprobs: dict[str, float] = field(default_factory=dict)
    retry_after: float | None = None

    @classmethod
    def of(cls, value: FakeReply | str) -> FakeReply:
        return value if isinstance(value, FakeReply) else cls(text=value)

    def tool_calls_json(self) -> list[dict[str, Any]]:
        out = []
        for i, call in enumerate(self.tool_calls):
            args = call.get("arguments", {})
            out.append(
                {
                    "id": call.get("id") or f"call_{i}_{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)},
                }
            )
        return out


def fake_tokens(text: str) -> list[str]:
    """A crude, deterministic tokenizer: words with their leading space, CJK characters, punctuation."""
    return re.findall(r"\s*[\u4e00-\u9fff]|\s*\w+|\s*[^\w\s]|\s+", text)


def fake_embedding(text: str, dim: int = 32) -> list[float]:
    """Deterministic unit vector from hashed character bigrams: similar texts get similar vectors."""
    vec = [0.0] * dim
    padded = f" {text.lower()} "
    for a, b in itertools.pairwise(padded):
        h = int.from_bytes(hashlib.blake2b((a + b).encode(), digest_size=4).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class ScriptedChatClient:
    """In-process fake model: returns scripted :class:`ChatResult` s in order and records each call.

    Replies may be strings, :class:`ChatResult` s, :class:`FakeReply` s (``tool_calls`` honoured) or exceptions
    (raised). When the script runs out, ``default`` answers (an echo of the last user message if not given).

    >>> fake = ScriptedChatClient(["Paris"])
    >>> fake.chat([{"role": "user", "content": "capital of France?"}]).text
    'Paris'
    """

    def __init__(
        self,
        replies: Iterable[str | ChatResult | FakeReply | BaseException] = (),
        *,
        default: Callable[[Sequence[Message]], str | ChatResult] | None = None,
        model: str = "scripted-model",
    ) -> None:
        self.replies: deque[str | ChatResult | FakeReply | BaseException] = deque(replies)
        self.default = default
        self.model = model
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _next(self, messages: Sequence[Message], kwargs: dict[str, Any]) -> ChatResult:
        with self._lock:
            self.calls.append({"messages": [dict(m) for m in messages], **kwargs})
            item = self.replies.popleft() if self.replies else None
        if item is None:
            if self.default is not None:
                item = self.default(messages)
            else:
                last = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
                item = f"echo: {last}"
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ChatResult):
            return item
        if isinstance(item, FakeReply):
            calls = tuple(ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in item.tool_calls_json())
            return ChatResult(
                text=item.text, tool_calls=calls, finish_reason=item.finish_reason or ("tool_calls" if calls else "stop"),
                usage=Usage(item.prompt_tokens or 10, item.completion_tokens or max(1, len(fake_tokens(item.text)))), model=self.model,
            )
        return ChatResult(text=item, usage=Usage(10, max(1, len(fake_tokens(item)))), finish_reason="stop", model=self.model)

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        return self._next(messages, kwargs)

    async def achat(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        return self._next(messages, kwargs)

    def stream(self, messages: Sequence[Message], **kwargs: Any) -> Iterator[ChatChunk]:
        result = self._next(messages, {**kwargs, "stream": True})
        for tok in fake_tokens(result.text):
            yield ChatChunk(delta=tok)
        yield ChatChunk(finish_reason=result.finish_reason, usage=result.usage, tool_calls=result.tool_calls)

    async def astream(self, messages: Sequence[Message], **kwargs: Any) -> AsyncIterator[ChatChunk]:
        for chunk in self.stream(messages, **kwargs):
            yield chunk

    def completion(self, prompt: str, *, max_tokens: int = 16, echo: bool = False, logprobs: int | None = None, **kwargs: Any) -> CompletionResult:
        result = self._next([{"role": "user", "content": prompt}], {"max_tokens": max_tokens, "echo": echo, "logprobs": logprobs, **kwargs})
        text = (prompt if echo else "") + (result.text if max_tokens > 0 else "")
        toks, pos = [], 0
        for t in fake_tokens(text):
            toks.append(TokenLogprob(t, -1.0, pos))
            pos += len(t)
        return CompletionResult(text=text, tokens=tuple(toks), usage=result.usage, finish_reason="length")

    async def acompletion(self, prompt: str, **kwargs: Any) -> CompletionResult:
        return self.completion(prompt, **kwargs)

    def embed(self, texts: Sequence[str], *, model: str | None = None, batch_size: int = 64) -> list[list[float]]:
        return [fake_embedding(t) for t in texts]

    def models(self) -> list[str]:
        return [self.model]
