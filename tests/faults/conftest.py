"""Helpers for the fault suite: real processes (the CLI, a fake model server) that get killed or starved."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RAGENT = [sys.executable, "-m", "apps.cli.main"]


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(home: Path) -> dict[str, str]:
    """The environment for a CLI process with its own data home."""
    return {**os.environ, "PYTHONPATH": str(REPO), "RAGENT_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def ragent(args: list[str], home: Path, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``ragent ARGS`` as a process; returns its exit code, stdout and stderr."""
    return subprocess.run([*RAGENT, *args], cwd=REPO, env=cli_env(home), capture_output=True, text=True, timeout=timeout)


class ServerProcess:
    """``tests/faults/fault_server.py`` in a process of its own; :meth:`kill_mid_stream` SIGKILLs it once a request
    has been answered for ``after`` seconds (a few tokens out, the rest never)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.fault_server", str(port)], cwd=REPO, env=cli_env(REPO / ".nohome"),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.requests = 0
        self._ready = threading.Event()
        self._first = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(60):
            self.proc.kill()
            raise RuntimeError("fault server did not start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ready"):
                self._ready.set()
            elif line.startswith("request"):
                self.requests += 1
                self._first.set()

    def kill_mid_stream(self, after: float = 1.0) -> threading.Thread:
        """SIGKILL the server ``after`` seconds into the first request it gets (in a background thread)."""

        def run() -> None:
            if self._first.wait(120):
                threading.Event().wait(after)
            self.kill()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@contextmanager
def server_process(port: int | None = None) -> Iterator[ServerProcess]:
    """A fake model server process, killed at the end whatever happened."""
    server = ServerProcess(port or free_port())
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def bm25_kb(tmp_path: Path) -> Path:
    """A data home holding knowledge base ``k`` (BM25 only, one file): returns the home."""
    home = tmp_path / "home"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "retrieval.md").write_text("# Retrieval\n\nChroma stores the vectors. BM25 finds the words.\n", encoding="utf-8")
    for args in (["kb", "create", "k", "--embedder", "none"], ["kb", "ingest", "k", str(docs), "--no-progress"]):
        done = ragent(args, home)
        assert done.returncode == 0, done.stderr
    return home
