"""Multiple choice by log-likelihood: for each option, the summed log-probability of ``" <option>"`` after the
prompt, read from ``/v1/completions`` with ``echo=True, logprobs=1, max_tokens=0``; the answer is the argmax.

The prompt is the plain-text prompt lm-eval builds (no chat template), so the numbers compare with lm-eval's
``local-completions`` runs. The sum covers every token of the continuation: Qwen's tokenizer, for one, splits
digits into single tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from evaluation.kinds.base import EvalContext, RequestEvaluator
from evaluation.metrics import acc, acc_norm, argmax
from evaluation.prompts import as_text, build_turns, doc_choices, doc_target
from evaluation.types import Request, Response, Sample, SampleRecord
from llm_backend.errors import ConfigError

LOGLIKELIHOOD_PARAMS = {"max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0.0}

# Above this many characters (~ one 128-token KV block on vLLM) the first option is scored alone and the others after
# it, so that they find the shared prompt in the server's prefix cache instead of computing it again each.
PRIME_PREFIX_CHARS = 480


def split_context(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's ``_encode_pair``: trailing whitespace of the context moves to the continuation, so that the
    scored part starts where a tokenizer would start a new token."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        return context[:-n_spaces], context[-n_spaces:] + continuation
    return context, continuation


def loglikelihood_request(context: str, continuation: str, *, tag: str = "") -> Request:
    """A request scoring ``continuation`` after ``context``."""
    context, continuation = split_context(context, continuation)
    return Request(
        kind="completion",
        body={"prompt": context + continuation},
        params=dict(LOGLIKELIHOOD_PARAMS),
        continuation_start=len(context),
        tag=tag,
    )


class MultipleChoiceEvaluator(RequestEvaluator):
    """``kind: multiple_choice``: one log-likelihood request per option."""

    def requests(self, sample: Sample) -> list[Request]:
        turns = build_turns(self.task, sample.doc, self.shots.get(sample.id, []))
        context = as_text(turns)
        return [
            loglikelihood_request(context, self.task.prompt.target_delimiter + choice, tag=choice)
            for choice in doc_choices(self.task, sample.doc)
        ]

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> SampleRecord:
        requests = self.requests(sample)
        first = requests[0] if requests else None
        if first is not None and (first.continuation_start or 0) >= PRIME_PREFIX_CHARS and self.task.options.get("prime_prefix", True):
            head = await ctx.send(first)
            rest = await asyncio.gather(*(ctx.send(r) for r in requests[1:]))
            responses = [head, *rest]
        else:
            responses = list(await asyncio.gather(*(ctx.send(r) for r in requests)))
        return self.record(sample, requests, responses)

    def prompt_of(self, requests: Sequence[Request]) -> Any:
        if not requests:
            return None
        first = requests[0]
        assert first.continuation_start is not None
        return str(first.body["prompt"])[: first.continuation_start]

    def score(self, sample: Sample, responses: Sequence[Response]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        choices = doc_choices(self.task, sample.doc)
        gold = doc_target(self.task, sample.doc)
        assert isinstance(gold, int)
        if not 0 <= gold < len(choices):
            raise ConfigError(f"{self.task.name}: sample {sample.id} has gold index {gold} for {len(choices)} options")
        logprobs = [float(r.logprob if r.logprob is not None else float("-inf")) for r in responses]
        metrics: dict[str, float] = {}
        names = [m.name for m in self.task.metrics] or ["acc"]
        for name in names:
            if name == "acc":
                metrics["acc"] = acc(logprobs, gold)
            elif name == "acc_norm":
                metrics["acc_norm"] = acc_norm(logprobs, choices, gold)
            else:
                raise ConfigError(f"{self.task.name}: multiple_choice tasks support the metrics acc and acc_norm, not {name!r}")
        return {"choice": choices[argmax(logprobs)]}, metrics, {"logprobs": logprobs}
