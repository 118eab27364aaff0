"""Prompt templates are data: YAML files in ``core/rag/prompts/`` with a name and a version, one block per
language, rendered with the one prompt environment of :mod:`core.prompts` (Jinja ``StrictUndefined``: a missing
variable is an error, not an empty string)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from core.prompts import load_prompt_file, render_template
from llm_backend.errors import ConfigError

PROMPTS_DIR = Path(__file__).parent / "prompts"


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template file: ``parts[language][part]`` are Jinja sources."""

    name: str
    version: int
    parts: dict[str, dict[str, str]]
    path: str

    def languages(self) -> list[str]:
        return sorted(self.parts)

    def render(self, language: str, part: str, **variables: Any) -> str:
        """Render one part (``system``, ``user``, ...) in ``language`` (falls back to English)."""
        block = self.parts.get(language) or self.parts.get("en")
        if block is None or part not in block:
            raise ConfigError(f"prompt template {self.path} has no {part!r} for language {language!r}")
        try:
            return render_template(block[part], **variables).strip()
        except TemplateError as exc:
            raise ConfigError(f"prompt template {self.path} ({language}.{part}) failed to render: {exc}") from exc


@lru_cache(maxsize=32)
def load_template(name_or_path: str) -> PromptTemplate:
    """Load ``answer`` / ``rewrite`` from the package, or a YAML file by path (for a custom prompt)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROMPTS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))
        raise ConfigError(f"prompt template {name_or_path!r} not found; packaged templates: {', '.join(known)}, or pass a YAML path")
    loaded = load_prompt_file(path, what="prompt template", expect="a mapping with name, version and one block per language")
    parts = {k: dict(v) for k, v in loaded.data.items() if isinstance(v, dict)}
    return PromptTemplate(str(loaded.data.get("name", path.stem)), loaded.version, parts, str(path))
