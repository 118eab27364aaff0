"""A LangChain ``BaseRetriever`` over any of our retrievers, so LangChain chains and agents can use them.

Example::

    from core.rag import open_retriever
    from core.rag.langchain import LangChainRetriever

    lc = LangChainRetriever(retriever=open_retriever("book"), k=4)
    docs = lc.invoke("什么是注意力机制？")      # list[langchain_core.documents.Document]
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from knowledge.types import Hit


def hit_to_document(hit: Hit) -> LCDocument:
    """A LangChain document with the hit's text; metadata keeps ours plus ``chunk_id`` and ``score``."""
    return LCDocument(page_content=hit.text, metadata={**hit.meta, "chunk_id": hit.chunk_id, "score": hit.score}, id=hit.chunk_id)


class LangChainRetriever(BaseRetriever):
    """Wraps anything with ``retrieve(query, k)`` (dense, BM25, hybrid, reranked)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    k: int = 4
    filters: dict[str, Any] | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        if self.filters:
            hits = self.retriever.retrieve(query, self.k, filters=self.filters)
        else:
            hits = self.retriever.retrieve(query, self.k)
        return [hit_to_document(h) for h in hits]
