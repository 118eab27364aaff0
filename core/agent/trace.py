"""Agent traces: one JSON object per line, written as the run goes, so a crashed or interrupted run can be read
back, replayed (shown again, no model calls) and resumed (continued from its last complete step).

Records, in order::

    {"type": "run", "version": 1, "task": ..., "system_prompt": ..., "mode": ..., "model": ..., "tools": [...], ...}
    {"type": "step", "step": 1, "thought": ..., "tool_calls": [...], "observation": ..., "usage": {...}, ...}
    ...
    {"type": "resume", "at": ...}        # when a run was resumed; later steps follow
    {"type": "result", "final_answer": ..., "stop_reason": ..., ...}
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from core.agent.events import AgentEvent, ModelReplied, RunStarted, StepFinished, StepStarted, ToolFinished
from core.agent.memory import ActionStep
from llm_backend.errors import ConfigError

TRACE_VERSION = 1


class TraceWriter:
    """Appends records to a JSONL trace, flushing after each so nothing is lost if the process dies."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._fh.flush()

    def header(self, **fields: Any) -> None:
        """The run record (task, prompt, mode, model, tools, limits)."""
        self._write({"type": "run", "version": TRACE_VERSION, "started_at": time.time(), **fields})

    def resumed(self) -> None:
        """Mark that a run continues from here."""
        self._write({"type": "resume", "at": time.time()})

    def step(self, step: ActionStep) -> None:
        """One finished step."""
        self._write({"type": "step", **step.to_dict()})

    def result(self, **fields: Any) -> None:
        """The end of a run."""
        self._write({"type": "result", "finished_at": time.time(), **fields})

    def close(self) -> None:
        """Close the file (reopened on the next write)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


@dataclass
class Trace:
    """A trace read back: the run record, its steps and the last result record (``None`` if the run never
    finished)."""

    path: Path
    header: dict[str, Any]
    steps: list[ActionStep] = field(default_factory=list)
    result: dict[str, Any] | None = None

    @property
    def task(self) -> str:
        return str(self.header.get("task", ""))


def load_trace(path: str | Path) -> Trace:
    """Read a trace. A half-written last line (the process died mid-write) is ignored; steps are de-duplicated by
    number, the latest record winning (a resumed run may redo a step)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no trace file at {file}")
    header: dict[str, Any] | None = None
    steps: dict[int, ActionStep] = {}
    result: dict[str, Any] | None = None
    lines = file.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if n == len(lines):
                break
            raise ConfigError(f"{file}:{n} is not valid JSON ({exc.msg}); is this an agent trace?") from exc
        kind = record.get("type")
        if kind == "run" and header is None:
            header = record
        elif kind == "step":
            step = ActionStep.from_dict(record)
            steps[step.step] = step
        elif kind == "result":
            result = record
        elif kind == "resume":
            result = None
    if header is None:
        raise ConfigError(f"{file} has no run record; is this an agent trace (written with --trace)?")
    return Trace(file, header, [steps[k] for k in sorted(steps)], result)


def replay_events(trace: Trace) -> Iterator[AgentEvent]:
    """The events of a recorded run, as a live run would have streamed them (without the final ``RunFinished``,
    whose result object the caller builds from ``trace.result``)."""
    h = trace.header
    yield RunStarted(str(h.get("task", "")), str(h.get("mode", "")), str(h.get("model", "")), tuple(h.get("tools", [])), int(h.get("max_steps", 0)))
    for step in trace.steps:
        yield StepStarted(step.step)
        yield ModelReplied(step.step, step.thought, tuple(step.tool_calls), step.error if step.parse_failure else None)
        for call in step.tool_calls:
            yield ToolFinished(step.step, call)
        yield StepFinished(step)
