"""The agent's memory: typed steps that render themselves back into chat messages.

A run is ``task -> ActionStep, ActionStep, ... -> final answer``. Each :class:`ActionStep` keeps what the model
wrote (thought, tool calls), what came back (observations), what went wrong (``error``) and the tokens it cost.
:meth:`AgentMemory.to_messages` rebuilds the conversation for the next request, so the memory (and a trace loaded
from disk) is the whole state of a run. :class:`AgentResult` tallies how a run ended from its steps; it sits here,
beside the step types, so that the loop, its events and its trace all import it from below.
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


@dataclass
class AgentResult:
    """How a run ended. ``stop_reason`` is ``"final_answer"``, ``"max_steps"`` or ``"repeated_call"`` (in the last
    two, ``final_answer`` is what the forced last step gave, possibly ``None``). ``parse_failures`` counts replies that could not be turned into an
    action; ``invalid_calls`` unknown tools and invalid arguments; ``tool_errors`` tools that raised;
    ``repaired_steps`` steps whose first reply missed the tool's schema and were asked again with the tool forced."""

    task: str
    final_answer: str | None
    stop_reason: str
    steps: list[ActionStep] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    parse_failures: int = 0
    invalid_calls: int = 0
    tool_errors: int = 0
    repaired_steps: int = 0
    duration_s: float = 0.0
    mode: str = ""
    model: str = ""
    trace_path: str | None = None

    def summary(self) -> dict[str, Any]:
        """Counts and figures without the steps (for ``--json`` and result files)."""
        return {
            "task": self.task,
            "final_answer": self.final_answer,
            "stop_reason": self.stop_reason,
            "steps": len(self.steps),
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "parse_failures": self.parse_failures,
            "invalid_calls": self.invalid_calls,
            "tool_errors": self.tool_errors,
            "repaired_steps": self.repaired_steps,
            "duration_s": round(self.duration_s, 3),
            "mode": self.mode,
            "model": self.model,
            "trace": self.trace_path,
        }

    @classmethod
    def from_steps(cls, task: str, steps: list[ActionStep], stop_reason: str, **extra: Any) -> AgentResult:
        """Tally a result from steps (used by the loop and when reading a trace back)."""
        usage = Usage()
        for s in steps:
            usage = usage + s.usage
        answer = next((s.final_answer for s in reversed(steps) if s.final_answer is not None), None)
        return cls(
            task=task,
            final_answer=answer,
            stop_reason=stop_reason,
            steps=list(steps),
            usage=usage,
            parse_failures=sum(s.parse_failure for s in steps),
            invalid_calls=sum(1 for s in steps for c in s.tool_calls if c.fault in ("invalid_arguments", "unknown_tool", "final_answer")),
            tool_errors=sum(1 for s in steps for c in s.tool_calls if c.fault == "tool_error"),
            repaired_steps=sum(s.repaired for s in steps),
            **extra,
        )
