"""Fixtures for evaluation tests: the shared benchmark data (when present) and tiny synthetic tasks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("RAGENT_TEST_DATA", REPO.parent / "shared" / "data"))
BENCH_PY = REPO / ".venv-bench" / "bin" / "python"


@pytest.fixture
def shared_data() -> Path:
    """The shared benchmark data directory; tests that need it are skipped without it."""
    if not (SHARED_DATA / "gsm8k" / "test.jsonl").is_file():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA} (set RAGENT_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture
def bench_python() -> Path:
    """The interpreter of .venv-bench (lm-eval, bfcl-eval) for reference tests; skipped when absent."""
    if not BENCH_PY.exists():
        pytest.skip(".venv-bench not installed (see requirements-bench.txt)")
    return BENCH_PY


TINY_TASK = """\
name: tiny
version: "1"
description: a tiny arithmetic task for tests
kind: generate
data: {format: jsonl, dir: tiny, test: test.jsonl, fewshot: train.jsonl}
prompt:
  text: "Q: {{question}}\\nA:"
  target: "{{answer}}"
fewshot: {n: 1, sampler: first_n}
generation: {max_tokens: 16, temperature: 0.0, stop: ["Q:"]}
filters:
  strict: [{function: regex, pattern: "#### (\\\\-?[0-9]+)"}]
  flexible: [{function: last_number}]
metrics: [{name: exact_match}]
primary_metric: exact_match,strict
"""


def write_tiny(data_dir: Path, n: int = 6) -> None:
    """A jsonl task folder: question i, answer 2*i."""
    folder = data_dir / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.jsonl").write_text("".join(json.dumps({"question": f"2*{i}?", "answer": str(2 * i)}) + "\n" for i in range(n)))
    (folder / "train.jsonl").write_text(json.dumps({"question": "2*10?", "answer": "#### 20"}) + "\n")


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    """(task YAML path, data dir) of the tiny task."""
    data = tmp_path / "data"
    write_tiny(data)
    task = tmp_path / "tiny.yaml"
    task.write_text(TINY_TASK)
    return task, data
