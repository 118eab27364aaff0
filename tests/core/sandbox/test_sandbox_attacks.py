"""The sandbox: ordinary programs run, every attack of the suite is contained and the reason is reported, and
without bubblewrap nothing runs at all (fail closed)."""

from __future__ import annotations

import shutil

import pytest

from core.sandbox import Sandbox, SandboxUnavailableError, run_code
from core.sandbox.attacks import ATTACKS, run_attack

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (apt-get install bubblewrap)")


@needs_bwrap
def test_ordinary_program_runs_with_stdin_and_exit_code() -> None:
    result = run_code("import sys\nname = sys.stdin.read().strip()\nprint(f'hello {name}')\nsys.exit(3)", stdin="world")
    assert result.stdout == "hello world\n"
    assert result.exit_code == 3
    assert result.violation is None and not result.timed_out


@needs_bwrap
def test_program_can_use_its_work_folder_and_the_standard_library() -> None:
    code = "import json, pathlib\npathlib.Path('data.json').write_text(json.dumps([1, 2]))\nprint(json.loads(open('data.json').read())[1])"
    result = run_code(code)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "2"


@needs_bwrap
def test_ordinary_exception_is_not_a_violation_and_shows_only_user_frames() -> None:
    result = run_code("def f():\n    return 1 / 0\nf()")
    assert result.exit_code == 1
    assert result.violation is None
    assert "ZeroDivisionError" in result.stderr
    assert 'File "/work/main.py", line 2, in f' in result.stderr
    assert "launcher" not in result.stderr and "runpy" not in result.stderr


@needs_bwrap
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_contained_with_reason(attack) -> None:  # type: ignore[no-untyped-def]
    outcome = run_attack(attack, Sandbox(timeout_s=3, memory_mb=256, max_output_bytes=100_000))
    assert outcome.contained, f"{attack.name}: {outcome.reason}\nstdout={outcome.result.stdout[:300]!r}\nstderr={outcome.result.stderr[-300:]!r}"
    assert outcome.reason
    if attack.must_report:
        assert outcome.result.violation == outcome.reason


def test_attack_suite_is_large_enough() -> None:
    assert len(ATTACKS) >= 15


@needs_bwrap
def test_timeout_kills_the_program() -> None:
    result = run_code("import time\ntime.sleep(60)", timeout_s=1)
    assert result.timed_out
    assert result.violation and result.violation.startswith("time limit")


@needs_bwrap
def test_output_is_capped() -> None:
    result = run_code("print('y' * 50_000)", max_output_bytes=1000)
    assert len(result.stdout) <= 1000
    assert result.violation and result.violation.startswith("output limit")


def test_fails_closed_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        run_code("print('this must never run unprotected')")


def test_interpreter_outside_usr_is_refused() -> None:
    with pytest.raises(SandboxUnavailableError, match="/usr"):
        Sandbox(python="/opt/elsewhere/python3").run("print(1)")


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        Sandbox(memory_mb=1)
