"""Generation through the chat API (the model's own chat template), then answer extraction and text metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluation.extract import extract_all
from evaluation.kinds.base import RequestEvaluator
from evaluation.metrics import text_metric
from evaluation.prompts import as_messages, as_text, build_turns, doc_gold
from evaluation.task import TaskSpec
from evaluation.types import Request, Response, Sample


def generation_params(task: TaskSpec) -> dict[str, Any]:
    """Sampling parameters sent with every generation request of ``task``."""
    gen = task.generation
    params: dict[str, Any] = {"max_tokens": gen.max_tokens, "temperature": gen.temperature}
    if gen.top_p is not None:
        params["top_p"] = gen.top_p
    if gen.stop:
        # OpenAI-compatible servers accept at most four stop strings (lm-eval sends the first four too).
        params["stop"] = list(gen.stop[:4])
    if gen.seed is not None:
        params["seed"] = gen.seed
    return params


def score_text(task: TaskSpec, text: str, gold: Any) -> tuple[dict[str, str], dict[str, float]]:
    """Run every extraction pipeline on ``text`` and every metric on every extracted answer.

    Metric keys are ``"<metric>,<pipeline>"`` as in lm-eval's results (``exact_match,strict-match``).
    """
    extracted = extract_all(text, task.filters)
    metrics: dict[str, float] = {}
    for spec in task.metrics:
        func = text_metric(spec.name)
        for name, answer in extracted.items():
            metrics[f"{spec.name},{name}"] = func(answer, gold, **spec.args())
    return extracted, metrics


class GenerateEvaluator(RequestEvaluator):
    """``kind: generate``: one chat request per sample (or a plain completion with ``prompt.chat: false``)."""

    def requests(self, sample: Sample) -> list[Request]:
        turns = build_turns(self.task, sample.doc, self.shots.get(sample.id, []))
        params = generation_params(self.task)
        if self.task.prompt.chat:
            messages = as_messages(turns, multiturn=self.task.fewshot.as_multiturn)
            return [Request(kind="chat", body={"messages": messages}, params=params)]
        return [Request(kind="completion", body={"prompt": as_text(turns)}, params=params)]

    def prompt_of(self, requests: Sequence[Request]) -> Any:
        body = requests[0].body
        return body.get("messages", body.get("prompt"))

    def score(self, sample: Sample, responses: Sequence[Response]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        extracted, metrics = score_text(self.task, responses[0].text, doc_gold(self.task, sample.doc))
        return extracted, metrics, {}
