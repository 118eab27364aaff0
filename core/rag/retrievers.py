"""Retrievers behind one small Protocol (:class:`knowledge.types.Retriever`): dense, BM25 and their fusion.

Every retriever also accepts ``filters=`` (see :mod:`core.rag.filters`) and puts its own score into each hit's
``meta`` (``dense_score``: cosine similarity; ``bm25_score``) so later stages can tell how relevant a hit is.

**Fusion.** :class:`HybridRetriever` uses weighted reciprocal-rank fusion: ``score = sum_i w_i / (60 + rank_i)``.
Equal weights hurt when one retriever is weak for the language (FACTS.md: BM25 + MiniLM on Chinese falls far below
BM25 alone), so the weights depend on the embedder and on the query's language (:data:`FUSION_WEIGHTS`, tuned on a
dev split by ``benchmarks/retrieval.py --tune``; see docs/benchmarks.md). A weight of 0 skips that retriever.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import numpy as np

from core.rag.filters import Filters, matches, validate_filters
from core.rag.lang import detect_language
from knowledge.base import KnowledgeBase
from knowledge.embedders import Embedder
from knowledge.lexical import BM25Index
from knowledge.store import ChromaStore
from knowledge.types import FilterableRetriever, Hit, Retriever

log = logging.getLogger(__name__)

RRF_K = 60

FUSION_WEIGHTS: dict[str, dict[str, tuple[float, float]]] = {
    # embedder: {query language: (dense weight, BM25 weight)}
    "e5": {"zh": (1.0, 1.0), "en": (1.0, 0.1)},
    "e5-int8": {"zh": (1.0, 1.0), "en": (1.0, 0.1)},  # the same model, quantized: the same weights
    "minilm": {"zh": (0.0, 1.0), "en": (1.0, 0.0)},
    "minilm-int8": {"zh": (0.0, 1.0), "en": (1.0, 0.0)},  # the same model, quantized: the same weights
    "hash": {"zh": (0.5, 1.0), "en": (0.5, 1.0)},
}
"""Fusion weights per embedder and query language. MiniLM is English-only: on Chinese queries only BM25 counts.
Embedders not listed (``server:...``) get equal weights."""

DEFAULT_WEIGHTS = (1.0, 1.0)


class DenseRetriever:
    """Nearest chunks by cosine similarity in the Chroma store. The embedder must be the one the store was built
    with: use :meth:`for_kb`, which checks it against the manifest."""

    def __init__(self, store: ChromaStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    @classmethod
    def for_kb(cls, kb: KnowledgeBase, embedder: Embedder | None = None) -> DenseRetriever:
        """Dense retrieval over ``kb``; refuses an embedder other than the manifest's."""
        emb = embedder if embedder is not None else kb.embedder
        kb.check_embedder(emb)
        if emb is None:
            from llm_backend.errors import ConfigError

            raise ConfigError(f"knowledge base {kb.name!r} has no dense embedder (BM25 only); use --mode bm25 or hybrid.")
        return cls(kb.store, emb)

    def retrieve(self, query: str, k: int, *, filters: Filters | None = None) -> list[Hit]:
        validate_filters(filters)
        vector = self.embedder.embed_query(query)
        hits = self.store.query(vector, k, where=dict(filters) if filters else None)
        return [replace(h, meta={**h.meta, "dense_score": h.score, "dense_model": self.embedder.name}) for h in hits]


class BM25Retriever:
    """Lexical retrieval with bm25s; Chinese is segmented by jieba (:mod:`knowledge.lexical`)."""

    def __init__(self, index: BM25Index) -> None:
        self.index = index
        self._masks: dict[str, np.ndarray] = {}

    @classmethod
    def for_kb(cls, kb: KnowledgeBase) -> BM25Retriever:
        return cls(kb.bm25_index())

    def _mask(self, filters: Filters) -> np.ndarray:
        key = repr(sorted(filters.items(), key=lambda kv: kv[0]))
        mask = self._masks.get(key)
        if mask is None:
            mask = np.fromiter((1.0 if matches(c.meta, filters) else 0.0 for c in self.index.chunks), dtype=np.float32, count=len(self.index))
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = mask
        return mask

    def retrieve(self, query: str, k: int, *, filters: Filters | None = None) -> list[Hit]:
        validate_filters(filters)
        mask = self._mask(filters) if filters else None
        hits = []
        for row, score in self.index.search(query, k, mask=mask):
            c = self.index.chunks[row]
            hits.append(Hit(c.id, c.text, score, {**c.meta, "bm25_score": score}))
        return hits


class HybridRetriever:
    """Weighted reciprocal-rank fusion of a dense and a BM25 retriever.

    ``weights`` maps the query language (``"zh"``/``"en"``) to ``(dense, bm25)`` weights; ``candidates`` is how
    many hits each retriever contributes before fusion."""

    def __init__(
        self,
        dense: Retriever | None,
        bm25: Retriever | None,
        *,
        weights: Mapping[str, tuple[float, float]] | None = None,
        candidates: int = 50,
        rrf_k: int = RRF_K,
    ) -> None:
        if dense is None and bm25 is None:
            raise ValueError("HybridRetriever needs at least one retriever")
        self.dense = dense
        self.bm25 = bm25
        self.weights = dict(weights or {})
        self.candidates = candidates
        self.rrf_k = rrf_k

    @classmethod
    def for_kb(cls, kb: KnowledgeBase, embedder: Embedder | None = None, **kwargs: Any) -> HybridRetriever:
        """Hybrid retrieval over ``kb`` with the fusion weights of its embedder (BM25 alone when it has none)."""
        bm25 = BM25Retriever.for_kb(kb)
        if kb.manifest.embedder == "none":
            kb.check_embedder(embedder)
            return cls(None, bm25, **kwargs)
        dense = DenseRetriever.for_kb(kb, embedder)
        kwargs.setdefault("weights", FUSION_WEIGHTS.get(kb.manifest.embedder, {}))
        return cls(dense, bm25, **kwargs)

    def weights_for(self, query: str) -> tuple[float, float]:
        w_dense, w_bm25 = self.weights.get(detect_language(query), DEFAULT_WEIGHTS)
        if self.dense is None:
            w_dense = 0.0
        if self.bm25 is None:
            w_bm25 = 0.0
        if w_dense <= 0 and w_bm25 <= 0:
            w_dense, w_bm25 = (1.0 if self.dense else 0.0), (1.0 if self.bm25 else 0.0)
        return w_dense, w_bm25

    def retrieve(self, query: str, k: int, *, filters: Filters | None = None) -> list[Hit]:
        w_dense, w_bm25 = self.weights_for(query)
        n = max(k, self.candidates)
        fused: dict[str, float] = {}
        best: dict[str, Hit] = {}
        for retriever, weight in ((self.dense, w_dense), (self.bm25, w_bm25)):
            if retriever is None or weight <= 0:
                continue
            hits = cast(FilterableRetriever, retriever).retrieve(query, n, filters=filters) if filters else retriever.retrieve(query, n)
            for rank, hit in enumerate(hits):
                fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + weight / (self.rrf_k + rank + 1)
                if hit.chunk_id in best:
                    best[hit.chunk_id] = replace(best[hit.chunk_id], meta={**best[hit.chunk_id].meta, **hit.meta})
                else:
                    best[hit.chunk_id] = hit
        order = sorted(fused, key=lambda cid: fused[cid], reverse=True)[:k]
        return [replace(best[cid], score=fused[cid]) for cid in order]
