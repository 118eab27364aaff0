"""Shared fixtures. Integration tests get the real model server, started once per test session."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from llm_backend.client import OpenAIChatClient
from llm_backend.settings import Settings, default_home

# The user's data home (cached models), captured before unit tests point RAGENT_HOME at temporary folders.
REAL_HOME = default_home()

# Benchmark data (never copied into the repository): $RAGENT_DATA, else ../shared/data beside the checkout.
# Tests that need it skip without it; CI sets RAGENT_REQUIRE_DATA=1 so that a missing folder fails loudly instead.
SHARED_DATA = Path(os.environ.get("RAGENT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("RAGENT_REQUIRE_DATA") == "1" and not (SHARED_DATA / "gsm8k").is_dir():
        pytest.exit(f"RAGENT_REQUIRE_DATA=1 but the benchmark data is not at {SHARED_DATA}: set RAGENT_DATA", returncode=4)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never touch the user's data home or config (integration fixtures pass their own)."""
    home = tmp_path_factory.mktemp("ragent-home")
    monkeypatch.setenv("RAGENT_HOME", str(home))
    monkeypatch.delenv("RAGENT_CONFIG", raising=False)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@pytest.fixture(scope="session")
def real_server_url() -> Iterator[str]:
    """Base URL of the real model server (vLLM on CPU with the default model).

    Uses ``$RAGENT_TEST_BASE_URL`` when set; otherwise starts the server through our own launcher (the same code
    path as ``ragent serve``) and stops it at the end of the session.
    """
    url = os.environ.get("RAGENT_TEST_BASE_URL")
    if url:
        yield url.rstrip("/")
        return
    from llm_backend.launcher import ServerManager

    settings = Settings.load(home=REAL_HOME, port=int(os.environ.get("RAGENT_TEST_PORT", "8011")))
    manager = ServerManager(settings, name="pytest")
    handle = manager.start(detach=True)
    try:
        yield handle.base_url
    finally:
        manager.stop()


@pytest.fixture(scope="session")
def real_client(real_server_url: str) -> OpenAIChatClient:
    """Our client on the real model server."""
    return OpenAIChatClient(Settings.load(base_url=real_server_url, home=REAL_HOME))
