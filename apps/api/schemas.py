"""Request bodies of the OpenAI-compatible endpoints, and the response pieces built from our results.

Only the fields the service uses are declared; other OpenAI fields are accepted and, for models passed through to
the backend, forwarded (``extra="allow"``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(BaseModel):
    """One message of the conversation. ``content`` may be a string or OpenAI content parts (text parts are joined)."""

    model_config = ConfigDict(extra="allow")

    role: Role
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text (text parts joined; images and other parts left out)."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") in (None, "text", "input_text"))

    def to_message(self) -> dict[str, Any]:
        """The message as the backend client takes it (extra fields such as ``tool_calls`` kept)."""
        data = self.model_dump(exclude_none=True)
        if isinstance(self.content, list):
            data["content"] = self.content
        return data


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _has_user_message(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.role == "user" for m in messages):
            raise ValueError("the conversation needs at least one message with role 'user'")
        return messages

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` or ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    def question(self) -> str:
        """The last user message's text: what a knowledge base or an agent is asked."""
        return next(m.text() for m in reversed(self.messages) if m.role == "user")

    def history(self) -> list[dict[str, Any]]:
        """The user and assistant turns before the last user message (used to rewrite follow-up questions)."""
        last = max(i for i, m in enumerate(self.messages) if m.role == "user")
        return [{"role": m.role, "content": m.text()} for m in self.messages[:last] if m.role in ("user", "assistant") and m.text()]

    def include_usage(self) -> bool:
        """Whether the stream ends with a usage chunk (``stream_options.include_usage``)."""
        return bool((self.stream_options or {}).get("include_usage"))


class EmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``. ``input_type`` (extension): ``"passage"`` (default) or ``"query"``; e5 embeds the two
    differently, as a knowledge base does for its passages and for questions."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    input_type: Literal["passage", "query"] = "passage"
    dimensions: int | None = None

    def texts(self) -> list[str]:
        """The inputs as a list of strings."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


def completion_id() -> str:
    """A fresh ``chatcmpl-...`` id."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI ``usage``."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}


def completion(
    model: str, message: dict[str, Any], *, finish_reason: str = "stop", usage: dict[str, int] | None = None, cid: str | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    return {
        "id": cid or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage or usage_dict(0, 0),
    }


def chunk(cid: str, model: str, delta: dict[str, Any], *, finish_reason: str | None = None, created: int | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def usage_chunk(cid: str, model: str, usage: dict[str, int]) -> dict[str, Any]:
    """The last chunk of a stream asked with ``stream_options.include_usage``: no choices, the usage."""
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model, "choices": [], "usage": usage}
