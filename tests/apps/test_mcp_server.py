"""Contract tests of `ragent mcp` through the official `mcp` client: stdio (the command a Claude Desktop-style client
starts) and streamable HTTP, with the fake model server behind kb_ask."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

from apps.api.server import ServerThread
from apps.mcp_server import build_server, http_app
from llm_backend.settings import Settings
from llm_backend.testing import FakeOpenAIServer
from tests.apps.api_helpers import QUESTION
from tests.apps.conftest import GUIDE_FILES, REPO, cited_reply, home, make_kb

KB_TOOLS = {"kb_list", "kb_search", "kb_ask"}


@pytest.fixture
def backend() -> Iterator[FakeOpenAIServer]:
    make_kb("guide", GUIDE_FILES)
    with FakeOpenAIServer(responder=cited_reply, models=["fake-model"]) as server:
        yield server


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def _exercise(client: Client) -> None:
    """What every transport must do: list the tools, call each kind, report a bad call as a tool error."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert KB_TOOLS | {"calculator", "current_datetime"} <= names, names
    listed = await client.call_tool("kb_list", {})
    assert not listed.is_error and "guide" in _text(listed)
    found = await client.call_tool("kb_search", {"knowledge_base": "guide", "query": "start the model server", "k": 2})
    hits = json.loads(_text(found)) if _text(found).startswith("[") else found.structured_content["result"]
    assert hits[0]["source"].endswith("serving.md") and "ragent serve --detach" in hits[0]["text"]
    asked = await client.call_tool("kb_ask", {"knowledge_base": "guide", "question": QUESTION})
    assert not asked.is_error and "[1]" in _text(asked) and "serving.md" in _text(asked)
    computed = await client.call_tool("calculator", {"expression": "2 + 3 * 4"})
    assert _text(computed) == "14"
    missing = await client.call_tool("kb_search", {"knowledge_base": "guid", "query": "x"})
    assert missing.is_error and "Did you mean 'guide'" in _text(missing)


async def test_stdio_server_started_as_a_client_would(backend: FakeOpenAIServer) -> None:
    env = {**os.environ, "RAGENT_HOME": str(home()), "RAGENT_BASE_URL": backend.url, "RAGENT_MAX_RETRIES": "0", "PYTHONPATH": str(REPO)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "apps.cli.main", "mcp", "--tools", "calculator,datetime"], env=env, cwd=str(REPO))
    async with Client(params, read_timeout_seconds=60) as client:
        await _exercise(client)


async def test_streamable_http_server(backend: FakeOpenAIServer) -> None:
    server = build_server(Settings.load(base_url=backend.url, max_retries=0), tools=("calculator", "datetime"))
    with ServerThread(http_app(server)) as http:
        async with Client(http.url + "/mcp", read_timeout_seconds=60) as client:
            await _exercise(client)


def test_http_key_is_required_when_configured(backend: FakeOpenAIServer) -> None:
    server = build_server(Settings.load(base_url=backend.url, max_retries=0), tools=())
    with ServerThread(http_app(server, key="s3cret")) as http:
        response = httpx.post(http.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_unknown_builtin_tool_is_refused() -> None:
    from llm_backend.errors import ConfigError

    with pytest.raises(ConfigError, match="calculator, datetime, python"):
        build_server(Settings.load(), tools=("teleport",))

