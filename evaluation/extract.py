"""Answer extraction: named pipelines of small string functions, as lm-evaluation-harness ``filter_list``.

A task defines one or more pipelines, typically a *strict* one (the answer must be in the format the prompt asked
for, e.g. ``#### 42``) and a *flexible* one (take the last number anywhere). Each step maps a string to a string;
``regex`` follows lm-eval's ``RegexFilter`` exactly (``findall``, ``group_select``, first non-empty group of a
tuple, ``fallback`` when nothing matches).

>>> run_pipeline("so 3 + 4 = 7.\\n#### 7", [FilterStep(function="regex", pattern=r"#### (\\-?[0-9\\.\\,]+)")])
'7'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from evaluation.task import FilterStep
from llm_backend.errors import ConfigError

INVALID = "[invalid]"

Extractor = Callable[..., str]


def regex(text: str, *, pattern: str, group_select: int = 0, fallback: str = INVALID, flags: str = "") -> str:
    """lm-eval's ``regex`` filter: all matches of ``pattern``, the one at ``group_select`` (negative counts from the
    end); a match with several groups yields its first non-empty group; no match yields ``fallback``."""
    compiled = _compile(pattern, flags)
    matches = compiled.findall(text if isinstance(text, str) else "")
    if not matches:
        return fallback
    try:
        match = matches[group_select]
    except IndexError:
        return fallback
    if isinstance(match, tuple):
        non_empty = [m for m in match if m]
        if not non_empty:
            return fallback
        match = non_empty[0]
    return str(match).strip()


def _compile(pattern: str, flags: str) -> re.Pattern[str]:
    value = 0
    for f in flags:
        value |= {"i": re.IGNORECASE, "s": re.DOTALL, "m": re.MULTILINE}[f]
    return re.compile(pattern, value)


def take_first(text: str) -> str:
    """lm-eval's ``take_first`` (of several sampled answers); with one answer per sample it is the identity."""
    return text


def strip(text: str) -> str:
    """Remove surrounding whitespace."""
    return text.strip()


def lowercase(text: str) -> str:
    """Lower-case the text."""
    return text.lower()


def remove_whitespace(text: str) -> str:
    """lm-eval's ``remove_whitespace``: drop leading spaces."""
    return text.lstrip(" ")


def last_number(text: str, *, fallback: str = INVALID) -> str:
    """The last number in the text, without thousands separators or a trailing period: ``"$1,234.50."`` ->
    ``"1234.50"``."""
    numbers = re.findall(r"-?\$?\d[\d,]*(?:\.\d+)?", text)
    if not numbers:
        return fallback
    return numbers[-1].replace("$", "").replace(",", "").rstrip(".")


def choice_letter(text: str, *, letters: str = "ABCD", fallback: str = INVALID) -> str:
    """The first standalone option letter: ``"The answer is (B)."`` -> ``"B"``. Letters inside words do not count."""
    pattern = rf"(?<![A-Za-z])([{re.escape(letters)}])(?![A-Za-z])"
    match = re.search(pattern, text)
    return match.group(1) if match else fallback


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|$)", re.DOTALL)


def code_block(text: str, *, language: str = "python") -> str:
    """The code a chat model wrote: the first fenced block tagged ``language`` (else the first fenced block);
    the whole text when there is no fence. An unterminated fence (cut by ``max_tokens``) still counts."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return text
    for tag, body in blocks:
        if tag.lower() in (language, language[:2]):
            return str(body)
    return str(blocks[0][1])


EXTRACTORS: dict[str, Extractor] = {
    "regex": regex,
    "take_first": take_first,
    "strip": strip,
    "lowercase": lowercase,
    "remove_whitespace": remove_whitespace,
    "last_number": last_number,
    "choice_letter": choice_letter,
    "code_block": code_block,
}


def run_pipeline(text: str, steps: Sequence[FilterStep]) -> str:
    """Apply the steps in order. An empty pipeline returns the text unchanged."""
    value = text
    for step in steps:
        func = EXTRACTORS.get(step.function)
        if func is None:
            from llm_backend.errors import did_you_mean

            raise ConfigError(f"unknown filter function {step.function!r}. {did_you_mean(step.function, EXTRACTORS)}Known: {', '.join(EXTRACTORS)}")
        args: dict[str, Any] = step.args()
        if step.function == "regex" and "regex_pattern" in args:  # accept lm-eval's spelling
            args["pattern"] = args.pop("regex_pattern")
        try:
            value = func(value, **args)
        except TypeError as exc:
            raise ConfigError(f"filter {step.function!r} got bad arguments {args}: {exc}") from exc
    return value


def extract_all(text: str, filters: dict[str, list[FilterStep]]) -> dict[str, str]:
    """Run every named pipeline; a task without filters gets one pipeline ``none`` returning the text."""
    if not filters:
        return {"none": text}
    return {name: run_pipeline(text, steps) for name, steps in filters.items()}
