"""Helpers for the API and MCP tests: the real service on a free port, in front of a fake backend."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from apps.api import create_app
from apps.api.server import ServerThread
from llm_backend.settings import Settings

QUESTION = "How do I start the model server?"


def closed_port_url() -> str:
    """A base URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    return f"http://127.0.0.1:{port}/v1"


@contextmanager
def api_service(base_url: str, *, api_key: str | None = None, client: Any = None, **settings: Any) -> Iterator[str]:
    """``ragent api`` (the real app on uvicorn) in front of the backend at ``base_url``; yields its ``/v1`` URL."""
    app = create_app(Settings.load(base_url=base_url, max_retries=0, **settings), client=client, api_key=api_key)
    with ServerThread(app) as server:
        yield server.url + "/v1"
