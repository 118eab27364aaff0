"""The agent loop: ask the model for a step, run the tools it called, show it what came back, repeat until it calls
``final_answer`` or the step limit is reached.

The loop is written once, in :meth:`Agent._steps`, as a generator that *describes* its I/O: it yields a
:class:`_ModelCall` when it needs the model and a :class:`_ToolRun` when it needs a tool, and receives the answer
back. :meth:`Agent.stream` (sync) and :meth:`Agent.astream` (asyncio) are the two small drivers that perform them,
so the same logic serves the CLI and concurrent benchmarks. Events for callers are yielded along the way.

Faults: a reply that cannot be parsed, an unknown tool, invalid arguments and a tool that raises all become
observations the model sees on the next step (and are counted); a model server that is down
(:class:`~llm_backend.errors.BackendError`) or a missing sandbox is raised. The trace up to the last complete step
is on disk, so such a run can be resumed.

Example::

    agent = Agent(OpenAIChatClient(), [calculator, make_python_tool()], max_steps=6, trace_path="run.jsonl")
    result = agent.run("What is 17% of 2,340?", on_event=print)
    print(result.final_answer)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.agent.events import (
    AgentEvent,
    ModelReplied,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolFinished,
)
from core.agent.memory import FINAL_ANSWER, ActionStep, AgentMemory, AgentResult, AgentToolCall
from core.agent.modes import choose_mode, final_answer_tool
from core.agent.prompts import prompts, render
from core.agent.protocol import AgentMode, StepRequest
from core.agent.trace import Trace, TraceWriter, load_trace
from core.tools.base import Tool, ToolOutput
from core.tools.registry import Toolbox
from llm_backend.client import ChatClient
from llm_backend.errors import ConfigError
from llm_backend.types import ChatResult

log = logging.getLogger(__name__)


def _repeats(steps: Sequence[ActionStep]) -> bool:
    """The last step made exactly the calls of the one before (and they were well-formed)."""
    if len(steps) < 2 or not steps[-1].tool_calls or steps[-1].parse_failure:
        return False
    return [c.signature() for c in steps[-1].tool_calls] == [c.signature() for c in steps[-2].tool_calls]


@dataclass(frozen=True)
class _ModelCall:
    request: StepRequest


@dataclass(frozen=True)
class _ToolRun:
    call: AgentToolCall


_Effect = _ModelCall | _ToolRun


class Agent:
    """A tool-using agent over any :class:`~llm_backend.client.ChatClient`.

    ``mode`` is ``"auto"`` (native tool calls, or react-json on llama.cpp), ``"native"``, ``"react-json"``,
    ``"react"`` or an :class:`~core.agent.modes.AgentMode`. ``instructions`` are added to the system prompt.
    ``params`` (temperature, max_tokens, seed, ...) go to every request; the default is greedy decoding.
    ``stop_repeats``: when a step repeats the previous step's calls exactly, the next step is the forced final one.
    ``metadata`` is stored in the trace's run record (the CLI keeps its tool options there to resume with).
    """

    def __init__(
        self,
        client: ChatClient,
        tools: Sequence[Tool] = (),
        *,
        mode: str | AgentMode = "auto",
        max_steps: int = 8,
        instructions: str | None = None,
        trace_path: str | Path | None = None,
        force_final_answer: bool = True,
        observation_chars: int = 4000,
        stop_repeats: bool = True,
        metadata: dict[str, Any] | None = None,
        **params: Any,
    ) -> None:
        if max_steps < 1:
            raise ConfigError(f"max_steps must be at least 1, got {max_steps}")
        if any(t.name == FINAL_ANSWER for t in tools):
            raise ConfigError(f"{FINAL_ANSWER!r} is reserved for the tool that ends a run; rename your tool")
        self.client = client
        self.toolbox = Toolbox(tools)
        self.mode: AgentMode = choose_mode(client, mode) if isinstance(mode, str) else mode
        self.max_steps = max_steps
        self.instructions = instructions
        self.trace_path = Path(trace_path) if trace_path else None
        self.force_final_answer = force_final_answer
        self.observation_chars = observation_chars
        self.stop_repeats = stop_repeats
        self.metadata = dict(metadata or {})
        self.params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 512, **params}
        self._final = final_answer_tool()

    # -- memory ---------------------------------------------------------------------------------------------------
    def new_memory(self, task: str) -> AgentMemory:
        """A fresh memory for ``task`` with this agent's system prompt."""
        return AgentMemory(self.mode.system_prompt(self.toolbox, self.instructions), task, task_message=render("task", task=task))

    def _model_name(self) -> str:
        try:
            return str(getattr(self.client, "model", "") or "")
        except Exception:  # the model name is only informative; never fail a run over it
            return ""

    # -- the loop -------------------------------------------------------------------------------------------------
    def _steps(self, memory: AgentMemory, trace: TraceWriter | None, resumed: int) -> Generator[_Effect | AgentEvent, Any, AgentResult]:
        start = time.monotonic()
        model = self._model_name()
        yield RunStarted(memory.task, self.mode.name, model, tuple(self.toolbox.names), self.max_steps, resumed)
        stop_reason = "final_answer"
        forced = False
        while memory.final_answer is None:
            number = len(memory.steps) + 1
            # Past the step limit, or when the model repeats its last call word for word (a small model's loop),
            # one last step is asked for whose only possible call is final_answer.
            reason = "max_steps" if number > self.max_steps else "repeated_call" if self.stop_repeats and _repeats(memory.steps) else None
            if reason is not None and (forced or not self.force_final_answer):
                stop_reason = reason if stop_reason == "final_answer" else stop_reason
                break
            final = reason is not None
            if final:
                forced, stop_reason = True, reason or stop_reason
            yield StepStarted(number)
            began = time.monotonic()
            request = self.mode.request(memory, self.toolbox, final=final)
            reply: ChatResult = yield _ModelCall(StepRequest(request.messages, {**self.params, **request.kwargs}))
            parsed = self.mode.parse(reply, self.toolbox, plan=request.plan, memory=memory)
            if parsed.plan:
                step = ActionStep(step=number, thought=parsed.thought, observation=render("after_plan"), usage=reply.usage,
                                  model_output=reply.text, format="plan", duration_s=time.monotonic() - began)
                yield ModelReplied(number, step.thought, ())
                memory.steps.append(step)
                if trace is not None:
                    trace.step(step)
                yield StepFinished(step)
                continue
            usage, repaired = reply.usage, False
            retry = self.mode.repair(memory, self.toolbox, parsed)
            if retry is not None:
                second: ChatResult = yield _ModelCall(StepRequest(retry.messages, {**self.params, **retry.kwargs}))
                fixed = self.mode.parse(second, self.toolbox, memory=memory)
                usage = usage + second.usage
                if fixed.calls and not fixed.parse_failure:
                    reply, parsed, repaired = second, fixed, True
            step = ActionStep(
                step=number, thought=parsed.thought, tool_calls=parsed.calls, error=parsed.error, usage=usage,
                model_output=reply.text, format=self.mode.format, parse_failure=parsed.parse_failure, repaired=repaired,
                finish_reason=reply.finish_reason,
            )
            yield ModelReplied(number, step.thought, tuple(step.tool_calls), step.error if step.parse_failure else None)
            for call in step.tool_calls:
                if call.arguments is None:  # malformed JSON: the parse error is the observation
                    call.observation = f"Error: {call.error}. Send the arguments as a JSON object."
                    yield ToolFinished(number, call)
                elif call.name != FINAL_ANSWER:
                    t0 = time.monotonic()
                    output: ToolOutput = yield _ToolRun(call)
                    call.observation, call.error, call.fault = self._clip(output.content), output.error, output.fault
                    yield ToolFinished(number, call, time.monotonic() - t0)
            self._take_final_answer(step)
            for call in step.tool_calls:
                if call.name == FINAL_ANSWER and call.arguments is not None:
                    yield ToolFinished(number, call)
            observations = [c.observation for c in step.tool_calls if c.observation]
            step.observation = "\n".join(observations) if observations else (step.error or "")
            step.error = step.error or "; ".join(c.error for c in step.tool_calls if c.error) or None
            step.duration_s = time.monotonic() - began
            memory.steps.append(step)
            if trace is not None:
                trace.step(step)
            yield StepFinished(step)
        result = AgentResult.from_steps(
            memory.task, memory.steps, stop_reason,
            duration_s=time.monotonic() - start, mode=self.mode.name, model=model,
            trace_path=str(self.trace_path) if self.trace_path else None,
        )
        if trace is not None:
            trace.result(**{k: v for k, v in result.summary().items() if k != "task"})
            trace.close()
        yield RunFinished(result)
        return result

    def _take_final_answer(self, step: ActionStep) -> None:
        """Accept a ``final_answer`` call that is valid and alone in its step; otherwise explain why not."""
        finals = [c for c in step.tool_calls if c.name == FINAL_ANSWER and c.arguments is not None]
        for call in finals:
            if len(step.tool_calls) > 1:
                # Given beside other calls, the answer was written before their results were seen.
                call.error, call.fault = "final_answer must be called alone", "final_answer"
                call.observation = "Ignored: call final_answer alone, after you have read the results of your other calls."
                continue
            args = dict(call.arguments or {})
            if isinstance(args.get("answer"), int | float | bool):
                args["answer"] = str(args["answer"])
            checked = self._final.run(args)
            if checked.ok:
                step.final_answer = str(checked.value)
                call.observation = "Final answer recorded."
            else:
                call.error, call.fault, call.observation = f"final_answer: {checked.error}", "final_answer", checked.content

    def _clip(self, text: str) -> str:
        if len(text) <= self.observation_chars:
            return text
        return text[: self.observation_chars] + f"\n[... {len(text) - self.observation_chars} more characters cut]"

    def _start(self, task: str | None, memory: AgentMemory | None) -> tuple[AgentMemory, TraceWriter | None, int]:
        if memory is None:
            if not task or not task.strip():
                raise ConfigError("the agent needs a task: a non-empty string")
            memory = self.new_memory(task)
            resumed = 0
        else:
            resumed = len(memory.steps)
        trace = TraceWriter(self.trace_path) if self.trace_path else None
        if trace is not None:
            if resumed:
                trace.resumed()
            else:
                trace.header(
                    task=memory.task, system_prompt=memory.system_prompt, task_message=memory.task_message,
                    mode=self.mode.name, model=self._model_name(), tools=self.toolbox.names, max_steps=self.max_steps,
                    params=self.params, prompts_version=prompts().get("version"), metadata=self.metadata,
                )
        return memory, trace, resumed

    # -- drivers --------------------------------------------------------------------------------------------------
    def stream(self, task: str | None = None, *, memory: AgentMemory | None = None) -> Iterator[AgentEvent]:
        """Run ``task`` (or continue ``memory``) and yield events as they happen; the last one is
        :class:`~core.agent.events.RunFinished`."""
        memory, trace, resumed = self._start(task, memory)
        gen = self._steps(memory, trace, resumed)
        reply: Any = None
        try:
            while True:
                try:
                    item = gen.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(item, _ModelCall):
                    reply = self.client.chat(item.request.messages, **item.request.kwargs)
                elif isinstance(item, _ToolRun):
                    reply = self.toolbox.call(item.call.name, item.call.arguments or {})
                else:
                    yield item
        finally:
            gen.close()
            if trace is not None:
                trace.close()

    async def astream(self, task: str | None = None, *, memory: AgentMemory | None = None) -> AsyncIterator[AgentEvent]:
        """Async twin of :meth:`stream`: the model is called with ``achat``, tools in a worker thread."""
        memory, trace, resumed = self._start(task, memory)
        gen = self._steps(memory, trace, resumed)
        reply: Any = None
        try:
            while True:
                try:
                    item = gen.send(reply)
                except StopIteration:
                    return
                reply = None
                if isinstance(item, _ModelCall):
                    reply = await self.client.achat(item.request.messages, **item.request.kwargs)
                elif isinstance(item, _ToolRun):
                    reply = await asyncio.to_thread(self.toolbox.call, item.call.name, item.call.arguments or {})
                else:
                    yield item
        finally:
            gen.close()
            if trace is not None:
                trace.close()

    def run(self, task: str | None = None, *, memory: AgentMemory | None = None, on_event: Callable[[AgentEvent], None] | None = None) -> AgentResult:
        """Run to the end and return the :class:`AgentResult`; ``on_event`` sees every event."""
        result: AgentResult | None = None
        for event in self.stream(task, memory=memory):
            if on_event is not None:
                on_event(event)
            if isinstance(event, RunFinished):
                result = event.result
        assert result is not None
        return result

    async def arun(self, task: str | None = None, *, memory: AgentMemory | None = None, on_event: Callable[[AgentEvent], None] | None = None) -> AgentResult:
        """Async twin of :meth:`run`."""
        result: AgentResult | None = None
        async for event in self.astream(task, memory=memory):
            if on_event is not None:
                on_event(event)
            if isinstance(event, RunFinished):
                result = event.result
        assert result is not None
        return result

    # -- resume ---------------------------------------------------------------------------------------------------
    def memory_from_trace(self, trace: Trace) -> AgentMemory:
        """The memory of a recorded run, to continue it. Warns when this agent's mode or tools differ."""
        h = trace.header
        if h.get("mode") and h["mode"] != self.mode.name:
            log.warning("trace %s was recorded in mode %s; continuing in mode %s", trace.path, h["mode"], self.mode.name)
        missing = set(h.get("tools", [])) - set(self.toolbox.names)
        if missing:
            log.warning("trace %s used tools this agent lacks: %s", trace.path, ", ".join(sorted(missing)))
        return AgentMemory(str(h.get("system_prompt", "")), trace.task, list(trace.steps), task_message=h.get("task_message"))

    def resume(self, trace_path: str | Path, *, on_event: Callable[[AgentEvent], None] | None = None) -> AgentResult:
        """Continue the run recorded in ``trace_path`` from its last complete step, appending to the same trace.
        A run that already has a final answer is returned as recorded."""
        trace = load_trace(trace_path)
        memory = self.memory_from_trace(trace)
        self.trace_path = Path(trace_path)
        if memory.final_answer is not None:
            return AgentResult.from_steps(memory.task, memory.steps, "final_answer", mode=self.mode.name, model=str(trace.header.get("model", "")), trace_path=str(trace_path))
        return self.run(memory=memory, on_event=on_event)
