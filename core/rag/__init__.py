"""Query side of RAG: retrievers (dense, BM25, hybrid), rerankers, prompt templates, cited answers.

Example::

    from core.rag import answer, open_retriever
    result = answer("什么是注意力机制？", retriever=open_retriever("book"), client=OpenAIChatClient())
"""

from __future__ import annotations

from typing import Any

from core.rag.answer import Answer, Citation, Segment, answer, rewrite_query
from core.rag.rerankers import CrossEncoderReranker, LLMReranker, Reranker, ServerReranker, make_reranker
from core.rag.retrievers import FUSION_WEIGHTS, BM25Retriever, DenseRetriever, HybridRetriever
from knowledge.embedders import Embedder
from knowledge.types import Retriever
from llm_backend.errors import ConfigError, did_you_mean

MODES = ("hybrid", "dense", "bm25")


class RerankedRetriever:
    """A retriever followed by a reranker: retrieves ``candidates`` hits and keeps the reranker's best ``k``."""

    def __init__(self, retriever: Retriever, reranker: Reranker, *, candidates: int = 20) -> None:
        self.retriever = retriever
        self.reranker = reranker
        self.candidates = candidates

    def retrieve(self, query: str, k: int, **kwargs: Any) -> list[Any]:
        hits = self.retriever.retrieve(query, max(k, self.candidates), **kwargs)
        return self.reranker.rerank(query, hits, k)


def open_retriever(
    name: str,
    *,
    mode: str = "hybrid",
    embedder: Embedder | None = None,
    settings: Any = None,
    reranker: Reranker | None = None,
) -> Retriever:
    """The retriever of the knowledge base called ``name`` in the registry of ``settings.home``.

    ``mode`` is ``hybrid`` (default; BM25 alone for a base without embedder), ``dense`` or ``bm25``. ``embedder``
    overrides the manifest's and is refused if it differs."""
    from knowledge.registry import KnowledgeBaseRegistry
    from llm_backend.settings import Settings

    settings = settings or Settings.load()
    kb = KnowledgeBaseRegistry(settings.home).open(name)
    if mode == "hybrid":
        retriever: Retriever = HybridRetriever.for_kb(kb, embedder)
    elif mode == "dense":
        retriever = DenseRetriever.for_kb(kb, embedder)
    elif mode == "bm25":
        retriever = BM25Retriever.for_kb(kb)
    else:
        raise ConfigError(f"unknown retrieval mode {mode!r}. {did_you_mean(mode, MODES)}Use one of: {', '.join(MODES)}.")
    return RerankedRetriever(retriever, reranker) if reranker is not None else retriever


__all__ = [
    "FUSION_WEIGHTS",
    "MODES",
    "Answer",
    "BM25Retriever",
    "Citation",
    "CrossEncoderReranker",
    "DenseRetriever",
    "HybridRetriever",
    "LLMReranker",
    "RerankedRetriever",
    "Reranker",
    "Segment",
    "ServerReranker",
    "answer",
    "make_reranker",
    "open_retriever",
    "rewrite_query",
]
