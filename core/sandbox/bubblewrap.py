"""Run untrusted Python in a separate, locked-down process: bubblewrap namespaces + rlimits + seccomp.

The boundary is the Linux kernel, not Python: `bubblewrap <https://github.com/containers/bubblewrap>`_ (the sandbox
Flatpak uses) puts the program in fresh user, mount, PID, network, IPC and UTS namespaces. Its file system is a
read-only view of ``/usr`` (the interpreter and the standard library), an empty ``/tmp`` and an empty working folder
``/work`` (both size-limited tmpfs, gone when the run ends); no ``/etc``, ``/home``, ``/root`` or host ``/proc``.
The network namespace has no interface but a downed loopback. The environment is cleared. Inside, the launcher
(:mod:`core.sandbox.launcher`) sets hard resource limits and a seccomp filter (no ``execve``, no sockets but
AF_UNIX, no ptrace/mount/namespaces/keyrings/BPF) before the user's code runs. When we are root, the whole thing runs
under a fresh unprivileged user id per run, so the process limit counts only that run's processes and nothing the
program does is done as root. The host enforces the wall-clock limit and the output limit and kills the process
tree (the PID namespace dies with its first process).

Where bubblewrap is missing or cannot create namespaces, :class:`SandboxUnavailableError` is raised: code is never
run without the sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from llm_backend.errors import RagentError

log = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("launcher.py")
SETUP_FAILED = 121  # keep in step with launcher.SETUP_FAILED
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap libseccomp2`; Fedora: `dnf install bubblewrap`)"


class SandboxUnavailableError(RagentError):
    """No working isolation mechanism on this machine; the message says what is missing and how to install it.
    This is an infrastructure fault: agents raise it instead of showing it to the model."""


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one sandboxed run.

    ``violation`` is ``None`` for a normal run (even one that failed with an ordinary exception) and otherwise a
    sentence saying which limit or rule stopped the program: the time limit, the memory limit, the output limit, the
    process limit, a blocked operation (network, starting programs, writing outside the work folder, ctypes), or a
    file outside the work folder that the program tried to open.
    """

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    violation: str | None
    duration_s: float

    @property
    def ok(self) -> bool:
        """True when the program exited with status 0 and no limit or rule was hit."""
        return self.exit_code == 0 and not self.timed_out and self.violation is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _find_python() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            return candidate
    raise SandboxUnavailableError(
        "the sandbox runs code with a system Python 3 under /usr (/usr/bin/python3 or /usr/local/bin/python3), "
        "and there is none. Install it (Debian/Ubuntu: `apt-get install -y python3`)."
    )


@dataclass(frozen=True)
class Sandbox:
    """A configured sandbox. Cheap to construct; :meth:`check` (run once, cached) proves that it works.

    Example::

        result = Sandbox(timeout_s=5).run("print(sum(range(10)))")
        assert result.stdout == "45\\n"
    """

    timeout_s: float = 10.0
    memory_mb: int = 512
    max_output_bytes: int = 1_000_000
    max_processes: int = 32
    disk_mb: int = 64
    max_open_files: int = 128
    python: str | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.memory_mb < 32 or self.max_output_bytes < 1 or self.max_processes < 1:
            raise ValueError(
                f"invalid sandbox limits: timeout_s={self.timeout_s}, memory_mb={self.memory_mb} (at least 32), "
                f"max_output_bytes={self.max_output_bytes}, max_processes={self.max_processes}"
            )

    # -- command --------------------------------------------------------------------------------------------------
    def _interpreter(self) -> str:
        python = self.python or _find_python()
        real = os.path.realpath(python)
        if not real.startswith("/usr/"):
            raise SandboxUnavailableError(
                f"the sandbox interpreter must live under /usr (it is the only system folder the sandbox sees); "
                f"{python} resolves to {real}. Use a system Python (`apt-get install -y python3`)."
            )
        return python

    def command(self, program: Path, launcher: Path) -> list[str]:
        """The bubblewrap command line that runs ``program`` (a host file) as ``/work/main.py``."""
        python = self._interpreter()
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailableError(f"the code sandbox needs bubblewrap (`bwrap`), which is not installed: {INSTALL_HINT}.")
        config = {
            "memory_bytes": self.memory_mb * 1024 * 1024,
            # CPU seconds back the wall-clock limit up for busy loops (rounded up, at least one second).
            "cpu_seconds": max(1, math.ceil(self.timeout_s) + 1),
            "max_processes": self.max_processes,
            "max_file_bytes": self.disk_mb * 1024 * 1024,
            "max_open_files": self.max_open_files,
        }
        tmpfs_bytes = str(self.disk_mb * 1024 * 1024)
        args = [bwrap, "--ro-bind", "/usr", "/usr"]
        for name in ("bin", "lib", "lib32", "lib64", "sbin"):
            target = f"/usr/{name}"
            if os.path.isdir(target) and os.path.islink(f"/{name}"):
                args += ["--symlink", f"usr/{name}", f"/{name}"]
            elif os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}") and name.startswith("lib"):
                args += ["--ro-bind", f"/{name}", f"/{name}"]
        args += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", tmpfs_bytes, "--tmpfs", "/tmp",
            "--size", tmpfs_bytes, "--tmpfs", "/work",
            "--ro-bind", str(launcher), "/.sandbox/launcher.py",
            "--ro-bind", str(program), "/work/main.py",
            "--chdir", "/work",
            "--unshare-all", "--unshare-user", *(["--disable-userns"] if _bwrap_has("--disable-userns") else []),
            "--uid", "1000", "--gid", "1000",
            "--hostname", "sandbox",
            "--die-with-parent", "--new-session",
            "--clearenv",
            "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "HOME", "/work",
            "--setenv", "LANG", "C.UTF-8",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            python, "-I", "-X", "utf8", "/.sandbox/launcher.py", json.dumps(config), "/work/main.py",
        ]
        return args

    # -- running --------------------------------------------------------------------------------------------------
    def run(self, code: str, *, stdin: str | None = None) -> SandboxResult:
        """Run ``code`` as a Python program in the sandbox and return what happened. Raises
        :class:`SandboxUnavailableError` when the sandbox cannot be set up (never runs the code unprotected)."""
        with tempfile.TemporaryDirectory(prefix="ragent-sandbox-") as tmp:
            os.chmod(tmp, 0o711)
            program = Path(tmp) / "main.py"
            program.write_text(code, encoding="utf-8")
            program.chmod(0o644)
            launcher = Path(tmp) / "launcher.py"
            shutil.copyfile(LAUNCHER, launcher)
            launcher.chmod(0o644)
            return self._execute(self.command(program, launcher), stdin)

    def _spawn_kwargs(self) -> dict[str, Any]:
        # bwrap itself gets an empty environment too: its first process stays visible inside as /proc/1.
        kwargs: dict[str, Any] = {"start_new_session": True, "close_fds": True, "env": {"PATH": "/usr/bin:/bin"}}
        if os.geteuid() == 0:
            # Root inside a user namespace would map to root outside: RLIMIT_NPROC is not enforced for root and files
            # would be created as root. A fresh, unused uid per run avoids both and isolates runs from each other.
            uid = 2_000_000 + secrets.randbelow(1_000_000_000)
            kwargs.update(user=uid, group=uid, extra_groups=[])
        return kwargs

    def _execute(self, cmd: list[str], stdin: str | None) -> SandboxResult:
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **self._spawn_kwargs(),
            )
        except OSError as exc:
            raise SandboxUnavailableError(f"could not start bubblewrap ({exc}): {INSTALL_HINT}.") from exc
        if stdin is not None:
            threading.Thread(target=_feed, args=(proc, stdin.encode()), daemon=True).start()
        out, err, timed_out, overflow = self._collect(proc, start)
        duration = time.monotonic() - start
        code = proc.returncode
        stdout = out.decode("utf-8", errors="replace")
        stderr = err.decode("utf-8", errors="replace")
        if code == 1 and stderr.startswith("bwrap:") and not stdout:
            raise SandboxUnavailableError(
                f"bubblewrap could not create the sandbox: {stderr.strip()}. It needs unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; in Docker run with "
                "--security-opt seccomp=unconfined or use a VM)."
            )
        if code == SETUP_FAILED and "ragent-sandbox: setup failed" in stderr:
            raise SandboxUnavailableError(f"the sandbox could not lock the process down: {stderr.strip()}")
        violation = classify(code, stderr, timed_out=timed_out, overflow=overflow, limits=self)
        if violation:
            log.info("sandbox: %s", violation)
        return SandboxResult(stdout, stderr, code, timed_out, violation, duration)

    def _collect(self, proc: subprocess.Popen[bytes], start: float) -> tuple[bytes, bytes, bool, bool]:
        """Read both pipes until the process ends, the time limit passes or the output limit is exceeded."""
        assert proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        buffers = {out_fd: bytearray(), err_fd: bytearray()}
        sel = selectors.DefaultSelector()
        for pipe in (proc.stdout, proc.stderr):
            sel.register(pipe, selectors.EVENT_READ)
        timed_out = overflow = False
        deadline = start + self.timeout_s
        total = 0
        try:
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in sel.select(timeout=min(remaining, 0.5)):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fileobj)
                        continue
                    room = self.max_output_bytes - total
                    buffers[key.fd] += data[: max(room, 0)]
                    total += len(data)
                    if total > self.max_output_bytes:
                        overflow = True
                        break
                if overflow:
                    break
        finally:
            sel.close()
        if timed_out or overflow:
            _kill(proc)
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()) if not (timed_out or overflow) else 5)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        return bytes(buffers[out_fd]), bytes(buffers[err_fd]), timed_out, overflow

    # -- health ---------------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Prove the mechanism works here (cached per process); raises :class:`SandboxUnavailableError` if not."""
        key = (self.python,)
        if key in _CHECKED:
            return
        result = replace(self, timeout_s=30.0).run("print('ok')")
        if result.stdout.strip() != "ok":
            raise SandboxUnavailableError(
                f"the sandbox self-test failed (exit {result.exit_code}): {result.stderr.strip()[-500:]}. {INSTALL_HINT}."
            )
        _CHECKED.add(key)


_CHECKED: set[tuple[str | None]] = set()


@functools.cache
def _bwrap_has(option: str) -> bool:
    """Whether the installed bubblewrap knows ``option`` (``--disable-userns`` came in 0.8)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return option in out.stdout + out.stderr


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:  # the program exited without reading its input
        pass


def _kill(proc: subprocess.Popen[bytes]) -> None:
    # bwrap runs in its own session; its children die with it (--die-with-parent, and the PID namespace ends
    # when its first process does).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


_NO_FILE = re.compile(r"No such file or directory: '([^']+)'")


def classify(exit_code: int, stderr: str, *, timed_out: bool, overflow: bool, limits: Sandbox) -> str | None:
    """The violation sentence for a finished run, or ``None`` when no limit or rule was involved."""
    if overflow:
        return f"output limit: the program wrote more than {limits.max_output_bytes} bytes and was stopped"
    if timed_out:
        return f"time limit: the program was still running after {limits.timeout_s:g} s and was stopped"
    if exit_code < 0:
        sig = -exit_code
        if sig == signal.SIGXCPU:
            return f"CPU time limit: the program used more than {math.ceil(limits.timeout_s) + 1} s of CPU"
        if sig == signal.SIGXFSZ:
            return f"file size limit: the program wrote a file larger than {limits.disk_mb} MB"
        if sig == signal.SIGSYS:
            return "blocked system call: the program was stopped by the seccomp filter"
        if sig == signal.SIGSEGV:
            return "crash: the program was killed by SIGSEGV (invalid memory access)"
        if sig == signal.SIGKILL:
            return f"killed: the program was stopped by SIGKILL (memory limit {limits.memory_mb} MB or process limit)"
        return f"killed by signal {signal.Signals(sig).name}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if "sandbox: " in last:
        return "blocked by the sandbox: " + last.split("sandbox: ", 1)[1]
    if last.startswith("MemoryError") or "Cannot allocate memory" in last:
        return f"memory limit: the program tried to use more than {limits.memory_mb} MB"
    if "can't start new thread" in last or (
        "Resource temporarily unavailable" in last and ("fork" in stderr or "Thread" in stderr or "BlockingIOError" in last)
    ):
        return f"process limit: the program tried to run more than {limits.max_processes} processes or threads"
    if "Operation not permitted" in last:
        return "blocked by the sandbox: operation not permitted (" + last.strip()[:200] + ")"
    if "Read-only file system" in last:
        return "blocked by the sandbox: writing outside the work folder (read-only file system)"
    if "File too large" in last:
        return f"file size limit: the program wrote a file larger than {limits.disk_mb} MB"
    if "No space left on device" in last:
        return f"disk limit: the work folder is limited to {limits.disk_mb} MB"
    if "Too many open files" in last:
        return f"open files limit: at most {limits.max_open_files} open files"
    if "Network is unreachable" in last or "Name or service not known" in last or "name resolution" in last:
        return "network access: the sandbox has no network"
    match = _NO_FILE.search(last)
    if match:
        path = match.group(1)
        # Missing files inside the work folder are ordinary bugs; absolute paths elsewhere are host files the
        # program tried to reach (the sandbox's /tmp is private and empty).
        if path.startswith("/") and not path.startswith("/work/"):
            return f"file outside the work folder: {path} does not exist in the sandbox"
    return None


def run_code(
    code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    max_output_bytes: int = 1_000_000,
    stdin: str | None = None,
) -> SandboxResult:
    """Run a Python program in the sandbox (no network, no files outside its temporary work folder, time, memory and
    output limits) and return its result. Raises :class:`SandboxUnavailableError` when no sandbox can be made.

    >>> run_code("print(6 * 7)").stdout
    '42\\n'
    """
    return Sandbox(timeout_s=timeout_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes).run(code, stdin=stdin)
