"""The agent's prompt templates: ``prompts.yaml`` beside this module (versioned; traces record the version),
rendered with the one prompt environment of :mod:`core.prompts`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from core.prompts import load_prompt_file, render_template

PROMPTS_FILE = Path(__file__).parent / "prompts.yaml"


@cache
def prompts() -> dict[str, Any]:
    """The prompt templates of ``prompts.yaml`` (with their ``version``)."""
    return load_prompt_file(PROMPTS_FILE, what="agent prompts").data


def render(name: str, **values: Any) -> str:
    """Render the prompt template ``name`` with ``values`` (StrictUndefined: a missing value is an error)."""
    return render_template(prompts()[name], **values).strip()
