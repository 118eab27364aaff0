"""Background jobs for the Streamlit pages: long work (ingesting uploads, benchmark runs) runs in a thread so the
page stays responsive; the page polls the job's progress and shows its messages.

A job is plain Python (no Streamlit), so it can be tested on its own and outlives a page switch. Jobs live in a
process-wide :class:`JobRunner` (:data:`JOBS`); each browser session remembers the ids of the jobs it started.

Example::

    job = JOBS.submit("ingest", "Adding 3 files to book", lambda job: do_work(job))
    job.update(done=1, total=3, message="a.md")      # from inside the work function
    JOBS.get(job.id).status                          # "running", then "done" or "failed"
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from llm_backend.errors import RagentError

log = logging.getLogger(__name__)

JobStatus = Literal["running", "done", "failed"]


@dataclass
class Job:
    """One piece of background work. ``done``/``total`` drive a progress bar, ``message`` says what it is doing,
    ``notes`` collect per-item messages (e.g. a file that failed), ``error`` is a message for a person."""

    id: str
    kind: str
    title: str
    status: JobStatus = "running"
    done: int = 0
    total: int = 0
    message: str = ""
    notes: list[str] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def update(self, *, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        """Report progress (called from the worker thread)."""
        with self._lock:
            if done is not None:
                self.done = done
            if total is not None:
                self.total = total
            if message is not None:
                self.message = message

    def note(self, text: str) -> None:
        """Add a per-item message (shown under the progress bar)."""
        with self._lock:
            self.notes.append(text)

    @property
    def fraction(self) -> float:
        """Progress between 0 and 1 (0 while the total is unknown)."""
        with self._lock:
            return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def seconds(self) -> float:
        """Seconds since the start (until the end when finished)."""
        return (self.finished_at or time.time()) - self.started_at

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished; False on timeout."""
        return self._finished.wait(timeout)

    def _finish(self, status: JobStatus, *, result: Any = None, error: str | None = None) -> None:
        with self._lock:
            self.status, self.result, self.error = status, result, error
            self.finished_at = time.time()
        self._finished.set()


class JobRunner:
    """Starts jobs in daemon threads and keeps them by id (the most recent ``keep`` finished ones)."""

    def __init__(self, *, keep: int = 50) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.keep = keep

    def submit(self, kind: str, title: str, work: Callable[[Job], Any]) -> Job:
        """Run ``work(job)`` in a thread. Its return value becomes ``job.result``; a :class:`RagentError` becomes
        ``job.error`` (its message), any other exception an "unexpected error" message (and a logged traceback)."""
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, title=title)

        def target() -> None:
            try:
                result = work(job)
            except RagentError as exc:
                job._finish("failed", error=str(exc))
            except Exception as exc:  # a bug in a lower layer: say so in one line, keep the traceback in the log
                log.exception("job %s (%s) failed", job.id, title)
                job._finish("failed", error=f"unexpected error ({type(exc).__name__}: {exc}); see the app's log for details.")
            else:
                job._finish("done", result=result)

        with self._lock:
            self._jobs[job.id] = job
            self._prune()
        threading.Thread(target=target, name=f"ragent-job-{kind}-{job.id}", daemon=True).start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        """The job with this id, or None."""
        if not job_id:
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def running(self, kind: str | None = None) -> list[Job]:
        """Jobs still running (of one kind)."""
        with self._lock:
            return [j for j in self._jobs.values() if j.running and (kind is None or j.kind == kind)]

    def wait_all(self, timeout: float = 60.0) -> bool:
        """Wait for every running job (for tests and shutdown); False if some are still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        return all(job.wait(max(0.0, deadline - time.monotonic())) for job in self.running())

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if not j.running), key=lambda j: j.finished_at or 0.0)
        for job in finished[: max(0, len(finished) - self.keep)]:
            del self._jobs[job.id]


JOBS = JobRunner()
"""The process-wide job runner used by the pages."""
