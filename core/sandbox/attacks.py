"""The sandbox attack suite: hostile programs and how to tell that each was contained.

Used by the tests (``tests/core/sandbox``) and by ``benchmarks/agent.py`` (the table in ``docs/benchmarks.md``).
Each :class:`Attack` is a program plus the evidence of containment: secrets it must not print, a host file it must
not create, and whether the sandbox must have reported a violation. Programs may use ``{secret_path}``,
``{outside_path}`` and ``{secret}``, filled in by :func:`run_attack` with a fresh host folder.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.sandbox.bubblewrap import Sandbox, SandboxResult

SECRET_ENV = "RAGENT_ATTACK_SECRET"


@dataclass(frozen=True)
class Attack:
    """One hostile program. ``must_report``: the sandbox must name a violation (else containment is shown by the
    absence of the secret / the host file, and ``explanation`` says why)."""

    name: str
    code: str
    must_report: bool = True
    explanation: str = ""


@dataclass(frozen=True)
class AttackOutcome:
    """Whether an attack was contained, and why."""

    attack: str
    contained: bool
    reason: str
    result: SandboxResult


ATTACKS: tuple[Attack, ...] = (
    Attack("read /etc/passwd", "print(open('/etc/passwd').read())"),
    Attack("read ~/.ssh/id_rsa", "import os\nprint(open(os.path.expanduser('/root/.ssh/id_rsa')).read())"),
    Attack("read a host file by absolute path", "print(open('{secret_path}').read())"),
    Attack("write outside the work folder", "open('{outside_path}', 'w').write('pwned')"),
    Attack("write into /usr", "open('/usr/lib/pwned.txt', 'w').write('pwned')"),
    Attack("open a TCP connection", "import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)"),
    Attack("resolve a host name (DNS)", "import socket\nprint(socket.gethostbyname('example.com'))"),
    Attack("raw socket through _socket", "import _socket\ns = _socket.socket(2, 3, 1)\nprint('raw socket', s)"),
    Attack("fork bomb", "import os\nwhile True:\n    os.fork()"),
    Attack("thread bomb", "import threading, time\nfor _ in range(10_000):\n    threading.Thread(target=time.sleep, args=(30,)).start()"),
    Attack("memory bomb", "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))"),
    Attack("infinite loop", "while True:\n    pass"),
    Attack("os.system", "import os\nos.system('cat /etc/passwd')"),
    Attack("subprocess", "import subprocess\nprint(subprocess.run(['id'], capture_output=True).stdout)"),
    Attack("os.execv a shell", "import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])"),
    Attack(
        "subprocess with the audit hook bypassed",
        "import subprocess, sys, types\nfake = types.SimpleNamespace(**{k: getattr(sys, k) for k in dir(sys) if not k.startswith('__')})\n"
        "fake.audit = lambda *args: None\nsubprocess.sys = fake\nprint(subprocess.run(['/usr/bin/id'], capture_output=True))",
    ),
    Attack("mkdir outside the work folder (no audit event)", "import os\nos.mkdir('/usr/pwned')"),
    Attack("ctypes: call libc system()", "import ctypes\nctypes.CDLL('libc.so.6').system(b'id')"),
    Attack("_ctypes.dlopen bypass", "import _ctypes\nprint(_ctypes.dlopen('libc.so.6'))"),
    Attack(
        "environment secrets",
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ', 'rb').read())",
        must_report=False,
        explanation="environment cleared: the host's secret is not visible inside",
    ),
    Attack(
        "host processes' environment via /proc",
        "import os\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n        print(pid, open(f'/proc/{pid}/environ', 'rb').read())",
        must_report=False,
        explanation="PID namespace: only the sandbox's own processes are visible, with empty environments",
    ),
    Attack("huge output", "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"),
    Attack("fill the disk", "f = open('big.bin', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))"),
    Attack(
        "symlink out of the work folder",
        "import os\nos.symlink('/etc', 'etc')\nprint(open('etc/passwd').read())",
        must_report=False,
        explanation="links resolve inside the sandbox's own file system, where the host's /etc does not exist",
    ),
)


def _check(attack: Attack, result: SandboxResult, secret: str, outside: Path) -> tuple[bool, str]:
    leaked = secret in result.stdout or secret in result.stderr
    if leaked:
        return False, "the secret appeared in the program's output"
    if outside.exists():
        return False, f"the program created {outside} on the host"
    if attack.name == "environment secrets" and SECRET_ENV in result.stdout:
        return False, "the secret's variable is visible"
    if result.violation:
        return True, result.violation
    if attack.must_report:
        return False, f"no violation reported (exit {result.exit_code}): {result.stderr.strip()[-200:]}"
    return True, attack.explanation


def run_attack(attack: Attack, sandbox: Sandbox | None = None) -> AttackOutcome:
    """Run one attack against ``sandbox`` with a fresh host secret and target, and judge containment."""
    box = sandbox or Sandbox(timeout_s=5, memory_mb=256, max_output_bytes=200_000)
    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ragent-attack-") as tmp:
        secret_path = Path(tmp) / "secret.txt"
        secret_path.write_text(secret)
        outside = Path(tmp) / "pwned.txt"
        code = attack.code.replace("{secret_path}", str(secret_path)).replace("{outside_path}", str(outside))
        previous = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = secret
        try:
            result = box.run(code)
        finally:
            if previous is None:
                os.environ.pop(SECRET_ENV, None)
            else:
                os.environ[SECRET_ENV] = previous
        contained, reason = _check(attack, result, secret, outside)
    return AttackOutcome(attack.name, contained, reason, result)


def run_attack_suite(sandbox: Sandbox | None = None) -> list[AttackOutcome]:
    """Every attack in :data:`ATTACKS`, in order."""
    return [run_attack(a, sandbox) for a in ATTACKS]
