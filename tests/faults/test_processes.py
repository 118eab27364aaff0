"""The fault suite on real processes: the model server killed in the middle of an answer during ``kb ask``, an agent
run and an evaluation (a clear message, no traceback; the evaluation resumes and loses or doubles no sample)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.evaluation.conftest import TINY_TASK, write_tiny

from .conftest import ragent, server_process

pytestmark = pytest.mark.fault


def _clear_failure(done: object, *needles: str) -> str:
    stderr = getattr(done, "stderr", "")
    assert getattr(done, "returncode", 0) != 0
    assert "Traceback" not in stderr, stderr
    assert stderr.lstrip().startswith("error:") or "error:" in stderr, stderr
    for needle in needles:
        assert needle in stderr, stderr
    return str(stderr)


def test_server_killed_mid_stream_during_kb_ask(bm25_kb: Path) -> None:
    with server_process() as server:
        server.kill_mid_stream(after=1.0)
        done = ragent(["kb", "ask", "k", "What stores the vectors?", "--mode", "bm25", "--base-url", server.url], bm25_kb)
    assert server.requests >= 1  # the answer had started
    _clear_failure(done, server.url)


def test_server_killed_mid_stream_during_an_agent_run(tmp_path: Path) -> None:
    with server_process() as server:
        server.kill_mid_stream(after=1.0)
        done = ragent(["agent", "run", "What is 6 times 7?", "--tools", "calculator", "--base-url", server.url, "-q"], tmp_path / "home")
    assert server.requests >= 1
    _clear_failure(done, server.url)


def test_server_killed_mid_eval_then_the_eval_resumes(tmp_path: Path) -> None:
    n = 12
    write_tiny(tmp_path / "data", n=n)
    task = tmp_path / "tiny.yaml"
    task.write_text(TINY_TASK)
    run_dir = tmp_path / "run"
    home = tmp_path / "home"
    base = ["eval", "run", str(task), "--data-dir", str(tmp_path / "data"), "--out", str(run_dir), "--no-cache", "-c", "2", "--no-report", "--json"]
    with server_process() as server:
        server.kill_mid_stream(after=2.0)
        first = ragent([*base, "--base-url", server.url], home, timeout=180)
        port = server.port
    _clear_failure(first, "run the same command again to resume")
    before = len((run_dir / "samples.jsonl").read_text().splitlines())
    assert 0 < before < n  # killed in the middle
    with server_process(port) as again:  # the server is back, on the same address
        second = ragent([*base, "--base-url", again.url], home, timeout=180)
    assert second.returncode == 0, second.stderr
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    ids = [r["sample_id"] for r in rows]
    assert sorted(ids, key=int) == [str(i) for i in range(n)]  # every sample exactly once
    result = json.loads((run_dir / "results.json").read_text())
    assert result["counts"]["samples"] == n and result["counts"]["errors"] == 0
