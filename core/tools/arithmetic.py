"""Safe arithmetic: the expression is parsed with :mod:`ast` and only numbers, arithmetic operators and a short list
of math functions are evaluated. Nothing is ever passed to ``eval``."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Any

from core.tools.base import Tool, ToolError, tool

MAX_EXPRESSION_CHARS = 2000
MAX_EXPONENT = 10_000
MAX_RESULT_DIGITS = 5_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs, "round": round, "min": min, "max": max, "sum": lambda *xs: sum(xs),
    "sqrt": math.sqrt, "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "floor": math.floor, "ceil": math.ceil, "factorial": math.factorial, "gcd": math.gcd, "lcm": math.lcm,
    "comb": math.comb, "perm": math.perm, "radians": math.radians, "degrees": math.degrees, "hypot": math.hypot,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _normalise(expression: str) -> str:
    text = expression.strip().replace("×", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # 1,234,567 -> 1234567
    text = re.sub(r"(?<=\d)\s*%(?!\s*[\d.(])", "/100", text)  # 15% -> 15/100; 7 % 2 stays modulo
    # "180 - 60 = 120": the model wrote its own result; evaluate the left side.
    text = re.split(r"(?<![=<>!])=(?!=)", text, maxsplit=1)[0]
    return text.strip()


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_RESULT_DIGITS * 3.33:
        raise ToolError(f"result has more than {MAX_RESULT_DIGITS} digits")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError as exc:
            raise ToolError("division by zero") from exc
        except OverflowError as exc:
            raise ToolError("the result is too large") from exc
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords:
        args = [_eval(a) for a in node.args]
        if node.func.id in ("factorial", "comb", "perm") and any(abs(a) > 10_000 for a in args):
            raise ToolError(f"{node.func.id} arguments must be at most 10000")
        try:
            return _check_size(_FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError, OverflowError) as exc:
            raise ToolError(f"{node.func.id}{tuple(args)}: {exc}") from exc
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r}: use numbers, + - * / // % ** ( ) and {', '.join(sorted(_FUNCTIONS))}")
    raise ToolError(f"{ast.unparse(node)[:80]!r} is not allowed: only numbers and arithmetic")


def evaluate(expression: str) -> int | float:
    """Evaluate an arithmetic expression safely; raises :class:`ToolError` naming what is not allowed.

    >>> evaluate("2 * (3 + 4) ** 2")
    98
    >>> evaluate("1,200 * 15%")
    180.0
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    text = _normalise(expression)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"not a valid arithmetic expression: {text!r} ({exc.msg})") from exc
    value = _eval(tree)
    if not isinstance(value, int | float):
        raise ToolError("the expression did not produce a number")
    return value


def format_number(value: int | float) -> str:
    """Integers as they are; floats without float noise (``0.30000000000000004`` -> ``0.3``, ``2.0`` -> ``2``)."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


_LATEX = (
    (re.compile(r"\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}"), " "),
    (re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:times|cdot)"), "*"),
    (re.compile(r"\\div"), "/"),
    (re.compile(r"\\%"), "%"),
    (re.compile(r"\\(?:left|right|quad|,|;|!|\(|\[)|\$"), " "),
)
_EXPRESSION_START = re.compile(r"[:=,;]|\s")
_OPERATOR = re.compile(r"\d\s*[-+*/×÷%^]|\)\s*[-+*/×÷^]|[-+*/×÷^]\s*\(")
_LETTER = re.compile(r"[A-Za-z]")


def expression_before_equals(text: str) -> str | None:
    """The arithmetic a reasoning text has just written before an ``=`` (``text`` excludes the ``=``): the longest
    tail of its last line that is an expression :func:`evaluate` accepts, with at least one operator, after LaTeX
    (``\\times``, ``\\frac{a}{b}``, ``\\text{...}``) and currency signs are taken out. ``None`` when there is none
    (``x``, a bare number, words), so the caller leaves the text alone.

    >>> expression_before_equals(r"so he runs \\( 3 \\times 3 \\times 60 \\text{ meters} ")
    '3 * 3 * 60'
    >>> expression_before_equals("Total cost: $1,200 + $300 ")
    '1,200 + 300'
    >>> expression_before_equals(r"\\[ \\frac{2}{2} ")
    '((2)/(2))'
    >>> expression_before_equals("Let x be the price, so x ") is None
    True
    """
    line = text.rsplit("\n", 1)[-1]
    for pattern, replacement in _LATEX:
        line = pattern.sub(replacement, line)
    starts = [0, *(m.end() for m in _EXPRESSION_START.finditer(line))]
    for start in starts:
        candidate = " ".join(line[start:].split())
        if not _OPERATOR.search(candidate) or _LETTER.search(candidate):
            continue
        try:
            evaluate(candidate)
        except (ToolError, ArithmeticError, ValueError, TypeError, RecursionError):
            continue
        return candidate
    return None


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly and return the number. Supports + - * / // % ** and parentheses,
    and the functions sqrt, log, exp, round, floor, ceil, min, max, abs.

    Args:
        expression: the arithmetic expression, with the numbers written out.
    """
    return format_number(evaluate(expression))


CALCULATOR: Tool = calculator
