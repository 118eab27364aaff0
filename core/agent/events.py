"""Events an agent run streams to its caller (the CLI, the Streamlit runner): one per thing that happened.

``Agent.stream(task)`` yields them; ``Agent.run(task, on_event=callback)`` passes them to a callback. A replayed
trace yields the same events, so live and replayed runs render alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.agent.memory import ActionStep, AgentResult, AgentToolCall


@dataclass(frozen=True)
class RunStarted:
    """A run (or a resumed run) begins. ``resumed_steps`` counts the steps loaded from a trace."""

    task: str
    mode: str
    model: str
    tools: tuple[str, ...]
    max_steps: int
    resumed_steps: int = 0
    kind: str = "run_started"


@dataclass(frozen=True)
class StepStarted:
    """The model is being asked for step ``step``."""

    step: int
    kind: str = "step_started"


@dataclass(frozen=True)
class ModelReplied:
    """The model answered: its thought and the calls it asked for (not yet run). ``error`` is set when the reply
    could not be parsed."""

    step: int
    thought: str
    tool_calls: tuple[AgentToolCall, ...]
    error: str | None = None
    kind: str = "model_replied"


@dataclass(frozen=True)
class ToolFinished:
    """A tool call came back; ``call.observation`` is what the model will see, ``call.error`` any fault."""

    step: int
    call: AgentToolCall
    duration_s: float = 0.0
    kind: str = "tool_finished"


@dataclass(frozen=True)
class StepFinished:
    """A step is complete and in memory (and in the trace)."""

    step: ActionStep
    kind: str = "step_finished"


@dataclass(frozen=True)
class RunFinished:
    """The run ended: final answer or step limit."""

    result: AgentResult
    kind: str = "run_finished"


AgentEvent = RunStarted | StepStarted | ModelReplied | ToolFinished | StepFinished | RunFinished
