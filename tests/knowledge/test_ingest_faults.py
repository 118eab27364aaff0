"""Ingestion on real processes: progress lines in a log file, Ctrl-C / SIGTERM, kill -9, two ingests at once.

Each test runs ``ragent kb ingest`` as a subprocess through ``slow_cli.py`` (the ``hash`` embedder at a fixed time
per text), waits on something it can observe (the manifest on disk, a line of output), then acts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry
from tests.knowledge.corpus import kb_state, write_corpus

REPO = Path(__file__).resolve().parents[2]
SLOW_CLI = Path(__file__).with_name("slow_cli.py")
STOP_SECONDS = 2.0
"""The requirement: a stopped ingestion exits within 2 s of the signal."""
MARGIN = 1.5
"""For a loaded 2-core CI machine; an ingestion that waited for its in-flight window would take 5 s or more."""


def _write_corpus(root: Path, n: int, paragraphs: int = 6) -> None:
    write_corpus(root, n, paragraphs)


_state = kb_state


def _start(home: Path, delay: float, *args: str, log: Path, interval: float = 0.2, slow_bm25: float = 0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "RAGENT_HOME": str(home), "PYTHONPATH": str(REPO), "RAGENT_PROGRESS_INTERVAL": str(interval), "SLOW_BM25": str(slow_bm25)}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, str(SLOW_CLI), str(delay), *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for_files(manifest: Path, proc: subprocess.Popen[bytes], at_least: int, timeout: float = 120) -> int:
    """Wait until the manifest on disk holds ``at_least`` files (or the process ended); return the count."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = len(json.loads(manifest.read_text())["files"])
        except (OSError, ValueError):
            done = 0
        if done >= at_least:
            return done
        time.sleep(0.02)
    return done


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> str:
    """Send ``sig`` and wait at most the promised stop time (plus a margin); the log's text once it has exited."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_SECONDS + MARGIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {STOP_SECONDS + MARGIN} s after {sig.name}:\n{log.read_text()}")
    return log.read_text(encoding="utf-8")


def _wait_for_text(log: Path, proc: subprocess.Popen[bytes], text: str, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def setup(tmp_path: Path) -> tuple[KnowledgeBaseRegistry, Path, Path]:
    home = tmp_path / "home"
    corpus = tmp_path / "corpus"
    _write_corpus(corpus, 30)
    registry = KnowledgeBaseRegistry(home)
    registry.create("kb", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    registry.create("clean", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    return registry, home, corpus


def test_progress_lines_when_output_is_a_file(setup: tuple[KnowledgeBaseRegistry, Path, Path], tmp_path: Path) -> None:
    _, home, corpus = setup
    log = tmp_path / "out.log"
    proc = _start(home, 0.01, "kb", "ingest", "kb", str(corpus), log=log)
    assert proc.wait(timeout=120) == 0, log.read_text()
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "kb: opening the knowledge base"  # something at once, before the slow imports
    assert f"kb: scanning {corpus}" in lines
    assert "kb: 30 files found: 30 to read" in "\n".join(lines)
    assert "kb: loading the hash embedder" in lines
    status = [ln for ln in lines if re.match(r"kb: \d+/30 files, \d+ chunks, ([\d.]+ chunks/s, )?(about .+ left|estimating time left)", ln)]
    assert len(status) >= 2, lines
    assert any("chunks/s, about" in ln for ln in status), status  # a rate and a time left once there is enough
    assert "30 added" in lines[-1]


@pytest.mark.fault
def test_sigint_stops_within_two_seconds_and_keeps_finished_files(setup: tuple[KnowledgeBaseRegistry, Path, Path], tmp_path: Path) -> None:
    registry, home, corpus = setup
    log = tmp_path / "out.log"
    # 30 files of ~12 chunks at 20 ms a chunk: ~7 s of embedding, windows of up to 10 s
    proc = _start(home, 0.02, "kb", "ingest", "kb", str(corpus), log=log)
    kept = _wait_for_files(home / "kb" / "kb" / "manifest.json", proc, 1)
    assert proc.poll() is None and kept >= 1, log.read_text()
    out = _stop(proc, signal.SIGINT, log)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    match = re.search(r"stopped by Ctrl-C: kept the (\d+) files finished in this run \((\d+) chunks\); (\d+) files not done", out)
    assert match, out
    assert "Run the same command again to resume: ragent kb ingest kb " in out
    kept_files, kept_chunks, not_done = map(int, match.groups())
    assert kept_files >= 1 and not_done >= 1 and kept_files + not_done == 30

    kb = registry.open("kb")
    assert len(kb.manifest.files) == kept_files and kb.manifest.n_chunks() == kept_chunks
    assert kb.store.ids() == kb.manifest.chunk_ids()  # no chunk of an unfinished file left in the store
    kept_keys = set(kb.manifest.files)
    again = ingest(kb, [corpus])
    assert set(again.unchanged) == kept_keys
    assert len(again.unchanged) == kept_files and len(again.added) == not_done and not again.repaired_orphans
    clean = registry.open("clean")
    ingest(clean, [corpus])
    assert _state(kb) == _state(clean)


@pytest.mark.fault
def test_sigterm_stops_too(setup: tuple[KnowledgeBaseRegistry, Path, Path], tmp_path: Path) -> None:
    _, home, corpus = setup
    log = tmp_path / "out.log"
    proc = _start(home, 0.02, "kb", "ingest", "kb", str(corpus), log=log)
    assert _wait_for_text(log, proc, "kb: ingesting 30 files"), log.read_text()
    out = _stop(proc, signal.SIGTERM, log)
    assert proc.returncode == 143 and "stopped by SIGTERM" in out and "Traceback" not in out, out


@pytest.mark.fault
def test_sigint_while_rebuilding_the_keyword_index_leaves_at_once(setup: tuple[KnowledgeBaseRegistry, Path, Path], tmp_path: Path) -> None:
    registry, home, corpus = setup
    log = tmp_path / "out.log"
    proc = _start(home, 0.0, "kb", "ingest", "kb", str(corpus), log=log, slow_bm25=60)
    assert _wait_for_text(log, proc, "rebuilding the keyword index"), log.read_text()
    out = _stop(proc, signal.SIGINT, log)
    assert proc.returncode == 130 and "stopped while rebuilding the keyword index: every file is kept" in out, out
    kb = registry.open("kb")
    assert len(kb.manifest.files) == 30 and kb.store.ids() == kb.manifest.chunk_ids()
    assert kb.bm25_index().search("第7号文件", 1)  # rebuilt on first use
    assert len(ingest(kb, [corpus]).unchanged) == 30


@pytest.mark.fault
def test_kill_9_then_rerun_gives_the_clean_index(setup: tuple[KnowledgeBaseRegistry, Path, Path], tmp_path: Path) -> None:
    registry, home, corpus = setup
    log = tmp_path / "out.log"
    proc = _start(home, 0.03, "kb", "ingest", "kb", str(corpus), log=log)  # ~8 s of embedding
    killed_at = _wait_for_files(home / "kb" / "kb" / "manifest.json", proc, 3)
    assert proc.poll() is None, "the kill must land in the middle of the run:\n" + log.read_text()
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and 3 <= killed_at < 30

    crashed = registry.open("kb")
    report = ingest(crashed, [corpus])
    assert not report.failed and len(report.unchanged) >= killed_at  # what was committed is not redone
    clean = registry.open("clean")
    ingest(clean, [corpus])
    crash_files, crash_store, crash_count = _state(crashed)
    clean_files, clean_store, clean_count = _state(clean)
    assert crash_files == clean_files  # the same chunk ids per file
    assert crash_store == clean_store  # no missing and no stray chunk
    assert crash_count == clean_count == len(clean_store)  # no duplicates
    assert crashed.bm25_index().fingerprint == clean.bm25_index().fingerprint
    from knowledge.embedders import HashEmbedder

    for query in HashEmbedder().embed_documents(["第3号文件的第2段", "Document 17 paragraph 4 about retrieval"]):
        assert [h.chunk_id for h in crashed.store.query(query, k=5)] == [h.chunk_id for h in clean.store.query(query, k=5)]


@pytest.mark.fault
def test_two_ingests_at_once_the_second_is_refused_clearly(setup: tuple[KnowledgeBaseRegistry, Path, Path], tmp_path: Path) -> None:
    registry, home, corpus = setup
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _start(home, 0.01, "kb", "ingest", "kb", str(corpus), log=first_log)
    assert _wait_for_text(first_log, first, "kb: ingesting 30 files"), first_log.read_text()
    second = _start(home, 0.0, "kb", "ingest", "kb", str(corpus), log=second_log)
    assert second.wait(timeout=120) == 1
    message = second_log.read_text(encoding="utf-8")
    assert f"knowledge base 'kb' is being changed by another process (pid {first.pid}" in message, message
    assert "Traceback" not in message
    assert first.poll() is None, "the refusal must have happened while the first ingest ran"
    assert first.wait(timeout=120) == 0, first_log.read_text()

    kb = registry.open("kb")
    clean = registry.open("clean")
    ingest(clean, [corpus])
    assert _state(kb) == _state(clean)
    assert len(ingest(kb, [corpus]).unchanged) == 30
