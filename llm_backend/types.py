"""Plain data types that cross the one door to the model: what goes in, what comes back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, Any]
"""An OpenAI chat message: ``{"role": "user", "content": "..."}`` (plus ``tool_calls`` / ``tool_call_id``)."""

ToolChoice = Literal["auto", "required", "none"] | str
"""``"auto"``, ``"required"``, ``"none"`` or the name of one tool to force."""


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the server (zeros when it reports none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass(frozen=True)
class ToolCall:
    """One function call requested by the model. ``arguments`` is the raw JSON text the model wrote."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """Arguments as a dict; raises ``ValueError`` naming the problem when the JSON is malformed."""
        text = self.arguments.strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments of {self.name!r} are not valid JSON ({exc.msg} at {exc.pos}): {text!r}") from exc
        if not isinstance(value, dict):
            raise ValueError(f"arguments of {self.name!r} must be a JSON object, got {type(value).__name__}")
        return value

    def to_message_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class ChatResult:
    """A finished chat completion."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_message(self) -> Message:
        """The assistant message to append to a conversation."""
        msg: Message = {"role": "assistant", "content": self.text}
        if self.tool_calls:
            msg["tool_calls"] = [c.to_message_dict() for c in self.tool_calls]
        return msg


@dataclass(frozen=True)
class ChatChunk:
    """One piece of a streamed answer. The last chunk carries ``finish_reason`` and, when the server sends it,
    ``usage``. ``tool_calls`` holds the calls assembled so far (only on the final chunk)."""

    delta: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class TokenLogprob:
    """One prompt or generated token with its log-probability (``None`` for the very first prompt token)."""

    token: str
    logprob: float | None
    offset: int


@dataclass(frozen=True)
class CompletionResult:
    """A ``/v1/completions`` answer; with ``echo=True`` the tokens include the prompt."""

    text: str
    tokens: tuple[TokenLogprob, ...] = ()
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def continuation_logprob(self, prompt_chars: int) -> float:
        """Sum of the log-probabilities of echoed tokens that start at or after character ``prompt_chars``:
        the log-likelihood of the continuation given the context, for multiple-choice scoring."""
        return sum(t.logprob for t in self.tokens if t.offset >= prompt_chars and t.logprob is not None)


@dataclass(frozen=True)
class RerankResult:
    """One document's relevance from a rerank endpoint."""

    index: int
    score: float
