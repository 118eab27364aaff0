"""Integration: the llama.cpp engine through our launcher and client (needs `make engine-llamacpp`)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from llm_backend.client import OpenAIChatClient
from llm_backend.engines import engine_venv
from llm_backend.launcher import ServerManager
from llm_backend.settings import Settings
from tests.conftest import REAL_HOME

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (engine_venv("llamacpp") / "bin" / "python").exists(),
        reason="llama.cpp engine not built: run `make engine-llamacpp` (about 6 minutes on 2 cores)",
    ),
]


@pytest.fixture(scope="module")
def llamacpp_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    manager = ServerManager(Settings.load(engine="llamacpp", port=port, home=REAL_HOME), name="pytest-llamacpp")
    handle = manager.start(detach=True)
    try:
        yield handle.base_url
    finally:
        manager.stop()


def test_llamacpp_answers_and_streams(llamacpp_url: str) -> None:
    client = OpenAIChatClient(Settings.load(base_url=llamacpp_url, home=REAL_HOME))
    assert client.models() == ["qwen2.5-coder-0.5b-instruct"]
    text = "".join(c.delta for c in client.stream([{"role": "user", "content": "What is the capital of France? One word."}], temperature=0, max_tokens=10))
    assert "paris" in text.lower()
