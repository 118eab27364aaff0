"""Fixtures for the app tests: a fake model server the app is pointed at, knowledge bases in the test's data home,
and a clean Streamlit cache for every test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apps.ui import APP_PATH
from knowledge.ingest import ingest
from llm_backend.testing import FakeOpenAIServer, FakeReply

REPO = Path(__file__).resolve().parents[2]
APP = str(APP_PATH)
APP_TIMEOUT = 60.0


def cited_reply(body: dict[str, Any]) -> FakeReply:
    """A fake model that answers RAG prompts with the first sentence of passage [1] and cites it, rewrites a
    follow-up question as the question itself (as a model would when it already stands alone), and echoes the rest
    (a plain chat)."""
    messages = body.get("messages") or []
    user = str(messages[-1].get("content", "")) if messages else ""
    follow_up = re.search(r"Follow-up: (.+?)\nRewritten question:", user)
    if follow_up:
        return FakeReply(text=follow_up.group(1))
    match = re.search(r"\[1\][^\n]*\n(.+?)(?:\n\[2\]|\n\nQuestion|$)", user, re.S)
    if match:
        lines = [line for line in match.group(1).splitlines() if line.strip() and not line.startswith("#")]
        first = " ".join(" ".join(lines).split())[:120].rstrip(".")
        return FakeReply(text=f"{first} [1].", chunk_delay=0.001)
    return FakeReply(text=f"echo: {user[-80:]}")


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches() -> Iterator[None]:
    """Cached clients, statuses and retrievers must not leak between tests (each has its own home and server)."""
    import streamlit as st

    from apps.ui.jobs import JOBS

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    JOBS.wait_all(timeout=30)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible server answering like a RAG model; the app finds it through RAGENT_BASE_URL."""
    with FakeOpenAIServer(responder=cited_reply, models=["fake-model"]) as server:
        monkeypatch.setenv("RAGENT_BASE_URL", server.url)
        monkeypatch.setenv("RAGENT_MAX_RETRIES", "0")
        yield server


@pytest.fixture
def backend() -> Iterator[FakeOpenAIServer]:
    """The fake backend behind ``ragent api`` in the API tests."""
    with FakeOpenAIServer(responder=cited_reply, models=["fake-model"]) as server:
        yield server


@pytest.fixture
def api(backend: FakeOpenAIServer) -> Iterator[str]:
    """``ragent api`` (the real app on uvicorn) in front of ``backend``, with the knowledge base ``guide``."""
    from tests.apps.api_helpers import api_service

    make_kb("guide", GUIDE_FILES)
    with api_service(backend.url) as url:
        yield url


@pytest.fixture
def server_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the app at a port where nothing listens."""
    from tests.apps.api_helpers import closed_port_url

    url = closed_port_url()
    monkeypatch.setenv("RAGENT_BASE_URL", url)
    monkeypatch.setenv("RAGENT_MAX_RETRIES", "0")
    return url


def home() -> Path:
    """The test's data home (set by the autouse fixture of tests/conftest.py)."""
    from llm_backend.settings import Settings

    return Settings.load().home


def make_kb(name: str, files: dict[str, str] | None = None, *, embedder: str = "none") -> Path:
    """Create a knowledge base in the test home and ingest ``files`` (name -> text); returns the docs folder."""
    from knowledge.registry import KnowledgeBaseRegistry

    registry = KnowledgeBaseRegistry(home())
    kb = registry.create(name, embedder=embedder)
    folder = home() / "docs" / name
    folder.mkdir(parents=True, exist_ok=True)
    for filename, text in (files or {}).items():
        (folder / filename).write_text(text, encoding="utf-8")
    if files:
        report = ingest(kb, [folder])
        assert report.ok, report.failed
    return folder


GUIDE_FILES = {
    "serving.md": "# Serving models\n\n## Start the model server\n\nRun ragent serve --detach to start the model server "
    "in the background. Check it with ragent serve --status.\n",
    "knowledge.md": "# Knowledge bases\n\n## File types\n\nA knowledge base reads markdown, text, pdf, docx and html files.\n",
}
