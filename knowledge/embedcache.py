"""A cache of passage embeddings keyed by the embedder's name and the SHA-256 of the text, in one SQLite file under
the data home (``<home>/cache/embeddings.sqlite3``), shared by all knowledge bases and processes.

Ingesting text that was embedded before (the same file into another knowledge base, a base deleted and built
again, a changed file whose other chunks did not change) then costs a lookup instead of a model call, which is
nearly all of the ingestion time on a CPU. Only local models whose output depends on nothing but the text are
cached (:data:`CACHEABLE`); queries are not cached.

The cache is an optimisation: when the file cannot be opened or written the embedder runs as if there were none
(logged once), and deleting the file is always safe. Each vector takes ``4 * dim`` bytes (1.5 KiB for 384-d).

Example::

    embedder = CachingEmbedder(MiniLMEmbedder(), EmbeddingCache(home / "cache" / "embeddings.sqlite3"))
    embedder.embed_documents(["some text"])   # model call
    embedder.embed_documents(["some text"])   # cache hit
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from knowledge.embedders import Embedder

log = logging.getLogger(__name__)

CACHEABLE = frozenset({"e5", "e5-int8", "minilm", "minilm-int8"})
"""Embedders whose vectors are cached: local models, fixed weights. ``server:`` models may change behind the same
name, and ``hash`` is cheaper than a lookup."""

_LOOKUP_BATCH = 500  # SQLite's default limit on host parameters is 999 (older builds)


def text_key(text: str) -> str:
    """The cache key of a passage: the hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors by ``(embedder name, text key)`` in SQLite (WAL mode, so several processes can share it).
    Thread-safe; the connection opens on first use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, key TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID")
                self._conn = conn
            except (OSError, sqlite3.Error) as exc:
                self._fail("open", exc)
        return self._conn

    def _fail(self, what: str, exc: Exception) -> None:
        if not self._broken:
            log.warning("embedding cache %s: cannot %s (%s); embedding without the cache", self.path, what, exc)
        self._broken = True
        self._conn = None

    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are left out)."""
        out: dict[str, np.ndarray] = {}
        with self._lock:
            conn = self._connect()
            if conn is None:
                return out
            try:
                unique = list(dict.fromkeys(keys))
                for start in range(0, len(unique), _LOOKUP_BATCH):
                    part = unique[start : start + _LOOKUP_BATCH]
                    marks = ",".join("?" * len(part))
                    rows = conn.execute(f"SELECT key, vector FROM vectors WHERE model = ? AND key IN ({marks})", (model, *part))
                    for key, blob in rows:
                        out[key] = np.frombuffer(blob, dtype=np.float32)
            except sqlite3.Error as exc:
                self._fail("read", exc)
                return {}
        return out

    def put_many(self, model: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        """Store vectors (an existing key is replaced)."""
        if not items:
            return
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            try:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT OR REPLACE INTO vectors (model, key, vector) VALUES (?, ?, ?)",
                    [(model, key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items],
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._fail("write", exc)

    def count(self, model: str | None = None) -> int:
        """How many vectors are cached (for ``model``, or all)."""
        with self._lock:
            conn = self._connect()
            if conn is None:
                return 0
            query, args = ("SELECT COUNT(*) FROM vectors WHERE model = ?", (model,)) if model else ("SELECT COUNT(*) FROM vectors", ())
            return int(conn.execute(query, args).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class CachingEmbedder:
    """An :class:`~knowledge.embedders.Embedder` that takes passage vectors from an :class:`EmbeddingCache` and
    embeds only the texts it has not seen (each distinct text once). ``hits`` counts the passages whose vector came
    from the cache, ``misses`` the others."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self.inner = inner
        self.cache = cache
        self.name = inner.name
        self.hits = 0
        self.misses = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed_documents(texts)
        keys = [text_key(t) for t in texts]
        found = self.cache.get_many(self.name, keys)
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found and key not in missing:
                missing[key] = text
        if missing:
            vectors = self.inner.embed_documents(list(missing.values()))
            fresh = list(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
            self.cache.put_many(self.name, fresh)
            found.update(fresh)
        misses = sum(1 for k in keys if k in missing)
        self.misses += misses
        self.hits += len(keys) - misses
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)
