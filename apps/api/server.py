"""Run an ASGI app on uvicorn: in the foreground (``ragent api``, ``ragent mcp --http``) or in a background thread
(tests and benchmarks, which need a real HTTP service on a free port).

Example::

    with ServerThread(create_app(settings)) as server:
        OpenAI(base_url=server.url + "/v1", api_key="-").models.list()
"""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from llm_backend.errors import RagentError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ServerThread:
    """uvicorn serving ``app`` in a daemon thread on ``host``:``port`` (0 = a free port)."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, start_timeout: float = 30.0) -> None:
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self.host = host
        self.start_timeout = start_timeout
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (without a path)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServerThread:
        """Start serving and wait until the socket is bound."""
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RagentError(f"the HTTP service did not start on {self.host}:{self.config.port} within {self.start_timeout:.0f} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Ask the server to finish and wait for its thread."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(app: Any, *, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` in the foreground until Ctrl-C (uvicorn handles the signals)."""
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5)
