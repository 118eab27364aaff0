"""Incremental, idempotent, crash-safe ingestion of files into a knowledge base.

The walk for each run:

1. take the base's write lock (another process ingesting the same base gets a clear error);
2. **reconcile** the store with the manifest (see :meth:`KnowledgeBase.reconcile`): this is what makes a run after
   ``kill -9`` end with exactly the index a clean run gives;
3. scan the given files and folders; a file whose content hash is in the manifest is skipped, a file under a given
   folder that the manifest knows but that is gone is dropped;
4. load -> split -> embed -> write, in batches that span files, with embedding in a worker thread so loading,
   splitting and writing overlap with it;
5. a file is committed to the manifest only after all its chunks are in the store (and its old chunks deleted);
   the manifest is written atomically every few seconds and at the end;
6. rebuild the BM25 index when anything changed.

A file that cannot be loaded is reported with its reason, and the batch goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from knowledge.loaders import DEFAULT_MAX_BYTES, LoadError, is_supported, iter_files, load_file
from knowledge.manifest import FileRecord
from knowledge.splitter import context_text
from knowledge.types import Chunk

if TYPE_CHECKING:
    from knowledge.base import KnowledgeBase

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
"""``callback(path, files_done, files_total)``."""


@dataclass(frozen=True)
class FileError:
    """A file that was not ingested, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingestion run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[FileError] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    chunks_written: int = 0
    chunks_deleted: int = 0
    repaired_orphans: int = 0
    repaired_files: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [asdict(f) for f in self.failed]
        return data

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.removed)} removed",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.failed)} failed",
        ]
        text = ", ".join(parts) + f"; {self.chunks_written} chunks written in {self.seconds:.1f} s"
        if self.repaired_orphans or self.repaired_files:
            text += f" (repaired an interrupted run: {self.repaired_orphans} stray chunks, {self.repaired_files} files redone)"
        return text


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class _Job:
    key: str
    path: Path
    sha256: str
    size: int
    old_ids: list[str]
    chunks: list[Chunk]
    title: str
    remaining: int


def _under(key: str, roots: Sequence[str]) -> bool:
    return any(key == r or key.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class _Progress:
    def __init__(self, progress: bool | ProgressCallback, total: int) -> None:
        self.callback = progress if callable(progress) else None
        self.bar: Any = None
        self.total = total
        self.done = 0
        if progress is True and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", desc="ingest", dynamic_ncols=True)

    def step(self, path: str, chunks: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{chunks} chunks", refresh=False)
        if self.callback is not None:
            self.callback(path, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def ingest(
    kb: KnowledgeBase,
    paths: Sequence[Path],
    *,
    progress: bool | ProgressCallback = False,
    batch_size: int = 512,
    max_bytes: int = DEFAULT_MAX_BYTES,
    manifest_every: float = 2.0,
) -> IngestReport:
    """Bring the knowledge base up to date with ``paths`` (files and folders). Returns an :class:`IngestReport`;
    bad files are in ``report.failed`` with their reasons.

    Chunks go to the embedder ``batch_size`` at a time, across files: large windows let the embedder sort texts by
    length and pad little (MiniLM: 1.5x the chunks/s of windows of 64). A killed run loses at most the two windows in
    flight; the next run redoes them."""
    t0 = time.perf_counter()
    report = IngestReport()
    with kb.writing():
        rec = kb.reconcile()
        report.repaired_orphans, report.repaired_files = rec.orphans_deleted, len(rec.incomplete_files)
        manifest = kb.manifest
        store = kb.store

        # -- scan ---------------------------------------------------------------------------------------------
        found: dict[str, Path] = {}
        for path, explicit in iter_files(paths):
            if not path.exists():
                if str(path.resolve()) not in manifest.files:  # a known file that is gone is removed below
                    report.failed.append(FileError(str(path), "no such file or folder"))
                continue
            if not is_supported(path):
                if explicit:
                    report.failed.append(FileError(str(path), f"unsupported file type {path.suffix or '(none)'!r}"))
                else:
                    report.ignored.append(str(path))
                continue
            found[str(path.resolve())] = path
        roots = [str(Path(p).resolve()) for p in paths]

        # -- removed files --------------------------------------------------------------------------------------
        for key in sorted(k for k in manifest.files if _under(k, roots) and k not in found and not os.path.exists(k)):
            old = manifest.files.pop(key)
            store.delete(old.chunk_ids)
            report.removed.append(key)
            report.chunks_deleted += len(old.chunk_ids)
        # Files the manifest marks incomplete are redone even when not under the given paths.
        for key, frec in manifest.files.items():
            if not frec.complete and key not in found and os.path.isfile(key):
                found[key] = Path(key)
        if report.removed:
            kb.save_manifest()

        # -- plan -----------------------------------------------------------------------------------------------
        todo: list[tuple[str, Path, str, int]] = []
        for key, path in found.items():
            try:
                digest, size = sha256_file(path), path.stat().st_size
            except OSError as exc:
                report.failed.append(FileError(str(path), f"cannot read file ({exc.strerror or exc})"))
                continue
            old_rec = manifest.files.get(key)
            if old_rec is not None and old_rec.complete and old_rec.sha256 == digest:
                report.unchanged.append(key)
            else:
                todo.append((key, path, digest, size))

        # -- load, split, embed, write ----------------------------------------------------------------------------
        embedder = kb.embedder
        splitter = kb.splitter
        bar = _Progress(progress, len(todo))
        pending: deque[tuple[list[tuple[_Job, Chunk]], Future[np.ndarray | None]]] = deque()
        buffer: list[tuple[_Job, Chunk]] = []
        last_save = time.monotonic()
        dirty = bool(report.removed)

        def embed(texts: list[str]) -> np.ndarray | None:
            return embedder.embed_documents(texts) if embedder is not None else None

        def commit(job: _Job) -> None:
            nonlocal last_save, dirty
            new_ids = [c.id for c in job.chunks]
            stale = sorted(set(job.old_ids) - set(new_ids))
            if stale:
                store.delete(stale)
                report.chunks_deleted += len(stale)
            (report.updated if job.old_ids or job.key in manifest.files else report.added).append(job.key)
            manifest.files[job.key] = FileRecord(
                path=str(job.path), sha256=job.sha256, size=job.size, chunk_ids=new_ids, title=job.title, ingested_at=time.time()
            )
            dirty = True
            bar.step(str(job.path), len(new_ids))
            if time.monotonic() - last_save >= manifest_every:
                kb.save_manifest()
                last_save = time.monotonic()

        def write_oldest() -> None:
            items, fut = pending.popleft()
            vectors = fut.result()
            store.upsert([c for _, c in items], vectors)
            report.chunks_written += len(items)
            for job, _ in items:
                job.remaining -= 1
                if job.remaining == 0:
                    commit(job)

        def submit(items: list[tuple[_Job, Chunk]]) -> None:
            pending.append((items, pool.submit(embed, [context_text(c) for _, c in items])))
            # Keep at most two batches in flight: one embedding, one waiting to be written.
            while len(pending) > 2 or (pending and pending[0][1].done() and len(pending) > 1):
                write_oldest()

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as pool:
            try:
                for key, path, digest, size in todo:
                    old_rec = manifest.files.get(key)
                    old_ids = list(old_rec.chunk_ids) if old_rec else []
                    try:
                        docs = load_file(path, max_bytes=max_bytes)
                        chunks = splitter.split_documents(docs)
                        if not chunks:
                            raise LoadError(path, "no text left after splitting")
                    except LoadError as exc:
                        report.failed.append(FileError(str(path), exc.reason))
                        bar.step(str(path), 0)
                        if old_rec is not None:
                            # The file changed into something unreadable: its old chunks no longer match it.
                            store.delete(old_ids)
                            report.chunks_deleted += len(old_ids)
                            manifest.files.pop(key, None)
                            dirty = True
                        continue
                    except Exception as exc:  # a loader bug must not stop the batch either
                        log.exception("unexpected error loading %s", path)
                        report.failed.append(FileError(str(path), f"unexpected error ({type(exc).__name__}: {exc})"))
                        bar.step(str(path), 0)
                        continue
                    title = str(docs[0].meta.get("title") or path.stem)
                    job = _Job(key, path, digest, size, old_ids, chunks, title, len(chunks))
                    for c in chunks:
                        buffer.append((job, c))
                        if len(buffer) >= batch_size:
                            submit(buffer)
                            buffer = []
                if buffer:
                    submit(buffer)
                    buffer = []
                while pending:
                    write_oldest()
            finally:
                bar.close()
                if dirty:
                    kb.save_manifest()

        if dirty or report.repaired_orphans or report.repaired_files or kb.fingerprint() != _saved_fingerprint(kb):
            kb.rebuild_bm25()
    report.seconds = time.perf_counter() - t0
    log.info("ingest %s: %s", kb.name, report.summary())
    return report


def _saved_fingerprint(kb: KnowledgeBase) -> str | None:
    fp = kb.bm25_path / "fingerprint"
    return fp.read_text().strip() if fp.is_file() else None
