"""The evaluation dashboard, driven by Streamlit's AppTest against the fake OpenAI server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from apps.ui.jobs import JOBS
from llm_backend.testing import FakeOpenAIServer, FakeReply
from tests.apps.conftest import APP, APP_TIMEOUT, home

TINY_TASK = """\
name: tiny
version: "1"
description: doubling numbers, for the dashboard tests
kind: generate
data: {format: jsonl, dir: tiny, test: test.jsonl}
prompt:
  text: "Q: {{question}}\\nA:"
  target: "{{answer}}"
generation: {max_tokens: 16, temperature: 0.0, stop: ["Q:"]}
filters:
  flexible: [{function: last_number}]
metrics: [{name: exact_match}]
primary_metric: exact_match,flexible
"""


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """The tiny task in the user's task folder, and its data (question i: "2*i?", answer 2*i)."""
    tasks = home() / "eval" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    (tasks / "tiny.yaml").write_text(TINY_TASK)
    data = tmp_path / "data"
    (data / "tiny").mkdir(parents=True)
    (data / "tiny" / "test.jsonl").write_text("".join(json.dumps({"question": f"2*{i}?", "answer": str(2 * i)}) + "\n" for i in range(8)))
    return data


def doubling(body: dict[str, Any]) -> FakeReply:
    """Right for even i, wrong for odd i."""
    n = int(re.findall(r"2\*(\d+)\?", json.dumps(body))[-1])
    return FakeReply(text=f"The answer is {2 * n if n % 2 == 0 else 2 * n + 1}")


def _eval_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    at.run()
    at.switch_page("pages/eval_dashboard.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Evaluation"
    return at


def _texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def _start(at: AppTest, task: str, limit: int, data: Path | None) -> AppTest:
    at.selectbox(key="eval_task").set_value(task)
    at.number_input(key="eval_limit").set_value(limit)
    if data is not None:
        at.text_input(key="eval_data_dir").set_value(str(data))
    next(b for b in at.button if b.label == "Start the run").click().run()
    assert not at.exception, at.exception
    return at


def test_no_runs_yet(fake_server: FakeOpenAIServer) -> None:
    at = _eval_page()
    info = _texts(at.info)
    assert "No completed runs yet" in info and "leaderboard fills" in info
    assert "gsm8k" in at.selectbox(key="eval_task").options
    assert at.selectbox(key="eval_model").value == "fake-model"


def test_run_progress_results_samples_and_leaderboard(fake_server: FakeOpenAIServer, tiny_data: Path) -> None:
    fake_server.responder = doubling
    at = _start(_eval_page(), "tiny", 6, tiny_data)
    assert JOBS.wait_all(timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert "finished" in _texts(at.success) and "exact_match,flexible = 50.0%" in _texts(at.success)
    assert len(fake_server.chat_requests()) == 6
    # results: the runs table, the chosen run's metrics and its samples
    frames = at.dataframe
    runs = frames[0].value
    assert list(runs["task"]) == ["tiny"] and list(runs["value (%)"]) == [50.0]
    samples = frames[2].value
    assert len(samples) == 6 and list(samples["exact_match,flexible"]) == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert "50.0%" in _texts(at.metric)
    # leaderboard: one model, one task
    board = frames[3].value
    assert list(board["model"]) == ["fake-model"] and list(board["tiny"]) == [50.0]
    # the run's report was written beside its results
    run_dir = Path(runs["run"][0])
    assert (run_dir / "report.md").is_file() and (run_dir / "results.json").is_file()


def test_only_misses_filter(fake_server: FakeOpenAIServer, tiny_data: Path) -> None:
    fake_server.responder = doubling
    at = _start(_eval_page(), "tiny", 4, tiny_data)
    assert JOBS.wait_all(timeout=60)
    at.run()
    at.toggle(key="eval_only_wrong").set_value(True).run()
    samples = at.dataframe[2].value
    assert list(samples["exact_match,flexible"]) == [0.0, 0.0]


def test_server_down_is_a_message_with_the_fix(server_down: str, tiny_data: Path) -> None:
    at = _start(_eval_page(), "tiny", 2, tiny_data)
    errors = _texts(at.error)
    assert "not reachable" in errors and "ragent serve" in errors
    assert not JOBS.running("eval")


def test_missing_benchmark_data_is_a_message(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    at = _start(_eval_page(), "gsm8k", 2, tmp_path / "nowhere")
    assert JOBS.wait_all(timeout=60)
    at.run()
    assert not at.exception
    errors = _texts(at.error)
    assert "failed" in errors and "gsm8k" in errors and "RAGENT_DATA" in errors


def test_failed_requests_are_counted_as_errors(fake_server: FakeOpenAIServer, tiny_data: Path) -> None:
    fake_server.script(*[FakeReply(status=400, error="bad request") for _ in range(3)])
    at = _start(_eval_page(), "tiny", 3, tiny_data)
    assert JOBS.wait_all(timeout=60)
    at.run()
    assert not at.exception
    assert "3 samples failed" in _texts(at.warning)
