"""Resume after ``kill -9``: a real process is killed with SIGKILL in the middle of a run, the same command is run
again, and the results equal those of an uninterrupted run with no sample lost or scored twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from evaluation.registry import TaskRegistry
from evaluation.runner import RunOptions, run_task
from llm_backend.client import OpenAIChatClient
from llm_backend.settings import Settings
from llm_backend.testing import FakeOpenAIServer, FakeReply

from .conftest import TINY_TASK, write_tiny

REPO = Path(__file__).resolve().parents[2]
N = 30


def _responder(body: dict[str, Any]) -> FakeReply:
    q = body["messages"][-1]["content"]
    i = int(q.split("*")[1].split("?")[0])
    text = f"so {2 * i}\n#### {2 * i}" if i % 4 else "no idea"
    return FakeReply(text=text, delay=0.25)


def _asked(server: FakeOpenAIServer) -> list[str]:
    return [b["messages"][-1]["content"] for b in server.chat_requests()]


@pytest.mark.fault
def test_kill_9_then_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_tiny(data, n=N)
    task_file = tmp_path / "tiny.yaml"
    task_file.write_text(TINY_TASK)
    run_dir = tmp_path / "run"
    samples = run_dir / "samples.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with FakeOpenAIServer(responder=_responder) as server:
        args = [sys.executable, "-m", "tests.evaluation._resume_worker", str(task_file), str(data), server.url, str(run_dir), str(tmp_path / "home")]
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if samples.is_file() and samples.read_text().count("\n") >= 8:
                break
            if proc.poll() is not None:
                raise AssertionError(f"worker ended early: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        done_before = {json.loads(line)["sample_id"] for line in samples.read_text().splitlines() if line.endswith("}")}
        assert 8 <= len(done_before) < N
        # Let the server finish reading what the dead process had sent before counting it.
        time.sleep(0.3)
        settle = time.monotonic() + 10
        while server.in_flight and time.monotonic() < settle:
            time.sleep(0.02)
        asked_before = len(server.chat_requests())

        finished = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert finished.returncode == 0, finished.stderr
        asked_again = _asked(server)[asked_before:]

    # The second process asked only for samples the first had not recorded.
    again_ids = {q.split("*")[1].split("?")[0] for q in asked_again}
    assert again_ids.isdisjoint(done_before)
    assert len(asked_again) == N - len(done_before)

    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [r["sample_id"] for r in lines] == [str(i) for i in range(N)]  # every sample once, in order
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["counts"]["samples"] == N and resumed["counts"]["errors"] == 0
    assert resumed["counts"]["resumed"] == len(done_before)

    # Same scores as a run that was never interrupted.
    with FakeOpenAIServer(responder=_responder) as server:
        settings = Settings.load(base_url=server.url, home=tmp_path / "home2", data_dir=data, max_retries=0)
        clean = run_task(TaskRegistry().get(str(task_file)), client=OpenAIChatClient(settings), settings=settings,
                         options=RunOptions(concurrency=8, use_cache=False), run_dir=tmp_path / "clean")
    assert resumed["metrics"]["exact_match,strict"]["value"] == clean.metrics["exact_match,strict"].value == (N - 8) / N
    clean_lines = [json.loads(line) for line in (tmp_path / "clean" / "samples.jsonl").read_text().splitlines()]
    assert [(r["sample_id"], r["metrics"]) for r in lines] == [(r["sample_id"], r["metrics"]) for r in clean_lines]
