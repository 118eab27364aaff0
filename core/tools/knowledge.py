"""Knowledge-base search as a tool (agentic RAG): the model decides what to search for and reads the hits.

The tool depends only on the :class:`knowledge.types.Retriever` Protocol, so any retriever works (dense, BM25,
hybrid, reranked, a test double). :func:`knowledge_base_tool` opens a knowledge base by name through ``core.rag``
lazily, at the first search, so listing or describing tools never loads embedding models.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable

from core.tools.base import Tool
from knowledge.types import Hit, Retriever
from llm_backend.errors import ConfigError

log = logging.getLogger(__name__)



def format_hits(hits: list[Hit], *, max_chars_per_hit: int = 800) -> str:
    """Numbered hits with their source, for the model to read and cite."""
    if not hits:
        return "No results. Try other words, or answer that the knowledge base does not say."
    blocks = []
    for n, hit in enumerate(hits, 1):
        meta = hit.meta or {}
        source = meta.get("source") or meta.get("path") or meta.get("title") or hit.chunk_id
        where = f", page {meta['page']}" if meta.get("page") is not None else ""
        text = " ".join(hit.text.split())
        if len(text) > max_chars_per_hit:
            text = text[:max_chars_per_hit] + " ..."
        blocks.append(f"[{n}] ({source}{where}) {text}")
    return "\n".join(blocks)


def make_knowledge_search_tool(
    retriever: Retriever | Callable[[], Retriever],
    *,
    name: str = "search_knowledge_base",
    description: str | None = None,
    k: int = 4,
) -> Tool:
    """A search tool over ``retriever`` (or over the retriever a zero-argument factory returns at first use)."""
    lock = threading.Lock()
    opened: list[Retriever] = []

    def get() -> Retriever:
        with lock:
            if not opened:
                opened.append(retriever if isinstance(retriever, Retriever) else retriever())
            return opened[0]

    def search(query: str, top_k: int = k) -> str:
        """Search the knowledge base.

        Args:
            query: what to look for, in the language of the documents.
            top_k: how many passages to return.
        """
        return format_hits(get().retrieve(query, max(1, min(top_k, 20))))

    return Tool.from_function(
        search,
        name=name,
        description=description
        or "Search the knowledge base for passages relevant to a query; returns numbered passages with their sources.",
    )


def open_knowledge_base(name: str) -> Retriever:
    """The retriever of the knowledge base called ``name``, opened through ``core.rag`` (which builds retrievers).
    Raises :class:`ConfigError` when ``core.rag`` is not there or cannot open it."""
    try:
        rag = importlib.import_module("core.rag")
    except ImportError as exc:
        raise ConfigError(
            f"cannot open knowledge base {name!r}: the RAG package core.rag is not available ({exc})"
        ) from exc
    opener = getattr(rag, "open_retriever", None)
    if not callable(opener):
        raise ConfigError(
            f"cannot open knowledge base {name!r}: core.rag has no open_retriever(name); "
            "build a retriever yourself and pass it to make_knowledge_search_tool()"
        )
    retriever = opener(name)
    if not isinstance(retriever, Retriever):
        raise ConfigError(f"core.rag.open_retriever({name!r}) returned {type(retriever).__name__}, which has no retrieve(query, k)")
    return retriever


def knowledge_base_tool(name: str, *, k: int = 4) -> Tool:
    """A search tool over the knowledge base called ``name``, opened at the first search."""
    return make_knowledge_search_tool(
        lambda: open_knowledge_base(name),
        description=f"Search the knowledge base {name!r} for passages relevant to a query; returns numbered passages "
        "with their sources.",
        k=k,
    )
