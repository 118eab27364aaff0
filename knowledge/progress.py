"""Progress of an ingestion, as data: the library reports, the caller renders (a bar, log lines, a web page).

:func:`knowledge.ingest.ingest` calls ``progress(IngestProgress)`` when a phase starts (scanning, loading the
embedder, ingesting, done), after files finish, and about twice a second while it waits on the embedder, so a
caller can show a line every few seconds even when one window of chunks takes minutes to embed.

Example::

    def show(p: IngestProgress) -> None:
        print(p.line())   # "book: 12/40 files, 830 chunks, 45.1 chunks/s, about 1 min 20 s left"

    ingest(kb, [Path("docs")], progress=show)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Phase = Literal["scanning", "loading", "ingesting", "finishing", "done", "stopped"]
"""``scanning`` files and hashing them; ``loading`` the embedding model; ``ingesting`` (read, split, embed, write);
``finishing`` (saving the manifest, rebuilding BM25); ``done``; ``stopped`` on request, finished files kept."""


def plural(n: int, word: str) -> str:
    """``1 file``, ``3 files``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_bytes(n: float) -> str:
    """``812 B``, ``45.3 KB``, ``2.1 MB``, ``1.4 GB``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(frozen=True)
class IngestProgress:
    """A snapshot of one ingestion. ``files_total`` counts the files to read in this run (unchanged files are not
    in it); ``chunks`` the chunks embedded so far (for a BM25-only base: split and queued); ``eta_s`` is None
    until there is enough to estimate from. ``message`` says what a new phase is about (shown once)."""

    kb: str
    phase: Phase
    files_done: int = 0
    files_total: int = 0
    chunks: int = 0
    chunks_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    current: str = ""
    message: str = ""

    @property
    def fraction(self) -> float:
        """Files done over files to do (1.0 when there is nothing to do)."""
        return min(1.0, self.files_done / self.files_total) if self.files_total else 1.0

    def line(self) -> str:
        """One line for a log: ``book: 12/40 files, 830 chunks, 45.1 chunks/s, about 1 min 20 s left``."""
        if self.phase in ("scanning", "loading"):
            return f"{self.kb}: {self.message or self.phase}"
        return f"{self.kb}: {self.files_done}/{self.files_total} files, {self.status()}"

    def status(self) -> str:
        """The line without the base's name and the file count (for a caller that shows those itself)."""
        if self.phase in ("scanning", "loading"):
            return self.message or self.phase
        parts = [f"{self.chunks} chunks"]
        if self.chunks_per_s is not None:
            parts.append(f"{self.chunks_per_s:.1f} chunks/s")
        if self.phase == "ingesting":
            parts.append(f"about {format_seconds(self.eta_s)} left" if self.eta_s is not None else "estimating time left")
        elif self.phase == "finishing" and self.message:
            parts.append(self.message)
        else:
            parts.append(f"{self.phase} after {format_seconds(self.elapsed_s)}")
        return ", ".join(parts)


ProgressCallback = Callable[[IngestProgress], None]
"""``callback(snapshot)``; called from the ingesting thread or its embedding thread, one call at a time; must
return quickly."""


class ProgressTracker:
    """Builds :class:`IngestProgress` snapshots for one run and hands them to the callback: every phase change and
    the last file at once, otherwise at most every ``every`` seconds. Rates count from the moment the embedder is
    ready, so model loading does not spoil the estimate; the time left is estimated from the bytes of the files
    to do, each chunk embedded counting for its share of its file."""

    def __init__(self, kb: str, callback: ProgressCallback | None, *, every: float = 0.5) -> None:
        self.kb = kb
        self.callback = callback
        self.every = every
        self.started = time.monotonic()
        self.phase: Phase = "scanning"
        self.files_done = 0
        self.files_total = 0
        self.bytes_total = 0
        self.bytes_skipped = 0.0  # files that failed count as done for the estimate
        self.current = ""
        self.ready_at: float | None = None
        self._last = 0.0
        self._lock = threading.Lock()
        self._emit_lock = threading.RLock()
        self.chunks = 0
        self.bytes_done = 0.0

    def add_embedded(self, chunks: int, weight: float) -> None:
        """``chunks`` more chunks embedded, worth ``weight`` bytes of their files (called by the embedding thread)."""
        with self._lock:
            if self.ready_at is None:
                self.ready_at = time.monotonic()
            self.chunks += chunks
            self.bytes_done += weight
        self._emit()  # from the embedding thread: news flows while the main thread is busy writing

    def embedder_ready(self) -> None:
        """The model is loaded: rates are measured from now."""
        with self._lock:
            self.ready_at = time.monotonic()

    def set_phase(self, phase: Phase, message: str = "") -> None:
        self.phase = phase
        self._emit(message, force=True)

    def file_done(self, path: str, *, failed_bytes: int = 0) -> None:
        self.files_done += 1
        self.bytes_skipped += failed_bytes
        self.current = path
        self._emit(force=self.files_done == self.files_total)

    def reading(self, path: str) -> None:
        self.current = path
        self._emit()

    def tick(self) -> None:
        """Called while waiting; emits when ``every`` seconds have passed since the last snapshot."""
        self._emit()

    def snapshot(self, message: str = "") -> IngestProgress:
        now = time.monotonic()
        with self._lock:
            chunks, done_bytes, ready = self.chunks, self.bytes_done + self.bytes_skipped, self.ready_at
        rate = eta = None
        if ready is not None and now - ready >= 1.0 and chunks:
            rate = chunks / (now - ready)
            frac = done_bytes / self.bytes_total if self.bytes_total else 0.0
            if frac >= 0.01:
                eta = (now - ready) * (1.0 - min(frac, 1.0)) / frac
        return IngestProgress(
            kb=self.kb, phase=self.phase, files_done=self.files_done, files_total=self.files_total, chunks=chunks,
            chunks_per_s=rate, eta_s=eta, elapsed_s=now - self.started, current=self.current, message=message,
        )

    def _emit(self, message: str = "", *, force: bool = False) -> None:
        if self.callback is None:
            return
        with self._emit_lock:
            now = time.monotonic()
            if not force and now - self._last < self.every:
                return
            self._last = now
            self.callback(self.snapshot(message))
