"""Do the passages answer this question? A calibrated score from e5 and the question's words, and the figures
and names of the question that no passage holds.

The relevance gate (:mod:`core.rag.context`) asks whether the passages are *about* the question; it cannot tell a
passage that answers "who sang the song The Reverend Mr. Black" from one that only mentions the song.
:func:`assess` looks closer, before the model is asked for an answer:

- **closeness**: e5's cosine between the question and the closest passage, as the model will see the passages;
- **coverage**: the share of the question's words (question words aside) that the best passage holds;
- **missing specifics**: numbers of two or more digits in the question (a year, an episode, an amount) and names
  (capitalised words after the first, acronyms, quoted names) that no passage states. "Why did revolutions break
  out in 1830 and 1848" over a passage on 1830 alone, or "How do I deploy ragent on Kubernetes?" over a guide that
  never names Kubernetes, cannot be answered as asked: an answer would have to state a figure or a name that no
  passage holds, which grounding (:mod:`core.rag.grounding`) exists to prevent.

Closeness and coverage are combined by logistic regression (:data:`WEIGHTS`) into the probability that a passage
answers the question; under :data:`REFUSE_BELOW`, or with a missing specific, :func:`core.rag.answer.answer` refuses
and quotes the closest passage sentence instead, without asking the model. The weights were fitted on ClapNQ dev
questions 30-299 (English Wikipedia; 270 answerable, 270 unanswerable), which ``benchmarks/rag_answers.py`` does not
score; questions 0-29 are the held-out check (``benchmarks/rag_answerable.py --fit``; figures in
docs/benchmarks.md).

What was tried and dropped (docs/benchmarks.md, issue 12): the answer model's own one-token yes/no judgement
(Qwen2.5-Coder-0.5B, read from log-probabilities). Its P(yes) separated answerable from unanswerable questions worse
than either signal here (ROC AUC 0.68-0.72), four other wordings of the question did no better, and one that asked
the opposite ("is the information missing?") got "yes" *more* often for answerable questions: the small model says
yes to passages that are on topic, whatever it is asked. It cost a model call (about 1 s) per answer and added 0.01
of AUC to closeness and coverage.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from core.rag.context import QUESTION_WORDS, term_coverage
from core.rag.grounding import COMMON_CAPS, Claim, PassageFacts, claims
from knowledge.embedders import E5Embedder, Embedder

WEIGHTS = (48.95, 1.71, -42.56)
"""Logistic regression of "a passage answers it" on (e5 closeness, term coverage) and its intercept, fitted on
ClapNQ dev questions 30-299 (``benchmarks/rag_answerable.py --fit``). Cross-validated ROC AUC 0.90 there, 0.85 on
the held-out questions 0-29; closeness alone 0.90, coverage alone 0.80."""
REFUSE_BELOW = 0.45
"""Answerability under which the answer is refused without asking for it: the cut that keeps at least 85% of the
answerable questions in cross-validation (with the missing-specifics rule: 36 of 270 answerable and 212 of 270
unanswerable refused; held out, questions 0-29: 5 of 30 and 23 of 30).
A wrong refusal costs more than an answer to an unanswerable question, which grounding keeps to the passages' words
and figures; and every refusal quotes the closest passage sentence, so the user still sees the source."""
QUOTE_ABOVE = 0.5
"""Answerability from which a reply in which the model refuses anyway is replaced by a quotation of the passages."""
JUDGED_LANGUAGES = frozenset({"en"})
"""Languages whose questions the assessment may refuse: calibrated on English only (no Chinese data set here has
unanswerable questions). In other languages, and when a passage is in another language than the question (no word
coverage, and e5's cosines run lower across languages), there is no assessment."""
SPECIFIC_DIGITS = 2
"""A question's number with at least this many digits is a specific figure that a passage must state. Single digits
are left out: "2 facts about the Great Wall", "season 2" are asked with numbers that passages write as words or
not at all (ClapNQ dev: any missing number marked 26 unanswerable and 8 answerable questions of 300 each, two or
more digits 12 and 2)."""
_CAPITALISED = re.compile(r"(?<=[\s(\"'])([A-Z][\w.+-]*[\w+])")
"""A capitalised word after the question's first (a name: "Kubernetes", "Australia"; the first word is capitalised
anyway). Words that open a sentence and question words are no names (:func:`_names`)."""


@dataclass(frozen=True)
class Assessment:
    """What :func:`assess` found: ``score`` (the probability that a passage answers the question), its two inputs,
    and the question's figures and names that no passage states."""

    score: float
    closeness: float
    coverage: float
    missing: tuple[str, ...] = ()

    def refuses(self, below: float = REFUSE_BELOW) -> bool:
        """Whether the answer should be refused: a missing figure or name, or a score under ``below``."""
        return bool(self.missing) or self.score < below


def answerability(closeness: float, coverage: float) -> float:
    """The probability that the passages answer the question, from e5's cosine between the question and the closest
    passage and the share of the question's words that the best passage holds (:data:`WEIGHTS`)."""
    a, b, c = WEIGHTS
    return 1.0 / (1.0 + math.exp(-(a * closeness + b * coverage + c)))


def missing_specifics(question: str, passages: Sequence[str]) -> list[str]:
    """The question's specific figures (:data:`SPECIFIC_DIGITS`) and names that none of ``passages`` states."""
    found = claims(question)
    specifics = [c for c in found if c.kind == "name" or len(re.sub(r"\D", "", c.text)) >= SPECIFIC_DIGITS]
    specifics += [Claim(name, "name") for name in _names(question)]
    if not specifics:
        return []
    facts = [PassageFacts(p) for p in passages]
    return list(dict.fromkeys(c.text for c in specifics if not any(f.holds(c) for f in facts)))


def _names(question: str) -> list[str]:
    """Capitalised words of ``question`` that are names: not the first word of a sentence ("I run it on port 8000.
    How do I change it?"), not a question word, not a common capital such as "I"."""
    out = []
    for m in _CAPITALISED.finditer(question):
        word, before = m.group(1), question[: m.start()].rstrip(" \"'(")
        if word in COMMON_CAPS or word.lower() in QUESTION_WORDS or not before or before[-1] in ".!?:;。？！":
            continue
        out.append(word)
    return out


def assess(question: str, passages: Sequence[str], embedder: Embedder) -> Assessment:
    """Score how likely ``passages`` (the texts the model will see) answer ``question``. ``embedder`` must be e5 (the
    weights are e5's): see :func:`e5_of`."""
    if not passages:
        return Assessment(0.0, 0.0, 0.0)
    closeness = float(np.max(embedder.embed_documents(list(passages)) @ embedder.embed_query(question)))
    coverage = max(term_coverage(question, p) for p in passages)
    missing = tuple(missing_specifics(question, passages))
    return Assessment(answerability(closeness, coverage), closeness, coverage, missing)


@functools.cache
def shared_e5() -> E5Embedder:
    """One e5 embedder for the assessments of a process whose retriever has none (BM25-only knowledge bases,
    fixed passages); it loads on first use (a second or two)."""
    return E5Embedder()


def e5_of(retriever: Any) -> Embedder:
    """The retriever's own e5 embedder (looked for through wrappers: ``inner``, ``retriever``, ``dense``), so its
    model and cached vectors are reused; else :func:`shared_e5`."""
    todo, seen = [retriever], 0
    while todo and seen < 8:
        obj = todo.pop(0)
        seen += 1
        embedder = getattr(obj, "embedder", None)
        if embedder is not None and getattr(embedder, "name", None) == "e5":
            return cast(Embedder, embedder)
        todo += [getattr(obj, name) for name in ("inner", "retriever", "dense") if getattr(obj, name, None) is not None]
    return shared_e5()
