"""Start, watch and stop an inference engine as a managed subprocess (``ragent serve``).

A started server leaves a state file ``$RAGENT_HOME/run/<name>.json`` (pid, URL, model, log file) so that
``ragent serve --status`` / ``--stop`` and every client command find it. The engine writes to
``$RAGENT_HOME/run/<name>.log``; when it dies during start-up the error shows the tail of that log.

Example::

    manager = ServerManager(Settings.load(port=8000))
    handle = manager.start(detach=True)     # returns once /health answers
    print(handle.base_url)                  # http://127.0.0.1:8000/v1
    manager.stop()
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llm_backend.engines import EngineCommand, llamacpp_command, vllm_command
from llm_backend.errors import BackendUnavailableError, ConfigError, EngineStartError
from llm_backend.model_assets import ResolvedModel, resolve_model
from llm_backend.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerHandle:
    """A running (or external) server, as recorded in the state file."""

    name: str
    engine: str
    base_url: str
    model: str
    pid: int | None
    log_path: str | None
    started_at: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (empty when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64_000))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServerManager:
    """Manages one named server (default name ``default``) under the data home."""

    def __init__(self, settings: Settings, *, name: str = "default") -> None:
        self.settings = settings
        self.name = name
        self.state_path = settings.run_dir / f"{name}.json"
        self.log_path = settings.run_dir / f"{name}.log"

    # -- state ----------------------------------------------------------------------------------------------------
    def read_state(self) -> ServerHandle | None:
        """The recorded server, or ``None``. A record whose process died is removed."""
        try:
            data = json.loads(self.state_path.read_text())
            handle = ServerHandle(**data)
        except (OSError, ValueError, TypeError):
            return None
        if handle.pid is not None and not pid_alive(handle.pid):
            self.state_path.unlink(missing_ok=True)
            return None
        return handle

    def _write_state(self, handle: ServerHandle) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(handle.to_json())
        os.replace(tmp, self.state_path)

    def status(self) -> dict[str, Any]:
        """What ``ragent serve --status`` prints: running?, URL, model, pid, health, log file and its tail."""
        handle = self.read_state()
        if handle is None:
            return {"running": False, "name": self.name, "log": str(self.log_path) if self.log_path.exists() else None}
        root = handle.base_url.removesuffix("/v1")
        healthy = http_ok(root + "/health") or http_ok(handle.base_url + "/models")
        return {"running": True, "healthy": healthy, **asdict(handle), "log_tail": log_tail(self.log_path, 5) if handle.log_path else ""}

    # -- start ----------------------------------------------------------------------------------------------------
    def command(self, model: ResolvedModel) -> EngineCommand:
        """The engine command for the configured engine."""
        if self.settings.engine == "vllm":
            return vllm_command(self.settings, model)
        if self.settings.engine == "llamacpp":
            return llamacpp_command(self.settings, model)
        raise ConfigError(f"engine {self.settings.engine!r} has no process to start")

    def start(self, *, detach: bool = True, progress: Callable[[str], None] | None = None) -> ServerHandle:
        """Start the engine and wait until it is healthy.

        ``detach=True`` returns once healthy and leaves the server running; ``detach=False`` also returns the
        handle once healthy, and the caller is expected to :meth:`wait` (the CLI's foreground mode).
        """
        say = progress or log.info
        existing = self.read_state()
        if existing is not None:
            raise ConfigError(
                f"a server named {self.name!r} is already running at {existing.base_url} (pid {existing.pid}, model "
                f"{existing.model}). Stop it with `ragent serve --stop`{'' if self.name == 'default' else ' --name ' + self.name}, "
                "or start another one with --name and --port."
            )
        if self.settings.engine == "external":
            return self._register_external(say)
        if port_in_use(self.settings.host, self.settings.port):
            raise ConfigError(
                f"port {self.settings.port} on {self.settings.host} is already in use by another program. "
                "Choose another with --port, or stop that program."
            )
        model = resolve_model(self.settings.serve_model, self.settings.engine, self.settings.models_dir)
        cmd = self.command(model)
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        say(f"starting {self.settings.engine} on {self.settings.host}:{self.settings.port} with {model.served_name} (log: {self.log_path})")
        log_fh = self.log_path.open("wb")
        env = {**os.environ, **cmd.env}
        # The engine gets its own process group so that stop() can end it and every worker it spawned.
        proc = subprocess.Popen(cmd.argv, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log_fh.close()
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::") else self.settings.host
        root = f"http://{host}:{self.settings.port}"
        handle = ServerHandle(self.name, self.settings.engine, root + "/v1", model.served_name, proc.pid, str(self.log_path), time.time())
        self._write_state(handle)
        try:
            self._wait_healthy(proc, root + cmd.health_path, say)
        except BaseException:
            self._terminate(proc.pid)
            self.state_path.unlink(missing_ok=True)
            raise
        say(f"ready: {handle.base_url} serves {model.served_name} (pid {proc.pid})")
        self._proc = proc
        return handle

    def _wait_healthy(self, proc: subprocess.Popen[bytes], url: str, say: Callable[[str], None]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        next_note = time.monotonic() + 30
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise EngineStartError(
                    f"the {self.settings.engine} engine exited with code {code} during start-up. Last lines of "
                    f"{self.log_path}:\n{log_tail(self.log_path)}"
                )
            if http_ok(url):
                return
            if time.monotonic() > next_note:
                say(f"still starting ({int(time.monotonic() - deadline + self.settings.start_timeout)} s; vLLM on CPU needs about 2 minutes)")
                next_note += 30
            time.sleep(1.0)
        raise EngineStartError(
            f"the {self.settings.engine} engine did not become healthy within {self.settings.start_timeout:.0f} s "
            f"(raise --start-timeout). Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def _register_external(self, say: Callable[[str], None]) -> ServerHandle:
        from llm_backend.client import OpenAIChatClient

        client = OpenAIChatClient(self.settings)
        try:
            names = client.models()
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"external server check failed: {exc}") from exc
        model = self.settings.model or (names[0] if names else "")
        if self.settings.model and names and self.settings.model not in names:
            from llm_backend.errors import ModelNotFoundError

            raise ModelNotFoundError(self.settings.model, names, self.settings.base_url)
        handle = ServerHandle(self.name, "external", self.settings.base_url, model, None, None, time.time())
        self._write_state(handle)
        say(f"registered external server {self.settings.base_url} (model {model}); client commands will use it")
        return handle

    # -- wait / stop ----------------------------------------------------------------------------------------------
    def wait(self) -> int:
        """Block until the engine started by :meth:`start` exits (Ctrl-C stops it cleanly). Returns its exit code."""
        proc: subprocess.Popen[bytes] | None = getattr(self, "_proc", None)
        if proc is None:
            raise ConfigError("no engine process was started by this manager")
        try:
            return proc.wait()
        except KeyboardInterrupt:
            self.stop()
            return 130
        finally:
            self.state_path.unlink(missing_ok=True)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the recorded server (SIGTERM to its process group, SIGKILL after ``timeout``). True if one ran."""
        handle = self.read_state()
        self.state_path.unlink(missing_ok=True)
        if handle is None or handle.pid is None:
            return handle is not None
        self._terminate(handle.pid, timeout)
        return True

    @staticmethod
    def _terminate(pid: int, timeout: float = 30.0) -> None:
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not pid_alive(pid):
                break
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def discovered_base_url(settings: Settings, name: str = "default") -> str:
    """The URL clients should use: the configured one if given explicitly, else the managed server's, else the
    default. Lets ``ragent serve --port 8123 --detach`` be followed by a plain ``ragent chat``."""
    if "base_url" in settings.model_fields_set or os.environ.get("RAGENT_BASE_URL"):
        return settings.base_url
    handle = ServerManager(settings, name=name).read_state()
    return handle.base_url if handle else settings.base_url
