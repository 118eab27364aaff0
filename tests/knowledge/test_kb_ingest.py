"""Ingestion: incremental and idempotent, crash-safe (kill -9 for real), embedder recorded and enforced."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from knowledge.errors import (
    EmbedderMismatchError,
    KnowledgeBaseBusyError,
    KnowledgeBaseExistsError,
    KnowledgeBaseNotFoundError,
)
from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry
from knowledge.types import Chunk
from llm_backend.errors import ConfigError
from tests.knowledge.corpus import kb_state, write_corpus

REPO = Path(__file__).resolve().parents[2]


_write_corpus = write_corpus
_state = kb_state


def test_incremental_and_idempotent(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 5)
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("inc", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    first = ingest(kb, [corpus])
    assert len(first.added) == 5 and not first.failed
    files, stored, count = _state(kb)
    assert count == len(stored) == sum(len(v) for v in files.values())

    again = ingest(kb, [corpus])
    assert len(again.unchanged) == 5 and again.chunks_written == 0
    assert _state(kb) == (files, stored, count)

    changed = corpus / "doc 001.md"
    changed.write_text("# 文档 1\n\n全新的内容，只有一句。\n", encoding="utf-8")
    (corpus / "doc 002.md").unlink()
    (corpus / "doc 999.md").write_text("# new\n\nA new file.\n", encoding="utf-8")
    third = ingest(kb, [corpus])
    assert third.updated == [str(changed.resolve())]
    assert [Path(p).name for p in third.removed] == ["doc 002.md"]
    assert [Path(p).name for p in third.added] == ["doc 999.md"]
    files, stored, count = _state(kb)
    assert count == len(stored) == sum(len(v) for v in files.values())
    assert not any("第2号文件" in t for t in stored.values())
    assert any("全新的内容" in t for t in stored.values())
    # a file named on its own that is gone is dropped too
    single = corpus / "doc 003.md"
    single.unlink()
    fourth = ingest(kb, [single])
    assert [Path(p).name for p in fourth.removed] == ["doc 003.md"] and not fourth.failed
    files, stored, count = _state(kb)
    # the BM25 index follows the store
    index = kb.bm25_index()
    assert {c.id for c in index.chunks} == set(stored)


def test_reconcile_repairs_a_half_written_run(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 3)
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    kb = registry.create("rec", embedder="hash")
    ingest(kb, [corpus])
    clean = _state(kb)
    # Simulate both crash windows: chunks written but their file not committed, and a committed file whose
    # chunks are gone.
    from knowledge.embedders import HashEmbedder

    kb.store.upsert([Chunk("orphan-1", "stray text", {"source": "x"})], HashEmbedder().embed_documents(["stray text"]))
    victim = next(iter(kb.manifest.files.values()))
    kb.store.delete(victim.chunk_ids[:1])
    kb = registry.open("rec")
    report = ingest(kb, [corpus])
    assert report.repaired_orphans == 1 and report.repaired_files == 1
    assert _state(kb) == clean


@pytest.mark.fault
def test_kill_9_during_ingestion_then_rerun_gives_the_same_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, 150, paragraphs=12)
    home = tmp_path / "home"
    registry = KnowledgeBaseRegistry(home)
    registry.create("crash", embedder="hash", chunk_tokens=48, overlap_tokens=8)
    registry.create("clean", embedder="hash", chunk_tokens=48, overlap_tokens=8)
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from knowledge.ingest import ingest
        from knowledge.registry import KnowledgeBaseRegistry
        kb = KnowledgeBaseRegistry(Path({str(home)!r})).open("crash")
        ingest(kb, [Path({str(corpus)!r})], batch_size=16, manifest_every=0.0)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    manifest = home / "kb" / "crash" / "manifest.json"
    killed_at = -1
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = len(json.loads(manifest.read_text())["files"])
        except (OSError, ValueError):
            done = 0
        if done >= 10:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = done
            break
        time.sleep(0.01)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode() if proc.stderr else ""
    assert 10 <= killed_at < 150, "the kill must land in the middle of the run"

    crashed = registry.open("crash")
    assert len(crashed.manifest.files) < 150
    report = ingest(crashed, [corpus])
    assert not report.failed
    clean = registry.open("clean")
    ingest(clean, [corpus])

    crash_files, crash_store, crash_count = _state(crashed)
    clean_files, clean_store, clean_count = _state(clean)
    assert crash_files == clean_files
    assert crash_store == clean_store  # no missing and no stray chunk
    assert crash_count == clean_count == len(clean_store)  # no duplicates
    assert crashed.bm25_index().fingerprint == clean.bm25_index().fingerprint


def test_embedder_is_recorded_and_enforced(tmp_path: Path) -> None:
    from core.rag.retrievers import DenseRetriever
    from knowledge.embedders import HashEmbedder, MiniLMEmbedder

    registry = KnowledgeBaseRegistry(tmp_path / "home")
    kb = registry.create("emb", embedder="hash")
    assert json.loads(kb.manifest_path.read_text())["embedder"] == "hash"
    DenseRetriever.for_kb(kb, HashEmbedder())
    with pytest.raises(EmbedderMismatchError, match="built with the embedder 'hash'"):
        DenseRetriever.for_kb(kb, MiniLMEmbedder())


def test_registry_create_list_delete(tmp_path: Path) -> None:
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    registry.create("one", embedder="none")
    registry.create("two", embedder="hash")
    assert [i["name"] for i in registry.list()] == ["one", "two"]
    with pytest.raises(KnowledgeBaseExistsError):
        registry.create("one")
    with pytest.raises(KnowledgeBaseNotFoundError, match="Did you mean 'one'"):
        registry.open("onr")
    with pytest.raises(ConfigError):
        registry.create("bad name!")
    with pytest.raises(ConfigError, match="unknown embedder"):
        registry.create("three", embedder="bert")
    registry.delete("one")
    assert registry.names() == ["two"]


def test_delete_then_create_again_in_the_same_process(tmp_path: Path) -> None:
    """chromadb caches one system per path; a base deleted and created again under the same name must get a fresh
    one, not the stale system whose database file is gone ("attempt to write a readonly database")."""
    corpus = tmp_path / "c"
    _write_corpus(corpus, 2)
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    first = registry.create("again", embedder="hash")
    ingest(first, [corpus])
    other = registry.create("other", embedder="hash")  # another base's system must survive the delete
    ingest(other, [corpus])
    registry.delete("again")  # `first` still holds a client of the deleted store
    second = registry.create("again", embedder="hash")
    report = ingest(second, [corpus])
    assert report.ok and len(report.added) == 2
    assert second.store.count() == second.manifest.n_chunks() > 0
    reopened = registry.open("again")
    assert reopened.store.count() == second.manifest.n_chunks()
    assert other.store.count() == other.manifest.n_chunks() > 0
    registry.delete("again")
    assert registry.names() == ["other"]


def test_second_writer_is_refused(tmp_path: Path) -> None:
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("lock", embedder="none")
    other = KnowledgeBaseRegistry(tmp_path / "home").open("lock")
    with kb.writing(), pytest.raises(KnowledgeBaseBusyError):
        ingest(other, [tmp_path])


def test_bm25_rebuild_segments_only_new_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import knowledge.lexical as lexical

    corpus = tmp_path / "c"
    _write_corpus(corpus, 4)
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("bm", embedder="none", chunk_tokens=32, overlap_tokens=4)
    ingest(kb, [corpus])
    before = kb.manifest.n_chunks()
    calls: list[str] = []
    real = lexical.tokenize
    monkeypatch.setattr(lexical, "tokenize", lambda text: calls.append(text) or real(text))
    (corpus / "new.md").write_text("# 新文件\n\n只有一段新的内容。\n", encoding="utf-8")
    report = ingest(kb, [corpus])
    new_chunks = len(kb.manifest.files[str((corpus / "new.md").resolve())].chunk_ids)
    assert report.added and kb.manifest.n_chunks() == before + new_chunks
    assert len(calls) == new_chunks  # unchanged chunks reuse their saved terms
    assert kb.bm25_index().search("新的内容", 1)


def test_bm25s_debug_lines_follow_our_logging(caplog: pytest.LogCaptureFixture) -> None:
    """bm25s sets its logger to DEBUG on import; the CLI (root at WARNING) printed "Building index from tokens"."""
    import logging

    from knowledge.lexical import BM25Index

    caplog.set_level(logging.WARNING)
    BM25Index.build([Chunk("a", "hello world", {}), Chunk("b", "another text", {})])
    assert not logging.getLogger("bm25s").isEnabledFor(logging.DEBUG)
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


class _EngineEmbedder:
    """The hash embedder's vectors, with an engine to record (as e5 on ONNX Runtime reports one)."""

    name = "hash"

    def __init__(self) -> None:
        from knowledge.embedders import make_embedder

        self._inner = make_embedder("hash")
        self.engine_info = {"engine": "onnxruntime", "file": "model.onnx"}

    def embed_documents(self, texts: list[str]) -> object:
        assert self._inner is not None
        return self._inner.embed_documents(texts)

    def embed_query(self, text: str) -> object:
        assert self._inner is not None
        return self._inner.embed_query(text)


def test_the_engine_that_computed_the_vectors_is_recorded_in_the_manifest(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 2)
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    kb = registry.create("eng", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    kb._embedder, kb._embedder_loaded = _EngineEmbedder(), True  # type: ignore[assignment]
    ingest(kb, [corpus])
    reopened = registry.open("eng")
    assert reopened.manifest.engine == {"engine": "onnxruntime", "file": "model.onnx"}
    assert reopened.summary()["engine"] == "onnxruntime"


def test_a_bm25_only_base_records_no_engine(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    _write_corpus(corpus, 1)
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    ingest(registry.create("bm", embedder="none", chunk_tokens=32, overlap_tokens=4), [corpus])
    assert registry.open("bm").manifest.engine == {}
