"""Agent tools from MCP servers, through the official `mcp` client against a real MCP server (stdio and streamable
HTTP): offered like our own tools, arguments validated against the server's schema, errors as observations."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from core.agent import Agent
from core.tools import resolve_tools
from core.tools.mcp_client import McpServerError, check_schema, close_all, mcp_tools, to_tool
from llm_backend.errors import ConfigError
from llm_backend.settings import Settings
from llm_backend.testing import FakeReply, ScriptedChatClient

SERVER = Path(__file__).with_name("mcp_echo_server.py")
ECHO: dict[str, Any] = {"command": sys.executable, "args": [str(SERVER)]}


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    close_all()


def _settings(**servers: Any) -> Settings:
    return Settings.load(mcp_servers=servers)


def test_stdio_server_tools_are_offered_like_ours() -> None:
    tools = {t.name: t for t in mcp_tools("mcp:echo", settings=_settings(echo=ECHO))}
    assert set(tools) == {"add", "fail", "shout_loud"}  # the dotted name made OpenAI-safe
    spec = tools["add"].to_openai()["function"]
    assert spec["parameters"]["properties"]["a"]["type"] == "integer" and "MCP server 'echo'" in spec["description"]
    assert tools["add"].run({"a": 2, "b": 3}).content == "5"
    assert tools["shout_loud"].run('{"text": "hi"}').content == "HI"


def test_arguments_are_validated_against_the_server_schema_before_the_call() -> None:
    add = next(t for t in mcp_tools("mcp:echo", settings=_settings(echo=ECHO)) if t.name == "add")
    out = add.run({"a": "two", "b": 3})
    assert out.fault == "invalid_arguments" and "'a'" in (out.error or "")


def test_server_errors_are_observations() -> None:
    fail = next(t for t in mcp_tools("mcp:echo", settings=_settings(echo=ECHO)) if t.name == "fail")
    out = fail.run({"message": "disk on fire"})
    assert out.fault == "tool_error" and "disk on fire" in out.content


def test_agent_uses_mcp_tools_from_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGENT_MCP_SERVERS", json.dumps({"echo": {**ECHO, "tools": ["add"]}}))
    client = ScriptedChatClient([
        FakeReply(tool_calls=[{"name": "add", "arguments": {"a": 40, "b": 2}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "42"}}]),
    ])
    tools = resolve_tools(["calculator", "mcp"])
    assert [t.name for t in tools] == ["calculator", "add"]  # `tools:` in the config keeps only add
    result = Agent(client, tools).run("What is 40 + 2?")
    assert result.final_answer == "42" and result.steps[0].tool_calls[0].observation == "42"
    offered = [t["function"]["name"] for t in client.calls[0]["tools"]]
    assert "add" in offered


def test_streamable_http_server_by_url() -> None:
    from apps.api.server import ServerThread
    from tests.core.tools.mcp_echo_server import server

    with ServerThread(server.streamable_http_app()) as http:
        tools = {t.name: t for t in mcp_tools("mcp", settings=_settings(web={"url": http.url + "/mcp"}))}
        assert tools["add"].run({"a": 1, "b": 1}).content == "2"
        close_all()  # the server goes away while the tool is still offered: the call is an observation, not a crash
        out = tools["add"].run({"a": 1, "b": 1})
        assert out.fault == "tool_error" and "not connected" in out.content


def test_config_errors_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'echo'"):
        mcp_tools("mcp:ech", settings=_settings(echo=ECHO))
    with pytest.raises(ConfigError, match="no MCP servers are configured"):
        mcp_tools("mcp", settings=_settings())
    with pytest.raises(McpServerError, match="could not be reached"):
        mcp_tools("mcp", settings=_settings(broken={"command": "/nonexistent/mcp-server"}))
    with pytest.raises(ConfigError, match="exactly one of"):
        _settings(both={"command": "x", "url": "http://127.0.0.1:1/mcp"})


def test_invalid_schemas_are_refused() -> None:
    assert check_schema({"properties": {"x": {"type": "string"}}})["type"] == "object"
    for bad in ({"type": "array"}, {"type": "object", "properties": {"x": {"type": "no-such-type"}}}, ["x"]):
        with pytest.raises(ValueError):
            check_schema(bad)
    spec = SimpleNamespace(name="bad", title=None, description="d", input_schema={"type": "object", "required": "x"})
    with pytest.raises(ValueError, match="not valid JSON Schema"):
        to_tool(SimpleNamespace(name="s"), spec)  # type: ignore[arg-type]


def test_public_settings_hide_mcp_server_environment() -> None:
    settings = _settings(gh={"command": "gh-mcp", "env": {"GITHUB_TOKEN": "ghp_secret"}})
    assert "ghp_secret" not in json.dumps(settings.public_dict())
