"""Prompts are data: versioned YAML files of Jinja templates, all rendered by the one environment here.

Used by RAG (:mod:`core.rag.prompts`), agents (:mod:`core.agent.prompts`) and evaluation (:mod:`evaluation.prompts`).
It lives in ``core`` because that is the lowest room that renders prompts: evaluation sits above core and may import
it; ``knowledge`` and ``llm_backend`` render no prompts and stay free of Jinja.

The environment:

- ``StrictUndefined``: a missing or misspelt variable raises instead of rendering as an empty string.
- ``keep_trailing_newline=True``: a template's final newline is kept, as lm-evaluation-harness renders its prompts
  (evaluation's prompts must match lm-eval's to the character). RAG and agent prompts are stripped after rendering,
  so the setting does not change them.
- ``autoescape=False``: prompts are plain text, not HTML.

Example::

    >>> render_template("Q: {{ question }}\\n", question="2+2?")
    'Q: 2+2?\\n'
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from llm_backend.errors import ConfigError

ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
"""The one Jinja environment every prompt is rendered with."""


@functools.lru_cache(maxsize=1024)
def compile_template(source: str) -> jinja2.Template:
    """The compiled template for ``source`` (cached: the same prompt is rendered for every sample)."""
    return ENV.from_string(source)


def render_template(source: str, **values: Any) -> str:
    """Render the Jinja ``source`` with ``values``; raises :class:`jinja2.UndefinedError` for a missing value
    (callers turn it into a :class:`ConfigError` naming their file and part)."""
    return compile_template(source).render(**values)


def compile_expression(source: str) -> Callable[..., Any]:
    """A Jinja expression (``"[a, b]"``, ``"choices.text"``) as a function of keyword values, StrictUndefined too."""
    return ENV.compile_expression(source, undefined_to_none=False)


@dataclass(frozen=True)
class PromptFile:
    """A loaded prompt file: its ``version`` (recorded with results and traces) and the whole mapping."""

    path: str
    version: int
    data: dict[str, Any]


def load_prompt_file(path: str | Path, *, what: str = "prompt file", expect: str = "a mapping with a version") -> PromptFile:
    """Read a versioned YAML prompt file: a mapping with an integer ``version``. ``what`` and ``expect`` word the
    :class:`ConfigError` raised for a file that is not valid YAML or not such a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "version" not in data:
        raise ConfigError(f"{what} {path} must be {expect}")
    try:
        version = int(data["version"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} {path} has version {data['version']!r}; it must be a whole number") from exc
    return PromptFile(str(path), version, data)
