"""The three pieces together: an agent behind `ragent api` (model `agent:mcp:ragent`) whose tools come from
`ragent mcp --http`, configured under mcp_servers:, with the fake model choosing the calls."""

from __future__ import annotations

import json

import openai
import pytest

from apps.api.server import ServerThread
from apps.mcp_server import build_server, http_app
from core.tools.mcp_client import close_all
from llm_backend.settings import Settings
from llm_backend.testing import FakeOpenAIServer, FakeReply
from tests.apps.api_helpers import api_service
from tests.apps.conftest import GUIDE_FILES, make_kb


def test_api_agent_uses_tools_of_our_own_mcp_server(monkeypatch: pytest.MonkeyPatch) -> None:
    make_kb("guide", GUIDE_FILES)
    with FakeOpenAIServer(models=["fake-model"]) as backend:
        mcp = build_server(Settings.load(base_url=backend.url, max_retries=0), tools=())
        with ServerThread(http_app(mcp)) as http:
            monkeypatch.setenv("RAGENT_MCP_SERVERS", json.dumps({"ragent": {"url": http.url + "/mcp"}}))
            backend.script(
                FakeReply(tool_calls=[{"name": "kb_search", "arguments": {"knowledge_base": "guide", "query": "start server", "k": 1}}]),
                FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "ragent serve --detach"}}]),
            )
            try:
                with api_service(backend.url) as url:
                    reply = openai.OpenAI(base_url=url, api_key="-").chat.completions.create(
                        model="agent:mcp:ragent", messages=[{"role": "user", "content": "How do I start the server?"}]
                    )
            finally:
                close_all()
    assert reply.choices[0].message.content == "ragent serve --detach"
    step = (reply.choices[0].message.model_extra or {})["steps"][0]
    assert step["tool_calls"][0]["name"] == "kb_search" and "serving.md" in step["tool_calls"][0]["observation"]
    offered = {t["function"]["name"] for t in backend.chat_requests()[0]["tools"]}
    assert {"kb_list", "kb_search", "kb_ask", "final_answer"} <= offered
