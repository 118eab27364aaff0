"""Does a passage answer this question? A yes/no judgement by the model, read from its log-probabilities.

The relevance gate (:mod:`core.rag.context`) asks whether the passages are *about* the question; it cannot tell a
passage that answers "who sang the song The Reverend Mr. Black" from one that only mentions the song. The answer
model is asked once more, with the same passages first (vLLM's prefix caching then reuses their prompt processing
for the answer), for one token, "yes" or "no"; :func:`judge` returns the probability mass of "yes" against "no"
among the first token's top log-probabilities. A server that is down, refuses the option or returns no
log-probabilities gives ``None``: the caller then goes on as without a judgement (never an error).

The 0.5B model's P(yes) alone separates answerable from unanswerable questions poorly; :func:`answerability`
combines it with the share of the question's words that the best passage holds. The weights and the thresholds
that turn the result into a decision (:data:`REFUSE_BELOW`, :data:`QUOTE_ABOVE`) were calibrated on ClapNQ dev
questions that ``benchmarks/rag_answers.py`` does not score (``benchmarks/rag_answerable.py``; figures in
docs/benchmarks.md). e5's cosine between the question and the closest passage separates ClapNQ's questions better
(held-out ROC AUC 0.85 alone, 0.86 with both signals here, ``rag_answerable.py --fit``), but its scale depends on the
kind of text: fitted on ClapNQ's Wikipedia passages, it refused 4 of the user guide's 16 answerable questions
("Which port does the app use by default?" among them) and let an out-of-guide one through, so it is not used.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.rag.citations import Citation
from core.rag.prompts import load_template
from llm_backend.client import ChatClient
from llm_backend.types import Message

log = logging.getLogger(__name__)

WEIGHTS = (6.88, 4.12, -4.86)
"""Logistic regression of "a passage answers it" on (P(yes), term coverage), fitted on ClapNQ dev questions
100-299 (200 answerable, 200 unanswerable). Either signal alone separates them worse (ROC AUC: P(yes) 0.72, the
share of the question's words in the best passage 0.80, both 0.83)."""
REFUSE_BELOW = 0.35
"""Answerability under which the answer is refused without asking for it: the cut that keeps at least 85% of the
answerable calibration questions (86% kept, 63% of the unanswerable refused; 0.5 would keep 75% and refuse 80%).
A wrong refusal costs more than an answer to an unanswerable question, which grounding keeps to the passages'
words and figures."""
QUOTE_ABOVE = 0.5
"""Answerability from which a reply in which the model refuses anyway is replaced by a quotation of the passages."""
JUDGED_LANGUAGES = frozenset({"en"})
"""Languages whose questions the judgement may refuse: calibrated on English only (no Chinese data set has
unanswerable questions here). In other languages, and when no passage is in the question's language (term
coverage says nothing then), the judgement only decides whether a refusal of the model becomes a quotation."""

_YES = frozenset({"yes", "是", "有", "能"})
_NO = frozenset({"no", "否", "没", "没有", "不", "无"})


@dataclass(frozen=True)
class Judgement:
    """The model's yes/no judgement: ``p_yes`` (None when the server gave no usable log-probabilities) and the
    seconds the call took."""

    p_yes: float | None
    seconds: float = 0.0


def answerability(p_yes: float, coverage: float) -> float:
    """The probability that the passages answer the question, from the model's P(yes) and the share of the
    question's words that the best passage holds (:data:`WEIGHTS`)."""
    a, b, c = WEIGHTS
    return 1.0 / (1.0 + math.exp(-(a * p_yes + b * coverage + c)))


def judge_messages(question: str, sources: Sequence[Citation], language: str) -> list[Message]:
    """The chat messages of the judgement: the answer prompt's passages first, then the yes/no question."""
    tpl = load_template("answerable")
    passages = [{"number": c.number, "label": c.short_label, "text": c.text} for c in sources]
    return [
        {"role": "system", "content": tpl.render(language, "system")},
        {"role": "user", "content": tpl.render(language, "user", question=question, passages=passages)},
    ]


def p_yes_from(raw: dict[str, Any]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from a chat completion's JSON with ``logprobs`` of its first token (None when
    neither word is among the top tokens, or there are no log-probabilities)."""
    try:
        content = raw["choices"][0]["logprobs"]["content"]
        top = content[0].get("top_logprobs") or [content[0]]
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    yes = no = 0.0
    for item in top:
        if not isinstance(item, dict) or not isinstance(item.get("logprob"), int | float):
            continue
        word = str(item.get("token", "")).strip().strip("“”\"'").lower()
        p = math.exp(float(item["logprob"]))
        if word in _YES:
            yes += p
        elif word in _NO:
            no += p
    return yes / (yes + no) if yes + no > 0 else None


def judge(client: ChatClient, question: str, sources: Sequence[Citation], language: str, *, top_logprobs: int = 10) -> Judgement:
    """Ask the model whether ``sources`` answer ``question``: one token, greedy, with its top log-probabilities."""
    start = time.perf_counter()
    try:
        result = client.chat(judge_messages(question, sources, language), temperature=0.0, max_tokens=1, logprobs=True, top_logprobs=top_logprobs)
        p = p_yes_from(result.raw)
    except Exception as exc:  # a judgement is optional: any failure means "no judgement"
        log.warning("answerability judgement failed (%s: %s); answering without it", type(exc).__name__, str(exc)[:200])
        p = None
    seconds = time.perf_counter() - start
    if p is None:
        log.info("answerability judgement gave no usable log-probabilities; answering without it")
    return Judgement(p, seconds)
