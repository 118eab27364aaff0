"""The ``python`` tool: the model's code runs in the sandbox (:mod:`core.sandbox`), never in our process."""

from __future__ import annotations

import ast
import re

from core.sandbox import Sandbox
from core.tools.base import Tool


def print_last_expression(code: str) -> str:
    """Like an interactive session: when the program ends with a bare expression (not a ``print`` call), print its
    value, so that ``x = 6 * 7\\nx`` shows ``42``. Small models often forget the ``print``.

    >>> print_last_expression("x = 2\\nx * 21")
    'x = 2\\n__ragent_last = x * 21\\nif __ragent_last is not None:\\n    print(__ragent_last)'
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code  # the sandbox reports the syntax error with its line
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return code
    last = tree.body[-1]
    call = last.value
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print":
        return code
    lines = code.splitlines()
    head = "\n".join(lines[: last.lineno - 1])
    expr = ast.get_source_segment(code, last.value) or ast.unparse(last.value)
    tail = f"__ragent_last = {expr}\nif __ragent_last is not None:\n    print(__ragent_last)"
    return f"{head}\n{tail}" if head else tail


def repair_code(code: str) -> str:
    """Undo two slips small models make: a stray closing ``}`` (or ``"}``) at the very end of the program, left from
    the JSON they were closing, and a one-line equation ``a - b = c`` instead of an expression. Only applied when
    the program does not parse as is and does after the fix.

    >>> repair_code('print(52)}')
    'print(52)'
    >>> repair_code('180 - 60 = 120')
    '180 - 60'
    """
    try:
        ast.parse(code)
        return code
    except SyntaxError:
        pass
    lines = [line for line in code.strip().splitlines() if line.strip()]
    if len(lines) == 1 and re.search(r"(?<![=<>!])=(?!=)", lines[0]):
        # "180 - 60 = 120": an equation with the model's own result, not an assignment.
        left = re.split(r"(?<![=<>!])=(?!=)", lines[0], maxsplit=1)[0].strip()
        try:
            ast.parse(left, mode="eval")
            return left
        except SyntaxError:
            pass
    candidate = code.rstrip()
    for _ in range(3):
        if not candidate.endswith(("}", '"', "'")):
            break
        candidate = candidate[:-1].rstrip()
        try:
            ast.parse(candidate)
            return candidate
        except SyntaxError:
            continue
    return code


def make_python_tool(sandbox: Sandbox | None = None, *, name: str = "python") -> Tool:
    """A tool that runs a Python program in ``sandbox`` (default limits: 10 s, 512 MB, 1 MB of output) and returns
    what it printed, its error output when it failed, and the sandbox's reason when a limit or rule stopped it."""
    box = sandbox or Sandbox()

    def python(code: str) -> str:
        result = box.run(print_last_expression(repair_code(code)))
        parts = []
        if result.stdout:
            parts.append(result.stdout.rstrip("\n"))
        if result.exit_code != 0 and result.stderr:
            parts.append("stderr:\n" + result.stderr.strip()[-2000:])
        if result.violation:
            parts.append(f"violation: {result.violation}")
        if not parts:
            parts.append("(the program printed nothing; use print() to show results)")
        return "\n".join(parts)

    return Tool.from_function(
        python,
        name=name,
        description=(
            "Run a Python 3 program and return what it prints. Use it for calculations and data processing; "
            "print the results. The standard library is available; there is no network and no file access outside "
            f"the program's own temporary folder; it is stopped after {box.timeout_s:g} s."
        ),
    )
