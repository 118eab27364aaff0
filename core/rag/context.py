"""The context of an answer: which retrieved hits are relevant, and which of them fit the prompt's token budget.

Prompt processing is the slow part on a CPU (a 1,500-token prompt costs seconds before the first token), so the
context is packed into a small budget counted with the chat model's tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.rag.citations import Citation
from core.rag.lang import detect_language
from knowledge.lexical import tokenize
from knowledge.splitter import context_text
from knowledge.tokenizer import TokenCounter
from knowledge.types import Chunk, Hit

DENSE_RELEVANCE: dict[str, float] = {"e5": 0.86, "e5-int8": 0.86, "minilm": 0.40, "minilm-int8": 0.40, "hash": 0.6}
"""Cosine similarity above which a dense hit counts as relevant even without shared words (per embedder)."""
CROSS_LINGUAL_RELEVANCE: dict[str, float] = {"e5": 0.80, "e5-int8": 0.80}
"""The same, for a question and a passage in different languages (an English question on a Chinese book shares no
words with it, and e5's cosines across languages run lower than within one). Calibrated on the best unrelated
passage of the other language that e5 finds for ClapNQ (English) and CMRC2018 (Chinese) questions
(``benchmarks/rag_answerable.py --cross-lingual``; docs/benchmarks.md). Embedders that are not multilingual have
no entry: across languages they count only through shared words. Measured 2026-12-06: the best unrelated passage
scored p95 0.795, p99 0.804 (600 questions); the book's English questions scored 0.804-0.842 against the Chinese
chunk that answers them (7 found by dense retrieval)."""
MIN_TERM_COVERAGE = 0.33
"""Share of the query's words (stop words excluded) a passage must contain to count as relevant."""

QUESTION_WORDS = frozenset(
    [
        "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "do", "does", "did", "can",
        "could", "should", "would", "may", "might", "must", "shall", "i", "me", "my", "you", "your", "we", "our",
        "us", "need", "want", "tell", "explain", "describe",
        "谁", "哪一年", "哪年", "哪个", "哪一个", "哪些", "哪种", "哪几个", "多少", "几", "多大", "多长", "多久", "什么", "哪里",
    ]
)
"""English words that frame a question rather than say what it is about. The BM25 stop words (bm25s's English
list) keep them, so "What is the capital of Australia?" matched a third of its words ("what") in any passage that
said "what" and passed as relevant; they do not count for relevance. The same holds for Chinese question words
that jieba keeps as words (谁, 哪一年, 多少): "Word2Vec 是由谁在哪一年提出的？" covered only 1 of its 4 words in the
passage that answers it."""

SCORE_PARTS = (("dense_score", "dense"), ("bm25_score", "bm25"), ("rerank_score", "rerank"))
"""Hit meta keys of the retrievers' and rerankers' own scores, and their names in :attr:`Citation.scores`."""


def term_coverage(query: str, text: str) -> float:
    """Share of the query's index terms, question words aside, that occur in ``text`` (1.0 for a query without
    terms)."""
    q = set(tokenize(query))
    q = (q - QUESTION_WORDS) or q
    if not q:
        return 1.0
    return len(q & set(tokenize(text))) / len(q)


def is_relevant(query: str, hit: Hit, *, min_coverage: float = MIN_TERM_COVERAGE) -> bool:
    """A hit is relevant when it shares enough of the query's words, or its dense similarity is high for its
    embedder (:data:`CROSS_LINGUAL_RELEVANCE` when the query and the passage are in different languages). Rank-fusion
    scores say nothing absolute, so they are not used here."""
    dense = hit.meta.get("dense_score")
    model = str(hit.meta.get("dense_model", ""))
    threshold = DENSE_RELEVANCE.get(model)
    if model in CROSS_LINGUAL_RELEVANCE and detect_language(query) != detect_language(hit.text):
        threshold = CROSS_LINGUAL_RELEVANCE[model]
    if dense is not None and threshold is not None and float(dense) >= threshold:
        return True
    return term_coverage(query, context_text(Chunk(hit.chunk_id, hit.text, hit.meta))) >= min_coverage


def _clean(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text.strip())


def _truncate(text: str, budget: int, tokenizer: TokenCounter) -> str:
    offsets = tokenizer.offsets(text)
    if len(offsets) <= budget:
        return text
    return text[: offsets[max(budget - 2, 1)][0]].rstrip() + " …"  # room for the ellipsis


def pack_context(hits: Sequence[Hit], budget: int, tokenizer: TokenCounter) -> list[tuple[Hit, str]]:
    """Hits (best first) with their prompt text, as many as fit in ``budget`` tokens. The first one is cut to the
    budget if it alone is too long; later ones that do not fit are skipped."""
    out: list[tuple[Hit, str]] = []
    used = 0
    for hit in hits:
        text = _clean(hit.text)
        n = tokenizer.count(text) + 12  # the "[n] (label)" line
        if used + n > budget:
            if not out:
                text = _truncate(text, max(budget - 12, 16), tokenizer)
                out.append((hit, text))
                break
            continue
        out.append((hit, text))
        used += n
    return out


def to_citation(number: int, hit: Hit, text: str) -> Citation:
    """The numbered source for a packed hit (``text`` is what the prompt shows of it)."""
    meta = hit.meta
    page = meta.get("page")
    parts = {name: float(meta[key]) for key, name in SCORE_PARTS if isinstance(meta.get(key), int | float)}
    return Citation(
        number=number,
        chunk_id=hit.chunk_id,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        page=int(page) if isinstance(page, int | float) else None,
        text=text,
        score=float(hit.score),
        scores=parts,
    )
