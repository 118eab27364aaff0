"""The agent's memory: typed steps that render themselves back into chat messages.

A run is ``task -> ActionStep, ActionStep, ... -> final answer``. Each :class:`ActionStep` keeps what the model
wrote (thought, tool calls), what came back (observations), what went wrong (``error``) and the tokens it cost.
:meth:`AgentMemory.to_messages` rebuilds the conversation for the next request, so the memory (and a trace loaded
from disk) is the whole state of a run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from llm_backend.types import Message, Usage

FINAL_ANSWER = "final_answer"
StepFormat = Literal["tool_calls", "react", "plan", "inline"]


@dataclass
class AgentToolCall:
    """One call the model asked for. ``arguments`` is ``None`` when its JSON could not be parsed (then ``error``
    says why); ``observation`` is what the model is shown back."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""
    observation: str = ""
    error: str | None = None
    thought: str = ""
    """The reasoning the model wrote in the call's ``thought`` argument (native mode with ``think=True``)."""
    fault: str | None = None
    """What kind of fault ``error`` is: ``"parse"``, ``"invalid_arguments"``, ``"unknown_tool"``, ``"tool_error"``
    or ``"final_answer"`` (a final answer given together with other calls, or without a valid ``answer``)."""

    def arguments_json(self) -> str:
        """Arguments as JSON text that is always valid (malformed input is replaced by ``{}`` when rendered), with
        the call's thought first when it had one, as the model wrote it."""
        args = self.arguments if self.arguments is not None else {}
        if self.thought:
            args = {"thought": self.thought, **args}
        return json.dumps(args, ensure_ascii=False)

    def signature(self) -> tuple[str, str]:
        """What the call does (name and arguments, without the thought): equal signatures repeat a call."""
        return self.name, json.dumps(self.arguments, sort_keys=True, ensure_ascii=False)


@dataclass
class ActionStep:
    """One step of a run: ``step`` (1-based), the model's ``thought``, its ``tool_calls`` with their observations,
    the joined ``observation``, the ``error`` of the step (unparseable reply, invalid call, tool failure),
    ``usage``. ``model_output`` is the raw text reply; ``format`` says how to render it back. ``repaired``: the
    first reply did not fit the tool's schema and the step was asked again with the tool forced."""

    step: int
    thought: str = ""
    tool_calls: list[AgentToolCall] = field(default_factory=list)
    observation: str = ""
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    model_output: str = ""
    format: StepFormat = "tool_calls"
    parse_failure: bool = False
    finish_reason: str | None = None
    repaired: bool = False
    final_answer: str | None = None
    duration_s: float = 0.0

    def written(self) -> str:
        """An inline step's share of the answer: its text, then what its tool wrote in (`` 24`` after an ``=``, an
        ``output`` block after code; nothing when the tool failed or there was no tool use)."""
        call = next((c for c in self.tool_calls if c.name != FINAL_ANSWER), None)
        if call is None or call.error is not None:
            return self.model_output
        if call.name == "calculator":
            return f"{self.model_output} {call.observation}"
        return f"{self.model_output}```output\n{call.observation.rstrip()}\n```\n"

    def to_messages(self) -> list[Message]:
        """The chat messages of this step: the assistant's reply and the observations."""
        if self.format == "plan":
            return [{"role": "assistant", "content": self.thought}, {"role": "user", "content": self.observation}]
        if self.format == "react":
            messages: list[Message] = [{"role": "assistant", "content": self.model_output}]
            if self.final_answer is None:
                messages.append({"role": "user", "content": f"Observation: {self.observation}"})
            return messages
        if not self.tool_calls:
            return [
                {"role": "assistant", "content": self.model_output or "(no tool call)"},
                {"role": "user", "content": self.observation or (self.error or "")},
            ]
        assistant: Message = {
            "role": "assistant",
            "content": self.thought or "",
            "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
                for c in self.tool_calls
            ],
        }
        return [assistant] + [{"role": "tool", "tool_call_id": c.id, "content": c.observation} for c in self.tool_calls]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the trace format)."""
        data = asdict(self)
        data["usage"] = {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionStep:
        """Inverse of :meth:`to_dict`."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["usage"] = Usage(**data.get("usage", {}))
        fields["tool_calls"] = [AgentToolCall(**c) for c in data.get("tool_calls", [])]
        return cls(**fields)


@dataclass
class AgentMemory:
    """The system prompt, the task and the steps so far."""

    system_prompt: str
    task: str
    steps: list[ActionStep] = field(default_factory=list)
    task_message: str | None = None

    def to_messages(self) -> list[Message]:
        """The whole conversation for the next request. Inline steps (text with tool results written into it) make
        one assistant message, the partial answer the next request continues."""
        messages: list[Message] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.task_message if self.task_message is not None else self.task})
        for step in self.steps:
            if step.format != "inline":
                messages.extend(step.to_messages())
        if any(step.format == "inline" for step in self.steps):
            messages.append({"role": "assistant", "content": self.inline_text()})
        return messages

    def inline_text(self) -> str:
        """The answer written so far by inline steps: each step's text followed by what its tool wrote in."""
        return "".join(s.written() for s in self.steps if s.format == "inline")

    @property
    def final_answer(self) -> str | None:
        """The final answer, once a step gave one."""
        for step in reversed(self.steps):
            if step.final_answer is not None:
                return step.final_answer
        return None

    @property
    def usage(self) -> Usage:
        """Tokens over all steps."""
        total = Usage()
        for step in self.steps:
            total = total + step.usage
        return total
