"""The launcher manages an engine process: start, wait for health, state file, status, stop, clear failures.

A tiny stand-in engine (the fake OpenAI server run as a subprocess) replaces vLLM so these tests take seconds.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from llm_backend import launcher
from llm_backend.engines import EngineCommand
from llm_backend.errors import ConfigError, EngineStartError
from llm_backend.launcher import ServerManager, discovered_base_url, pid_alive
from llm_backend.model_assets import ResolvedModel
from llm_backend.settings import Settings

FAKE_ENGINE = (
    "import sys, time; from llm_backend.testing import FakeOpenAIServer; "
    "s = FakeOpenAIServer(models=['tiny'], port=int(sys.argv[1])).start(); print('fake engine up', flush=True); "
    "time.sleep(3600)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, list[str]]:
    """Make the launcher start a fake engine; tests may change ``argv`` before starting."""
    spec: dict[str, list[str]] = {"argv": []}
    monkeypatch.setattr(launcher, "resolve_model", lambda name, engine, models_dir: ResolvedModel(tmp_path, "tiny", "hf", None))
    monkeypatch.setattr(ServerManager, "command", lambda self, model: EngineCommand(spec["argv"] or [sys.executable, "-c", FAKE_ENGINE, str(self.settings.port)], {}, "/health"))
    return spec


def test_start_status_stop(fake_engine: dict[str, list[str]], tmp_path: Path) -> None:
    port = free_port()
    settings = Settings.load(home=tmp_path, port=port, start_timeout=30)
    manager = ServerManager(settings, name="t")
    handle = manager.start(detach=True)
    try:
        assert handle.base_url == f"http://127.0.0.1:{port}/v1"
        status = manager.status()
        assert status["running"] and status["healthy"] and status["model"] == "tiny"
        assert "fake engine up" in Path(str(handle.log_path)).read_text()
        # Client commands find the managed server without being told its URL.
        assert discovered_base_url(Settings.load(home=tmp_path), name="t") == handle.base_url
        with pytest.raises(ConfigError, match="already running"):
            manager.start(detach=True)
    finally:
        assert manager.stop(timeout=5)
    assert handle.pid is not None and not pid_alive(handle.pid)
    assert manager.status()["running"] is False
    assert manager.stop() is False


def test_engine_crash_during_startup_shows_log_tail(fake_engine: dict[str, list[str]], tmp_path: Path) -> None:
    fake_engine["argv"] = [sys.executable, "-c", "import sys; print('RuntimeError: not enough memory for KV cache'); sys.exit(3)"]
    manager = ServerManager(Settings.load(home=tmp_path, port=free_port(), start_timeout=30), name="crash")
    with pytest.raises(EngineStartError, match="exited with code 3(.|\n)*not enough memory for KV cache"):
        manager.start(detach=True)
    assert manager.read_state() is None


def test_startup_timeout_kills_the_engine(fake_engine: dict[str, list[str]], tmp_path: Path) -> None:
    fake_engine["argv"] = [sys.executable, "-c", "import time; print('loading...', flush=True); time.sleep(60)"]
    manager = ServerManager(Settings.load(home=tmp_path, port=free_port(), start_timeout=2), name="slow")
    with pytest.raises(EngineStartError, match="did not become healthy within 2 s(.|\n)*loading"):
        manager.start(detach=True)
    assert manager.read_state() is None


def test_port_in_use_is_refused(fake_engine: dict[str, list[str]], tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} .* already in use"):
            ServerManager(Settings.load(home=tmp_path, port=port)).start()


def test_missing_checkpoint_path_is_a_clear_error(tmp_path: Path) -> None:
    manager = ServerManager(Settings.load(home=tmp_path, port=free_port(), serve_model=str(tmp_path / "no-such-checkpoint")))
    with pytest.raises(ConfigError, match="does not exist"):
        manager.start()


def test_stale_state_file_is_ignored(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path)
    settings.run_dir.mkdir(parents=True)
    (settings.run_dir / "default.json").write_text(
        '{"name": "default", "engine": "vllm", "base_url": "http://127.0.0.1:1/v1", "model": "m", "pid": 999999, "log_path": null, "started_at": 0}'
    )
    assert ServerManager(settings).read_state() is None
    assert discovered_base_url(settings) == settings.base_url
