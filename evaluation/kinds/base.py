"""The evaluator interface and the common shape "build requests (pure) -> send -> score (pure)"."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evaluation.cache import ResponseCache
from evaluation.data import TaskData
from evaluation.prompts import doc_gold, select_fewshot
from evaluation.send import SendFn
from evaluation.task import TaskSpec
from evaluation.types import Request, Response, Sample, SampleRecord


@dataclass
class EvalContext:
    """What an evaluator may use while scoring a sample: ``send`` (cached, error-capturing) and, for kinds that
    drive the model through other layers (RAG pipeline, agent loop), the client itself."""

    send: SendFn
    client: Any = None
    model: str = ""
    cache: ResponseCache | None = None


class Evaluator(Protocol):
    """One task kind. ``prepare`` runs once before the samples (few-shot selection, building an index);
    ``evaluate`` scores one sample and never raises for a failed request (it returns a record with ``error``)."""

    task: TaskSpec

    def prepare(self, data: TaskData) -> None: ...

    def requests(self, sample: Sample) -> list[Request]: ...

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> SampleRecord: ...


def failed(responses: Sequence[Response]) -> str | None:
    """The first error among ``responses``, if any."""
    return next((r.error for r in responses if r.error), None)


def usage_fields(responses: Sequence[Response]) -> dict[str, Any]:
    """Latency (the slowest request: they run concurrently), token counts and cache status of a sample."""
    return {
        "latency_s": max((r.latency_s for r in responses), default=0.0),
        "prompt_tokens": sum(r.prompt_tokens for r in responses),
        "completion_tokens": sum(r.completion_tokens for r in responses),
        "cached": bool(responses) and all(r.cached for r in responses),
    }


class RequestEvaluator:
    """Base for kinds whose samples are a fixed list of requests scored by a pure function."""

    def __init__(self, task: TaskSpec) -> None:
        self.task = task
        self.shots: dict[str, list[Any]] = {}

    def prepare(self, data: TaskData) -> None:
        """Pick every sample's few-shot examples (deterministic for a given seed)."""
        self.shots = select_fewshot(self.task, data.samples, data.fewshot)

    def requests(self, sample: Sample) -> list[Request]:
        raise NotImplementedError

    def prompt_of(self, requests: Sequence[Request]) -> Any:
        """What the sample record keeps of the prompt (chat messages by default)."""
        return requests[0].body.get("messages") if requests else None

    def score(self, sample: Sample, responses: Sequence[Response]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        """``(extracted answers, metric values, extra details)`` for successful responses."""
        raise NotImplementedError

    def record(self, sample: Sample, requests: Sequence[Request], responses: Sequence[Response]) -> SampleRecord:
        """Assemble the sample's record (pure): an error record when any request failed, else the scores."""
        rec = SampleRecord(
            sample_id=sample.id,
            index=sample.index,
            group=sample.group,
            target=doc_gold(self.task, sample.doc) if self.task.prompt.target else None,
            prompt=self.prompt_of(requests),
            responses=[r.to_dict() for r in responses],
            **usage_fields(responses),
        )
        rec.error = failed(responses)
        if rec.error is None:
            rec.extracted, rec.metrics, rec.extra = self.score(sample, responses)
        return rec

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> SampleRecord:
        requests = self.requests(sample)
        responses = await asyncio.gather(*(ctx.send(r) for r in requests))
        return self.record(sample, requests, responses)
