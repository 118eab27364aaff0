"""One knowledge base: a folder with a manifest, a Chroma store (embedded, or a collection on a Chroma server) and
a BM25 index. Opened through :class:`~knowledge.registry.KnowledgeBaseRegistry`; heavy parts (store, embedder,
tokenizer, BM25 index) load on first use.

Example::

    kb = KnowledgeBaseRegistry(settings.home).open("book")
    report = ingest(kb, [Path("docs/")])     # knowledge.ingest.ingest: ingestion is a function over a base
    print(report.summary())
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.embedders import Embedder, make_embedder
from knowledge.errors import EmbedderMismatchError, KnowledgeBaseBusyError
from knowledge.lexical import BM25Index, fingerprint
from knowledge.manifest import Manifest
from knowledge.splitter import TokenSplitter
from knowledge.store import ChromaStore
from knowledge.tokenizer import load_tokenizer
from llm_backend.errors import ConfigError

if TYPE_CHECKING:
    from llm_backend.client import OpenAIChatClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    """What reconciliation repaired after an interrupted ingestion."""

    orphans_deleted: int
    incomplete_files: tuple[str, ...]

    @property
    def repaired(self) -> bool:
        return bool(self.orphans_deleted or self.incomplete_files)


class KnowledgeBase:
    """A knowledge base on disk. ``models_dir`` is where a chat-model tokenizer recorded in the manifest is
    looked up; ``client`` serves ``server:`` embedders; ``embedding_cache`` (a SQLite file, shared by the bases
    of a data home) keeps passage vectors so that text embedded once is never embedded again
    (:mod:`knowledge.embedcache`)."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        *,
        models_dir: Path | None = None,
        client: OpenAIChatClient | None = None,
        embedding_cache: Path | None = None,
    ) -> None:
        self.path = directory
        self.manifest = manifest
        self.models_dir = models_dir
        self.client = client
        self.embedding_cache = embedding_cache
        self._store: ChromaStore | None = None
        self._embedder: Embedder | None = None
        self._embedder_loaded = False
        self._splitter: TokenSplitter | None = None
        self._bm25: BM25Index | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def bm25_path(self) -> Path:
        return self.path / "bm25"

    def save_manifest(self) -> None:
        self.manifest.save(self.manifest_path)

    # -- parts ----------------------------------------------------------------------------------------------------
    @property
    def store(self) -> ChromaStore:
        if self._store is None:
            spec = self.manifest.store
            if spec.get("kind") == "http":
                self._store = ChromaStore.http(str(spec["url"]), str(spec["collection"]))
            else:
                self._store = ChromaStore.persistent(self.path / "chroma", str(spec.get("collection") or "chunks"))
        return self._store

    @property
    def embedder(self) -> Embedder | None:
        """The embedder the manifest names (None for a BM25-only base)."""
        if not self._embedder_loaded:
            embedder = make_embedder(self.manifest.embedder, client=self.client)
            if embedder is not None and self.embedding_cache is not None:
                from knowledge.embedcache import CACHEABLE, CachingEmbedder, EmbeddingCache

                if embedder.name in CACHEABLE:
                    embedder = CachingEmbedder(embedder, EmbeddingCache(self.embedding_cache))
            self._embedder = embedder
            self._embedder_loaded = True
        return self._embedder

    @property
    def splitter(self) -> TokenSplitter:
        if self._splitter is None:
            s = self.manifest.splitter
            try:
                tok = load_tokenizer(str(s["tokenizer"]), self.models_dir)
            except ConfigError:
                # Only new or changed files are split again, so another tokenizer is safe; budgets may shift a bit.
                log.warning("tokenizer %r of knowledge base %s is not available here; using the packaged MiniLM tokenizer", s["tokenizer"], self.name)
                tok = load_tokenizer("minilm")
            self._splitter = TokenSplitter(tok, chunk_tokens=int(s["chunk_tokens"]), overlap_tokens=int(s["overlap_tokens"]))
        return self._splitter

    def check_embedder(self, embedder: Embedder | None) -> None:
        """Refuse an embedder other than the one the base was built with."""
        name = embedder.name if embedder is not None else "none"
        if name != self.manifest.embedder:
            raise EmbedderMismatchError(
                f"knowledge base {self.name!r} was built with the embedder {self.manifest.embedder!r}, but the query uses "
                f"{name!r}; vectors of different models cannot be compared. Query with --embedder {self.manifest.embedder} "
                f"(the default), or build a new knowledge base with `ragent kb create NAME --embedder {name}`."
            )

    # -- locking --------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Exclusive write lock across processes (``flock``, released by the OS if the process dies, even by
        ``kill -9``). A second writer, in this process or another, is refused at once with a message naming the
        holder's process id; it never waits behind a run that may take an hour."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split("\n")[0].strip()
                who = f" ({holder})" if holder else ""
                raise KnowledgeBaseBusyError(
                    f"knowledge base {self.name!r} is being changed by another process{who}; wait for it to finish "
                    "and run the command again (the other run's finished work is kept)."
                ) from exc
            # Who holds the lock, for the message above (best effort: the lock itself is the flock).
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()}, since {time.strftime('%H:%M:%S')}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    # -- consistency ----------------------------------------------------------------------------------------------
    def reconcile(self) -> ReconcileReport:
        """Make the manifest and the store agree after a crash: delete stored chunks no file owns (written before
        their file was committed) and mark files whose chunks are missing as incomplete, so they are ingested
        again. Call with the write lock held (``ingest`` does)."""
        stored = self.store.ids()
        owned = self.manifest.chunk_ids()
        orphans = stored - owned
        if orphans:
            log.info("knowledge base %s: deleting %d chunks left by an interrupted ingestion", self.name, len(orphans))
            self.store.delete(sorted(orphans))
        incomplete = []
        for key, rec in self.manifest.files.items():
            if rec.complete and not set(rec.chunk_ids) <= stored:
                rec.complete = False
                incomplete.append(key)
        if incomplete:
            log.info("knowledge base %s: %d files have missing chunks and will be ingested again", self.name, len(incomplete))
            self.save_manifest()
        return ReconcileReport(len(orphans), tuple(incomplete))

    def fingerprint(self) -> str:
        """Digest of the chunk ids the manifest says the base holds."""
        return fingerprint(self.manifest.chunk_ids())

    # -- BM25 -----------------------------------------------------------------------------------------------------
    def bm25_index(self, *, rebuild: bool = False) -> BM25Index:
        """The BM25 index, loaded from disk, or rebuilt from the store when missing or stale."""
        with self._lock:
            want = self.fingerprint()
            if not rebuild and self._bm25 is not None and self._bm25.fingerprint == want:
                return self._bm25
            index = None if rebuild else BM25Index.load(self.bm25_path)
            if index is None or index.fingerprint != want:
                index = self.rebuild_bm25()
            self._bm25 = index
            return index

    def rebuild_bm25(self) -> BM25Index:
        """Rebuild and save the BM25 index from the chunks in the store that the manifest owns."""
        owned = self.manifest.chunk_ids()
        chunks = [c for c in self.store.iter_chunks() if c.id in owned]
        chunks.sort(key=lambda c: (str(c.meta.get("source", "")), int(c.meta.get("chunk_index", 0))))
        old = self._bm25 or BM25Index.load(self.bm25_path)
        index = BM25Index.build(chunks, known=old.known_tokens() if old is not None else None)
        index.save(self.bm25_path)
        self._bm25 = index
        return index

    def summary(self) -> dict[str, Any]:
        """Name, embedder, counts and location, for ``kb list``."""
        m = self.manifest
        return {
            "name": m.name,
            "description": m.description,
            "embedder": m.embedder,
            "engine": m.engine.get("engine", ""),
            "files": len(m.files),
            "chunks": m.n_chunks(),
            "incomplete_files": sum(1 for r in m.files.values() if not r.complete),
            "chunk_tokens": m.splitter.get("chunk_tokens"),
            "overlap_tokens": m.splitter.get("overlap_tokens"),
            "tokenizer": m.splitter.get("tokenizer"),
            "store": m.store.get("url") or str(self.path / "chroma"),
            "path": str(self.path),
            "created_at": m.created_at,
        }
