"""How the CLI shows an ingestion and lets the user stop it.

- :func:`ingest_view`: a rich progress bar when stderr is a terminal; otherwise (a log file, the app's
  subprocess, CI) one plain line per phase at once and a status line every ``$RAGENT_PROGRESS_INTERVAL`` seconds
  (default 5), printed by a timer of its own so a line comes even while one window of chunks takes minutes.
- :func:`stop_on_signals`: SIGINT (Ctrl-C) and SIGTERM set a stop event that the ingestion checks; a second
  signal, or one while only the keyword index is being rebuilt, leaves at once (what is committed is on disk
  already, so that is as safe as the first); :func:`exit_now` ends a stopped run without the slow teardown.

Example plain output (``ragent kb ingest book ../shared/data/happy-llm-book 2> log``, then Ctrl-C)::

    book: opening the knowledge base
    book: scanning ../shared/data/happy-llm-book
    book: 15 files found: 15 to read (442.9 KB), 0 unchanged
    book: loading the e5 embedder
    book: still loading the e5 embedder (5 s)
    book: ingesting 15 files
    book: 4/15 files, 81 chunks, 16.7 chunks/s, about 38 s left (reading chapter5.md)
    book: 5/15 files, 167 chunks, 17.3 chunks/s, about 35 s left (reading chapter6.md)
    stopped by Ctrl-C: kept the 5 files finished in this run (197 chunks); 10 files not done.
    Run the same command again to resume: ragent kb ingest book ../shared/data/happy-llm-book
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn

from knowledge.progress import IngestProgress, format_seconds, plural

DEFAULT_INTERVAL = 5.0
"""Seconds between plain progress lines (``$RAGENT_PROGRESS_INTERVAL`` overrides)."""


def progress_interval() -> float:
    """``$RAGENT_PROGRESS_INTERVAL`` in seconds (default 5; tests set it small)."""
    try:
        value = float(os.environ.get("RAGENT_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value > 0 else DEFAULT_INTERVAL


class PlainIngestView:
    """Plain lines on ``stream``: a new phase at once, then a status line whenever ``interval`` seconds pass
    without one (while scanning or loading a model too: "still loading ... (35 s)")."""

    def __init__(self, stream: IO[str], interval: float) -> None:
        self.stream = stream
        self.interval = interval
        self.latest: IngestProgress | None = None
        self._phase_text = ""
        self._phase_started = time.monotonic()
        self._last_write = time.monotonic()
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="ragent-progress", daemon=True)
        self._thread.start()

    def __call__(self, p: IngestProgress) -> None:
        with self._lock:
            new_phase = self.latest is None or p.phase != self.latest.phase
            self.latest = p
            if new_phase:  # a phase's first message says what it does: "still <that> (35 s)"
                self._phase_started = time.monotonic()
                self._phase_text = p.message
            if p.phase in ("done", "stopped") or not (new_phase or p.message):
                return
            if p.phase == "ingesting":
                self.write(f"{p.kb}: ingesting {plural(p.files_total, 'file')}")
            elif p.message:
                self.write(p.line())

    def write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last_write = time.monotonic()

    def status(self) -> str | None:
        """The line the timer prints now (None once the run is over)."""
        p = self.latest
        if p is None or p.phase in ("done", "stopped"):
            return None
        if p.phase == "ingesting":
            current = os.path.basename(p.current)
            return p.line() + (f" (reading {current})" if current else "")
        waited = format_seconds(time.monotonic() - self._phase_started)
        return f"{p.kb}: still {self._phase_text or p.phase} ({waited})"

    def _tick(self) -> None:
        while not self._closed.is_set():
            wait = self.interval - (time.monotonic() - self._last_write)
            if wait > 0:
                self._closed.wait(wait)
                continue
            with self._lock:
                line = self.status()
                if line is not None:
                    self.write(line)
                else:
                    self._last_write = time.monotonic()

    def close(self) -> None:
        self._closed.set()


class RichIngestView:
    """A rich progress bar on stderr: files, chunks, chunks/s and time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
            TextColumn("{task.fields[status]}"), console=self.console, transient=False,
        )
        self.task = self.bar.add_task("", total=None, status="")
        self.bar.start()

    def __call__(self, p: IngestProgress) -> None:
        if p.phase in ("scanning", "loading"):
            if p.message:
                self.console.print(p.line(), highlight=False)
            self.bar.update(self.task, description=p.kb)
            return
        status = f"{p.chunks} chunks"
        if p.chunks_per_s is not None:
            status += f" · {p.chunks_per_s:.1f} chunks/s"
        if p.phase == "ingesting":
            status += f" · {format_seconds(p.eta_s)} left" if p.eta_s is not None else " · estimating time left"
        else:
            status += f" · {p.phase}"
        self.bar.update(self.task, description=p.kb, total=p.files_total, completed=p.files_done, status=status)

    def write(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def close(self) -> None:
        self.bar.stop()


@contextlib.contextmanager
def ingest_view(enabled: bool = True, *, stream: IO[str] | None = None) -> Iterator[Any]:
    """A progress callback (with ``.write(text)`` for messages between its lines), or None when disabled."""
    if not enabled:
        yield None
        return
    out = stream or sys.stderr
    view: PlainIngestView | RichIngestView
    view = RichIngestView() if stream is None and out.isatty() else PlainIngestView(out, progress_interval())
    try:
        yield view
    finally:
        view.close()


@dataclass
class StopRequest:
    """What :func:`stop_on_signals` hands out: the event to pass to ``ingest(stop=...)`` and the signal seen."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None
    leave_at_once: str | None = None
    """Set while nothing is left to keep (e.g. the files are committed and only the keyword index is being
    rebuilt): a signal then prints this and exits at once instead of waiting for the step to end."""

    def follow(self, view: Any) -> Any:
        """A progress callback that passes snapshots on to ``view`` (may be None) and, in the ``finishing`` phase
        (every file committed, the manifest saved), lets a signal leave at once."""

        def callback(p: IngestProgress) -> None:
            self.leave_at_once = (
                f"stopped while {p.message or 'finishing'}: every file is kept; the keyword index is rebuilt by the "
                "next ingest or search." if p.phase == "finishing" else None
            )
            if view is not None:
                view(p)

        return callback

    @property
    def exit_code(self) -> int:
        """128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


def exit_now(code: int, *, close: Callable[[], None] | None = None) -> NoReturn:
    """Leave the process at once with ``code``, skipping the interpreter's teardown.

    For a run stopped by a signal, after it has said what it kept: everything it keeps is on disk already (the
    manifest is written atomically and fsynced, each store write is committed; kill -9 leaves the same state, as
    the fault tests prove), while tearing down chromadb, onnxruntime and an abandoned embedding thread took 0.5 to
    3 s on a loaded 2-core machine, beyond the 2 s a stop may take. ``close`` releases the store first."""
    if close is not None:
        with contextlib.suppress(Exception):
            close()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT and SIGTERM into a stop request for the block (main thread only); restore the handlers after.
    The first signal sets the event; a second one exits at once with 128 + its number."""
    request = StopRequest()

    def handler(signum: int, frame: Any) -> None:
        if request.event.is_set() or request.leave_at_once:
            # What is on disk is what kill -9 would leave, which a rerun repairs (tests/knowledge/test_ingest_faults.py).
            text = request.leave_at_once or "stopping now; files finished so far are kept."
            os.write(2, f"\n{text}\n".encode())
            os._exit(128 + signum)
        # Nothing is printed here: the handler may run while the main thread holds the console; the ingestion
        # stops within a second and the command then says what was kept.
        request.signum = signum
        request.event.set()

    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in old.items():
            signal.signal(s, h)
