"""`ragent serve | chat | models` through typer's runner, against the fake server."""

from __future__ import annotations

import json
import socket

from typer.testing import CliRunner

from apps.cli.main import app
from llm_backend.testing import FakeOpenAIServer, FakeReply

runner = CliRunner()


def test_help_everywhere() -> None:
    for args in (["--help"], ["serve", "--help"], ["chat", "--help"], ["models", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_chat_streams_one_answer() -> None:
    with FakeOpenAIServer(["Bonjour tout le monde"]) as server:
        result = runner.invoke(app, ["chat", "Say hello in French", "--base-url", server.url])
    assert result.exit_code == 0, result.output
    assert "Bonjour tout le monde" in result.output


def test_interactive_chat_keeps_history() -> None:
    with FakeOpenAIServer(["first answer", "second answer"]) as server:
        result = runner.invoke(app, ["chat", "--base-url", server.url], input="hello\nand then?\n/exit\n")
        second = server.chat_requests()[1]["messages"]
    assert result.exit_code == 0, result.output
    assert "first answer" in result.output and "second answer" in result.output
    assert [m["role"] for m in second] == ["user", "assistant", "user"]


def test_chat_reports_interrupted_stream_in_interactive_mode() -> None:
    with FakeOpenAIServer([FakeReply(text="partial answer that breaks", drop_after=2)]) as server:
        result = runner.invoke(app, ["chat", "--base-url", server.url], input="hi\n/exit\n")
    assert "[interrupted]" in result.output


def test_no_server_is_a_clear_error_not_a_traceback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = runner.invoke(app, ["chat", "hi", "--base-url", f"http://127.0.0.1:{port}/v1"], env={"RAGENT_MAX_RETRIES": "0"})
    assert result.exit_code == 1
    assert "not reachable" in result.output and "ragent serve" in result.output
    assert "Traceback" not in result.output


def test_wrong_model_lists_served() -> None:
    with FakeOpenAIServer(models=["tiny"]) as server:
        result = runner.invoke(app, ["chat", "hi", "--base-url", server.url, "--model", "big"])
    assert result.exit_code == 1
    assert "Served models: tiny" in result.output


def test_models_json() -> None:
    with FakeOpenAIServer(models=["a", "b"]) as server:
        result = runner.invoke(app, ["models", "--json", "--base-url", server.url])
    data = json.loads(result.output)
    assert data["served"] == ["a", "b"]
    assert "qwen2.5-coder-0.5b-instruct" in data["offline"]


def test_serve_status_when_nothing_runs() -> None:
    result = runner.invoke(app, ["serve", "--status"])
    assert result.exit_code == 3
    assert json.loads(result.output)["running"] is False


def test_serve_missing_checkpoint() -> None:
    result = runner.invoke(app, ["serve", "--model", "/no/such/checkpoint", "--port", "8999"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
