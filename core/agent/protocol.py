"""What a calling mode is (:mod:`core.agent.modes`, :mod:`core.agent.inline`): the request it builds from the
memory, the reply it parses into tool calls, and the Protocol the loop drives it through."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.agent.memory import AgentMemory, AgentToolCall, StepFormat
from core.tools.registry import Toolbox
from llm_backend.types import ChatResult, Message


@dataclass(frozen=True)
class StepRequest:
    """The request for one step: messages and the keyword arguments of ``client.chat`` (the client builds its
    :class:`~llm_backend.payloads.ChatRequest` from them)."""

    messages: list[Message]
    kwargs: dict[str, Any] = field(default_factory=dict)
    plan: bool = False
    """A planning request: the reply is free text (the plan), not a call."""


@dataclass
class ParsedReply:
    """A model reply turned into calls. ``parse_failure`` means the reply could not be turned into an action at all
    (no call, malformed JSON); ``error`` says why and is shown to the model."""

    thought: str = ""
    calls: list[AgentToolCall] = field(default_factory=list)
    error: str | None = None
    parse_failure: bool = False
    plan: bool = False
    named_tool: str | None = None
    """For an unparseable reply: the tool it was evidently trying to call (its name appears in the text)."""
    truncated: bool = False
    """The reply was cut off at ``max_tokens`` (``finish_reason == "length"``); with a parse failure, typically a
    small model repeating itself inside a call's arguments under greedy decoding."""


class AgentMode(Protocol):
    """What the loop needs from a calling mode."""

    name: str
    format: StepFormat

    def system_prompt(self, toolbox: Toolbox, instructions: str | None) -> str: ...

    def request(self, memory: AgentMemory, toolbox: Toolbox, *, final: bool) -> StepRequest: ...

    def parse(self, reply: ChatResult, toolbox: Toolbox, *, plan: bool = False, memory: AgentMemory | None = None) -> ParsedReply: ...

    def repair(self, memory: AgentMemory, toolbox: Toolbox, parsed: ParsedReply) -> StepRequest | None: ...


def new_call_id() -> str:
    """A fresh id for a tool call the model made without one (text modes)."""
    return f"call_{uuid.uuid4().hex[:12]}"
