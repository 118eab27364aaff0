"""The chunk store: Chroma, embedded and persistent by default, or a Chroma server (``chroma run``) by
configuration so several processes or machines share one store. This is the only module that imports ``chromadb``.

We always pass our own vectors: collections are created without an embedding function and every call gives
embeddings, so Chroma's default ONNX model (which would try to download itself) never runs. A knowledge base
without a dense embedder stores a constant one-dimensional vector per chunk; only BM25 searches it.

Example::

    store = ChromaStore.persistent(path, "ragent-notes")
    store.upsert(chunks, vectors)
    hits = store.query(query_vector, k=5, where={"source": "/docs/a.md"})
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from knowledge.errors import KnowledgeBaseError
from knowledge.types import Chunk, Hit
from llm_backend.errors import ConfigError, RagentError

log = logging.getLogger(__name__)

_META_TYPES = (str, int, float, bool)


class StoreError(RagentError):
    """The chunk store failed (server unreachable, collection missing, ...)."""


class StoreFullError(KnowledgeBaseError):
    """A write to the store failed because the disk under it is full."""


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata holds only str/int/float/bool and no None."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if v is None:
            continue
        out[k] = v if isinstance(v, _META_TYPES) else str(v)
    return out


def where_clause(filters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Turn ``{"source": "a.md", "page": {"$in": [1, 2]}}`` into a Chroma ``where`` (several fields: ``$and``)."""
    if not filters:
        return None
    parts = [{k: v} for k, v in filters.items()]
    return parts[0] if len(parts) == 1 else {"$and": parts}


class ChromaStore:
    """Chunks, their vectors and metadata in one Chroma collection (cosine space)."""

    def __init__(self, client: Any, collection: str, *, location: str) -> None:
        self._client = client
        self.collection_name = collection
        self.location = location
        self._col: Any = None

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def persistent(cls, path: Path, collection: str) -> ChromaStore:
        """An embedded store in ``path`` (created when missing)."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        path.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))
        return cls(client, collection, location=str(path))

    @classmethod
    def http(cls, url: str, collection: str) -> ChromaStore:
        """A store on a Chroma server, e.g. ``http://10.0.0.5:8000`` (start one with ``chroma run --path DIR``)."""
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise ConfigError(f"Chroma URL {url!r} has no host; use e.g. http://127.0.0.1:8000")
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
        except Exception as exc:
            raise StoreError(f"Chroma server not reachable at {url}: {exc}. Start it with `chroma run --path DIR`.") from exc
        return cls(client, collection, location=url)

    @property
    def collection(self) -> Any:
        if self._col is None:
            try:
                self._col = self._client.get_or_create_collection(
                    self.collection_name, metadata={"hnsw:space": "cosine"}, embedding_function=None
                )
            except Exception as exc:
                raise StoreError(f"cannot open Chroma collection {self.collection_name!r} at {self.location}: {exc}") from exc
        return self._col

    def close(self) -> None:
        """Release this store's Chroma client (an embedded store's files stay open while any client of the same
        path in this process is open; see :meth:`release_path`)."""
        close = getattr(self._client, "close", None)
        if callable(close):
            try:
                close()
            except Exception as exc:  # closing twice, or a server already gone
                log.debug("closing Chroma client for %s: %s", self.location, exc)
        self._col = None

    @staticmethod
    def release_path(path: Path) -> None:
        """Stop and forget the Chroma system this process keeps for the embedded store in ``path``, whoever opened
        it. Call it before deleting the folder: chromadb caches one system per path (``SharedSystemClient``) until
        its last client is closed, and a store created again at the same path would reuse the stale system, whose
        database file is gone ("attempt to write a readonly database", chroma-core/chroma#6499). Clients of that
        path still held elsewhere in the process stop working, as they must: their store is deleted."""
        try:
            from chromadb.api.shared_system_client import SharedSystemClient
        except ImportError:  # pragma: no cover - chromadb is a dependency
            return
        target = Path(path).resolve()
        # No public API drops one path's system (clear_system_cache() drops every path's and stops none); these
        # class attributes are what chromadb 1.5's own Client.close() updates.
        with SharedSystemClient._refcount_lock:
            keys = [k for k in SharedSystemClient._identifier_to_system if k and Path(k).resolve() == target]
            systems = [SharedSystemClient._identifier_to_system.pop(k) for k in keys]
            for k in keys:
                SharedSystemClient._identifier_to_refcount.pop(k, None)
        for system in systems:
            try:
                system.stop()
            except Exception as exc:
                log.debug("stopping the Chroma system of %s: %s", target, exc)
        if systems:
            log.debug("released the Chroma system of %s", target)

    def drop(self) -> None:
        """Delete the whole collection."""
        try:
            self._client.delete_collection(self.collection_name)
        except Exception as exc:  # already gone
            log.debug("delete_collection %s: %s", self.collection_name, exc)
        self._col = None

    # -- writes ---------------------------------------------------------------------------------------------------
    def max_batch(self) -> int:
        try:
            return int(self._client.get_max_batch_size())
        except Exception:
            return 1000

    def upsert(self, chunks: Sequence[Chunk], embeddings: np.ndarray | None) -> None:
        """Insert or replace chunks. ``embeddings`` is ``(n, dim)``; ``None`` stores the constant placeholder."""
        if not chunks:
            return
        if embeddings is None:
            embeddings = np.ones((len(chunks), 1), dtype=np.float32)
        if len(embeddings) != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
        step = self.max_batch()
        for start in range(0, len(chunks), step):
            part = chunks[start : start + step]
            vectors = np.asarray(embeddings[start : start + step], dtype=np.float32)
            need = vectors.nbytes + sum(len(c.text.encode()) + 200 for c in part)
            with self._write_guard(need):
                self.collection.upsert(
                    ids=[c.id for c in part], embeddings=vectors, documents=[c.text for c in part], metadatas=[_clean_meta(c.meta) for c in part]
                )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id (unknown ids are ignored)."""
        ids = list(ids)
        step = self.max_batch()
        for start in range(0, len(ids), step):
            with self._write_guard(0):
                self.collection.delete(ids=ids[start : start + step])

    @contextmanager
    def _write_guard(self, need: int) -> Iterator[None]:
        """Turn a store call that failed because the disk is full into :class:`StoreFullError`. Chroma reports it as
        a bare "Error in compaction" (and later reads, which apply the logged write first, fail the same way), so when
        a call fails the space is probed for real: the bytes the write needed (times 4 for the log and the indexes,
        plus 1 MiB) are reserved with ``posix_fallocate`` in the store's folder."""
        try:
            yield
        except RagentError:
            raise
        except Exception as exc:
            full = self._out_of_space(exc, need)
            # Chroma's compactor failing to apply its log is what a full disk looks like on the next calls.
            if full or any(s in str(exc).lower() for s in ("apply logs", "compactor", "compaction")):
                free = shutil.disk_usage(self.location).free if os.path.isdir(self.location) else 0
                cause = "is full" if full else "could not take the store's pending writes (a full disk is the usual cause)"
                raise StoreFullError(
                    f"the disk holding the knowledge base store {self.location} {cause}: {free / 2**20:.1f} MiB free. What "
                    "was stored before is intact (keyword search still works); free some space (or move RAGENT_HOME) and run "
                    f"the same command again: ingestion repairs the interrupted write and goes on where it stopped. ({exc})"
                ) from exc
            raise

    def _out_of_space(self, exc: BaseException, need: int) -> bool:
        chain: BaseException | None = exc
        while chain is not None:
            if isinstance(chain, OSError) and chain.errno == errno.ENOSPC:
                return True
            if any(s in str(chain).lower() for s in ("no space left", "disk is full", "disk full")):
                return True
            chain = chain.__cause__ or chain.__context__
        if self.location.startswith(("http://", "https://")) or not os.path.isdir(self.location):
            return False
        try:
            fd, probe = tempfile.mkstemp(dir=self.location, prefix=".space-probe-")
        except OSError as err:
            return err.errno == errno.ENOSPC
        try:
            os.posix_fallocate(fd, 0, 4 * need + 2**20)
            return False
        except OSError as err:
            return err.errno == errno.ENOSPC
        finally:
            os.close(fd)
            os.unlink(probe)

    # -- reads ----------------------------------------------------------------------------------------------------
    def count(self) -> int:
        with self._write_guard(0):
            return int(self.collection.count())

    def ids(self) -> set[str]:
        """Every chunk id in the store."""
        out: set[str] = set()
        page = 10_000
        offset = 0
        while True:
            with self._write_guard(0):  # a read applies logs a failed write left: it writes too
                got = self.collection.get(include=[], limit=page, offset=offset)
            out.update(got["ids"])
            if len(got["ids"]) < page:
                return out
            offset += page

    def iter_chunks(self, *, page: int = 5000) -> Iterator[Chunk]:
        """All chunks with text and metadata, a page at a time (for building the BM25 index)."""
        offset = 0
        while True:
            with self._write_guard(0):
                got = self.collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                yield Chunk(cid, text or "", dict(meta or {}))
            if len(got["ids"]) < page:
                return
            offset += page

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        """Chunks by id, in the order asked (missing ids are left out)."""
        if not ids:
            return []
        with self._write_guard(0):
            got = self.collection.get(ids=list(ids), include=["documents", "metadatas"])
        by_id = {cid: Chunk(cid, text or "", dict(meta or {})) for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)}
        return [by_id[i] for i in ids if i in by_id]

    def query(self, vector: np.ndarray, k: int, *, where: dict[str, Any] | None = None) -> list[Hit]:
        """Nearest chunks by cosine similarity (``score`` = 1 - cosine distance), best first."""
        if k <= 0:
            return []
        # No count() first: it costs ~10 ms on 10k chunks; Chroma returns fewer hits when it has fewer.
        with self._write_guard(0):
            res = self.collection.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=k,
                where=where_clause(where),
                include=["documents", "metadatas", "distances"],
            )
        hits = []
        for cid, text, meta, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True):
            hits.append(Hit(cid, text or "", 1.0 - float(dist), dict(meta or {})))
        return hits
