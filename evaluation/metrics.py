"""Metrics, each a small pure function checked by hand in ``tests/evaluation/test_metrics.py``.

- ``exact_match``: lm-evaluation-harness's (HF ``evaluate``) exact match with ``regexes_to_ignore``,
  ``ignore_case``, ``ignore_punctuation``, ``ignore_numbers``.
- ``acc`` / ``acc_norm``: multiple choice by log-likelihood (argmax; ``acc_norm`` divides by the option's length
  in characters, as lm-eval).
- ``squad_em`` / ``squad_f1``: the official SQuAD v1.1 answer normalisation and token F1 (English).
- ``cmrc_em`` / ``cmrc_f1``: the official CMRC2018 scorer (character segmentation for Chinese, longest common
  substring F1).
- ``recall_at_k``, ``mrr``, ``ndcg_at_k``: retrieval against gold passage ids.
- ``pass_at_k``: the unbiased estimator of the Codex paper.
- ``mean_stderr``: the standard error of a mean, as lm-eval reports it.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

# -- exact match (lm-eval) -----------------------------------------------------------------------------------------


def exact_match(
    prediction: str,
    reference: str,
    *,
    regexes_to_ignore: Sequence[str] | None = None,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
) -> float:
    """1.0 when prediction and reference are equal after the same normalisation, as lm-eval's ``exact_match``:
    each regex in ``regexes_to_ignore`` is deleted from both (in order), then case, punctuation and digits are
    dropped if asked.

    >>> exact_match("$1,000", "#### 1000", regexes_to_ignore=[",", "\\\\$", "(?s).*#### "])
    1.0
    """
    pred, ref = str(prediction), str(reference)
    for pattern in regexes_to_ignore or ():
        pred = re.sub(pattern, "", pred)
        ref = re.sub(pattern, "", ref)
    if ignore_case:
        pred, ref = pred.lower(), ref.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        pred, ref = pred.translate(table), ref.translate(table)
    if ignore_numbers:
        table = str.maketrans("", "", string.digits)
        pred, ref = pred.translate(table), ref.translate(table)
    return float(pred == ref)


# -- multiple choice -----------------------------------------------------------------------------------------------


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties (as ``numpy.argmax``)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def acc(logprobs: Sequence[float], gold: int) -> float:
    """1.0 when the option with the highest log-likelihood is the gold one."""
    return float(argmax(logprobs) == gold)


def acc_norm(logprobs: Sequence[float], choices: Sequence[str], gold: int) -> float:
    """Like :func:`acc` with each log-likelihood divided by the option's length in characters (lm-eval)."""
    normed = [lp / max(len(c), 1) for lp, c in zip(logprobs, choices, strict=True)]
    return float(argmax(normed) == gold)


# -- reading comprehension -----------------------------------------------------------------------------------------


def squad_normalize(text: str) -> str:
    """Official SQuAD v1.1 normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_em(prediction: str, answers: Sequence[str]) -> float:
    """Max over gold answers of normalised equality."""
    return max((float(squad_normalize(prediction) == squad_normalize(a)) for a in answers), default=0.0)


def squad_f1(prediction: str, answers: Sequence[str]) -> float:
    """Max over gold answers of the token-overlap F1 of the normalised texts."""

    def f1(pred: str, gold: str) -> float:
        p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
        common = Counter(p) & Counter(g)
        same = sum(common.values())
        if same == 0:
            return 0.0
        precision, recall = same / len(p), same / len(g)
        return 2 * precision * recall / (precision + recall)

    return max((f1(prediction, a) for a in answers), default=0.0)


_CMRC_PUNCT = set("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』") | {"……"}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _word_tokenize(text: str) -> list[str]:
    # The official script uses nltk.word_tokenize for non-Chinese runs; words and punctuation marks are the same
    # split for the short answers this metric sees.
    return re.findall(r"\w+|[^\w\s]", text)


def cmrc_segment(text: str, *, remove_punct: bool = False) -> list[str]:
    """The CMRC2018 scorer's ``mixed_segmentation``: Chinese characters one by one, other runs as words."""
    out: list[str] = []
    buf = ""
    for ch in str(text).lower().strip():
        if remove_punct and ch in _CMRC_PUNCT:
            continue
        if _CJK.match(ch) or ch in _CMRC_PUNCT:
            if buf:
                out.extend(_word_tokenize(buf))
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(_word_tokenize(buf))
    return out


def _cmrc_strip(text: str) -> str:
    return "".join(ch for ch in str(text).lower().strip() if ch not in _CMRC_PUNCT)


def _lcs_len(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common substring (contiguous), as the official ``find_lcs``."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_em(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals a gold answer without punctuation (CMRC2018 official)."""
    pred = _cmrc_strip(prediction)
    return float(any(_cmrc_strip(a) == pred for a in answers))


def cmrc_f1(prediction: str, answers: Sequence[str]) -> float:
    """Max over gold answers of the longest-common-substring F1 over mixed segments (CMRC2018 official)."""
    scores = []
    pred_segs = cmrc_segment(prediction, remove_punct=True)
    for ans in answers:
        ans_segs = cmrc_segment(ans, remove_punct=True)
        lcs = _lcs_len(ans_segs, pred_segs)
        if lcs == 0:
            scores.append(0.0)
            continue
        precision, recall = lcs / len(pred_segs), lcs / len(ans_segs)
        scores.append(2 * precision * recall / (precision + recall))
    return max(scores, default=0.0)


# -- retrieval -----------------------------------------------------------------------------------------------------


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Share of the gold passages found among the first ``k`` retrieved."""
    if not gold:
        return 0.0
    top = set(retrieved[:k])
    return sum(1 for g in set(gold) if g in top) / len(set(gold))


def mrr(retrieved: Sequence[str], gold: Sequence[str]) -> float:
    """Reciprocal rank of the first gold passage (0 when none was retrieved)."""
    wanted = set(gold)
    for rank, doc_id in enumerate(retrieved, 1):
        if doc_id in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over the DCG of a perfect one."""
    wanted = set(gold)
    if not wanted:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, doc_id in enumerate(retrieved[:k]) if doc_id in wanted)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(wanted), k)))
    return dcg / ideal


# -- code ----------------------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` pass (Chen et al. 2021): ``1 - C(n-c, k) / C(n, k)``."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


# -- aggregation ---------------------------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (0.0 for no values)."""
    return sum(values) / len(values) if values else 0.0


def mean_stderr(values: Sequence[float]) -> float | None:
    """Standard error of the mean: sample standard deviation (n - 1) over sqrt(n); ``None`` below two values."""
    n = len(values)
    if n < 2:
        return None
    mu = mean(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


# Metrics a generative task can name in YAML: (prediction, reference, **options) -> float.
TEXT_METRICS: dict[str, Callable[..., float]] = {
    "exact_match": exact_match,
    "squad_em": lambda p, r, **kw: squad_em(p, r if isinstance(r, list) else [r]),
    "squad_f1": lambda p, r, **kw: squad_f1(p, r if isinstance(r, list) else [r]),
    "cmrc_em": lambda p, r, **kw: cmrc_em(p, r if isinstance(r, list) else [r]),
    "cmrc_f1": lambda p, r, **kw: cmrc_f1(p, r if isinstance(r, list) else [r]),
}


def text_metric(name: str) -> Callable[..., Any]:
    """Look up a text metric by name, with a "did you mean" on a miss."""
    from llm_backend.errors import ConfigError, did_you_mean

    if name not in TEXT_METRICS:
        raise ConfigError(f"unknown metric {name!r}. {did_you_mean(name, TEXT_METRICS)}Known: {', '.join(TEXT_METRICS)}")
    return TEXT_METRICS[name]
