"""The data that walks from a file to an answer: ``Document`` -> ``Chunk`` -> ``Hit``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Document:
    """A loaded file (or one page / section of it). ``meta`` holds at least ``source`` (path) and ``title``;
    loaders add ``page`` (pdf) or ``section`` (heading path) where they know it."""

    path: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document that fits the token budget. ``id`` is stable: derived from the source and the content
    hash, so re-ingesting unchanged text yields the same ids (idempotent upserts)."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk with the retriever's score (higher is better; scales differ between retrievers)."""

    chunk_id: str
    text: str
    score: float
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Retriever(Protocol):
    """Anything that finds chunks for a query: dense, BM25, hybrid, a reranked pipeline."""

    def retrieve(self, query: str, k: int) -> list[Hit]: ...


@runtime_checkable
class FilterableRetriever(Protocol):
    """A retriever that also takes metadata filters (Chroma ``where`` syntax, see ``core.rag.filters``)."""

    def retrieve(self, query: str, k: int, *, filters: Mapping[str, Any] | None = None) -> list[Hit]: ...
