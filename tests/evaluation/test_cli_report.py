"""The `ragent eval` commands through typer's runner, against a fake OpenAI server; reports and leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from apps.cli.main import app
from evaluation.leaderboard import build_leaderboard, leaderboard_markdown
from evaluation.report import load_results
from llm_backend.testing import FakeOpenAIServer, FakeReply

runner = CliRunner()


def _responder(body: dict[str, Any]) -> FakeReply:
    q = body["messages"][-1]["content"]
    i = int(q.split("*")[1].split("?")[0])
    return FakeReply(text=f"#### {2 * i}" if i != 1 else "#### 7")


def test_list_json() -> None:
    result = runner.invoke(app, ["eval", "list", "--json"])
    assert result.exit_code == 0, result.output
    names = {row["name"] for row in json.loads(result.output)}
    assert {"gsm8k", "mmlu", "humaneval", "bfcl"} <= names


def test_run_report_leaderboard(tmp_path: Path, tiny, monkeypatch) -> None:
    task_file, data = tiny
    monkeypatch.setenv("RAGENT_HOME", str(tmp_path / "home"))
    with FakeOpenAIServer(responder=_responder, models=["model-a"]) as server:
        result = runner.invoke(app, ["eval", "run", str(task_file), "--data-dir", str(data), "--base-url", server.url, "--json", "--concurrency", "2"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.output[result.output.index("{"):])
    assert out["model"] == "model-a" and out["counts"]["scored"] == 6
    assert out["metrics"]["exact_match,strict"]["value"] == 5 / 6
    run_dir = Path(out["run_dir"])
    report = (run_dir / "report.md").read_text()
    assert "| exact_match,strict (primary) | 83.33 |" in report and "![metrics](metrics.png)" in report
    assert (run_dir / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (run_dir / "latency.png").exists()
    assert "## Examples of misses" in report and "| 1 |" in report

    # A second model on another server, then the overview and the leaderboard.
    with FakeOpenAIServer(responder=lambda b: FakeReply(text="#### 0"), models=["model-b"]) as server:
        assert runner.invoke(app, ["eval", "run", str(task_file), "--data-dir", str(data), "--base-url", server.url, "--no-report"]).exit_code == 0
    result = runner.invoke(app, ["eval", "report", "--all"])
    assert result.exit_code == 0, result.output
    runs_md = Path(result.output.strip().splitlines()[-1]).read_text()
    assert "model-a" in runs_md and "model-b" in runs_md
    result = runner.invoke(app, ["eval", "leaderboard", "--json"])
    board = json.loads(result.output)
    assert board["model-a"]["tiny"]["value"] == 5 / 6 and board["model-b"]["tiny"]["value"] == 1 / 6


def test_run_with_unreachable_server_fails_cleanly(tmp_path: Path, tiny, monkeypatch) -> None:
    task_file, data = tiny
    monkeypatch.setenv("RAGENT_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["eval", "run", str(task_file), "--data-dir", str(data), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 1
    assert "not reachable" in result.output and "resume" in result.output


def test_run_missing_data_names_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAGENT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAGENT_DATA", raising=False)
    result = runner.invoke(app, ["eval", "run", "gsm8k", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 1 and "gsm8k/test.jsonl" in result.output


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    for command in ("list", "run", "report", "leaderboard"):
        assert command in result.output


def test_leaderboard_prefers_larger_runs(tmp_path: Path) -> None:
    from evaluation.store import RunStore
    from evaluation.types import MetricValue, RunResult

    def result(model: str, value: float, n: int, finished: str) -> RunResult:
        return RunResult(run_id="x", task={"name": "gsm8k", "version": "3", "kind": "generate"}, model=model, server="s",
                         metrics={"em": MetricValue(value, 0.01, n)}, primary_metric="em", counts={"samples": n, "scored": n, "errors": 0},
                         groups={}, config={}, settings={}, provenance={"finished_at": finished}, timings={})

    for i, (model, value, n, fin) in enumerate([("a", 0.5, 200, "2026-01-01"), ("a", 0.9, 20, "2026-02-01"), ("b", 0.4, 200, "2026-01-01")]):
        RunStore(tmp_path / str(i)).write_results(result(model, value, n, fin))
    board = build_leaderboard(load_results(tmp_path))
    assert board["a"]["gsm8k"].value == 0.5 and board["a"]["gsm8k"].n == 200
    md = leaderboard_markdown(board)
    assert md.index("| a |") < md.index("| b |")


def test_report_of_grouped_run_has_group_table_and_plot(tmp_path: Path) -> None:
    from evaluation.registry import TaskRegistry
    from evaluation.report import write_run_report
    from evaluation.runner import RunOptions, run_task
    from llm_backend.settings import Settings

    from .test_runner import _LogprobClient

    folder = tmp_path / "data" / "mc" / "test"
    folder.mkdir(parents=True)
    for subject in ("astronomy", "virology"):
        (folder / f"{subject}_test.csv").write_text("question,choice0,choice1,choice2,choice3,answer\nq1?,a,b,c,d,1\nq2?,a,b,c,d,0\n")
    task = TaskRegistry().get("mmlu").with_overrides(data={"dir": "mc"})
    settings = Settings.load(home=tmp_path / "home", data_dir=tmp_path / "data")
    result = run_task(task, client=_LogprobClient({"A": -2.0, "B": -0.5, "C": -3.0, "D": -4.0}), settings=settings, options=RunOptions())
    assert set(result.groups) == {"astronomy", "virology"} and result.groups["virology"]["acc"].value == 0.5
    report = write_run_report(Path(result.run_dir)).read_text()
    assert "## By group" in report and "| astronomy | 50.00 | 2 |" in report
    assert (Path(result.run_dir) / "groups.png").exists()
