"""`ragent agent run | replay | resume` and `ragent sandbox run`, through the real OpenAI client against the fake
OpenAI server (contract tests: no patching of the client)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.cli.main import app
from llm_backend.testing import FakeOpenAIServer, FakeReply

runner = CliRunner()
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def call(name: str, arguments: dict[str, object]) -> FakeReply:
    return FakeReply(tool_calls=[{"name": name, "arguments": arguments}])


def test_agent_run_shows_steps_and_prints_the_answer(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    replies = [call("calculator", {"expression": "17 * 3"}), call("final_answer", {"answer": "51"})]
    with FakeOpenAIServer(replies) as server:
        result = runner.invoke(app, ["agent", "run", "What is 17 * 3?", "--tools", "calculator", "--base-url", server.url, "--trace", str(trace)])
        bodies = server.chat_requests()
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "51"
    assert "→ calculator" in result.stderr and "← calculator: 51" in result.stderr
    # The request went out as a constrained call with our tools and final_answer.
    assert bodies[0]["tool_choice"] == "required"
    assert [t["function"]["name"] for t in bodies[0]["tools"]] == ["calculator", "final_answer"]
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert records[0]["metadata"]["tools"] == ["calculator"] and records[-1]["final_answer"] == "51"

    replay = runner.invoke(app, ["agent", "replay", str(trace)])
    assert replay.exit_code == 0
    assert "step 1" in replay.stdout and "calculator" in replay.stdout and "final answer: 51" in replay.stdout
    as_json = runner.invoke(app, ["agent", "replay", str(trace), "--json"])
    data = json.loads(as_json.stdout)
    assert data["final_answer"] == "51" and len(data["steps"]) == 2


def test_agent_run_json_and_resume_after_the_server_failed(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    with FakeOpenAIServer([call("calculator", {"expression": "2 + 2"}), FakeReply(status=500, error="engine crashed")]) as server:
        failed = runner.invoke(app, ["agent", "run", "2+2?", "--tools", "calculator", "--base-url", server.url, "--trace", str(trace), "--quiet"],
                               env={"RAGENT_MAX_RETRIES": "0"})
    assert failed.exit_code == 1
    assert "error:" in failed.stderr and "500" in failed.stderr
    with FakeOpenAIServer([call("final_answer", {"answer": "4"})]) as server:
        resumed = runner.invoke(app, ["agent", "resume", str(trace), "--base-url", server.url, "--json"])
        body = server.chat_requests()[0]
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.stdout)
    assert summary["final_answer"] == "4" and summary["steps"] == 2
    assert [m["content"] for m in body["messages"] if m["role"] == "tool"] == ["4"]


def test_agent_run_unknown_tool_is_a_clear_error() -> None:
    result = runner.invoke(app, ["agent", "run", "hi", "--tools", "calculater", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1
    assert "unknown tool 'calculater'" in result.stderr and "Did you mean 'calculator'" in result.stderr


@needs_bwrap
def test_sandbox_run_reports_output_and_violations(tmp_path: Path) -> None:
    ok = tmp_path / "ok.py"
    ok.write_text("print(sum(range(10)))\n")
    result = runner.invoke(app, ["sandbox", "run", str(ok)])
    assert result.exit_code == 0 and result.stdout == "45\n"
    evil = tmp_path / "evil.py"
    evil.write_text("import socket\nsocket.create_connection(('1.1.1.1', 80))\n")
    blocked = runner.invoke(app, ["sandbox", "run", str(evil)])
    assert blocked.exit_code == 3
    assert "violation: blocked by the sandbox: network access is not allowed" in blocked.stderr
    as_json = runner.invoke(app, ["sandbox", "run", str(evil), "--json"])
    assert json.loads(as_json.stdout)["violation"].startswith("blocked by the sandbox")
