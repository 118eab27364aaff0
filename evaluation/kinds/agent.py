"""Agent evaluation: task success of the project's tool-using agent (``core.agent.Agent``) on questions with a
checkable answer (GSM8K with a calculator and the sandboxed Python tool).

Each sample is one agent run on the question (``prompt.text``); success is the task's extraction and metric applied
to the final answer (the last number, compared with the gold number). Steps, tool calls, tool errors and the stop
reason are recorded per sample; the mean number of steps is reported as a metric. A run that fails for an
infrastructure reason (server unreachable, sandbox missing) stops the evaluation; a failed model call is the sample's
error. Agent runs are not cached: an agent's requests depend on tool results along the way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from evaluation.kinds.base import EvalContext
from evaluation.kinds.generate import score_text
from evaluation.prompts import doc_gold, doc_text
from evaluation.task import TaskSpec
from evaluation.types import Request, Sample, SampleRecord
from llm_backend.errors import BackendError, ConfigError

log = logging.getLogger(__name__)

AgentFactory = Callable[[Any, TaskSpec], Any]


def default_agent(client: Any, task: TaskSpec) -> Any:
    """``core.agent.Agent`` with the tools named in ``options.tools`` (default: calculator and python)."""
    from core.agent import Agent
    from core.tools import resolve_tools

    names = list(task.options.get("tools", ["calculator", "python"]))
    params: dict[str, Any] = {"temperature": task.generation.temperature, "max_tokens": task.generation.max_tokens}
    if task.generation.seed is not None:
        params["seed"] = task.generation.seed
    return Agent(
        client, resolve_tools(names), mode=str(task.options.get("mode", "auto")), max_steps=int(task.options.get("max_steps", 6)),
        instructions=task.options.get("instructions"), **params,
    )


class AgentEvaluator:
    """``kind: agent``. ``options``: ``tools``, ``max_steps``, ``mode``, ``instructions``."""

    def __init__(self, task: TaskSpec, agent_factory: AgentFactory | None = None) -> None:
        self.task = task
        self.agent_factory = agent_factory or default_agent

    def prepare(self, data: Any) -> None:
        return

    def requests(self, sample: Sample) -> list[Request]:
        return []  # the agent makes its own requests

    def score(self, sample: Sample, final_answer: str | None) -> tuple[dict[str, Any], dict[str, float]]:
        """Extraction and metrics on the final answer (pure); no answer at all scores as a miss."""
        return score_text(self.task, final_answer or "", doc_gold(self.task, sample.doc))

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> SampleRecord:
        question = doc_text(self.task, sample.doc)
        rec = SampleRecord(sample_id=sample.id, index=sample.index, group=sample.group, prompt=question, target=doc_gold(self.task, sample.doc))
        agent = self.agent_factory(ctx.client, self.task)
        try:
            result = await agent.arun(question)
        except ConfigError:
            raise
        except BackendError as exc:
            from llm_backend.errors import BackendUnavailableError

            if isinstance(exc, BackendUnavailableError):
                raise
            rec.error = f"{type(exc).__name__}: {exc}"
            return rec
        rec.extracted, metrics = self.score(sample, result.final_answer)
        rec.metrics = {**metrics, "steps": float(len(result.steps))}
        rec.responses = [{"text": result.final_answer or "", "stop_reason": result.stop_reason}]
        rec.prompt_tokens, rec.completion_tokens = result.usage.prompt_tokens, result.usage.completion_tokens
        rec.latency_s = round(result.duration_s, 3)
        rec.extra = {
            "stop_reason": result.stop_reason,
            "tool_calls": [c.name for s in result.steps for c in s.tool_calls],
            "tool_errors": result.tool_errors,
            "parse_failures": result.parse_failures,
            "invalid_calls": result.invalid_calls,
            "mode": result.mode,
        }
        return rec

    def summary(self, records: Sequence[SampleRecord]) -> dict[str, Any]:
        """Stop reasons over the records (for reports)."""
        reasons: dict[str, int] = {}
        for r in records:
            key = str(r.extra.get("stop_reason", "error" if r.error else "?"))
            reasons[key] = reasons.get(key, 0) + 1
        return reasons
