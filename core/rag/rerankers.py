"""Optional second stage: re-order retrieved hits with a model that reads query and passage together.

- :class:`CrossEncoderReranker`: a sentence-transformers cross-encoder from a local folder (no weights ship in a
  wheel, so the user brings one, e.g. a downloaded ``BAAI/bge-reranker-base``);
- :class:`ServerReranker`: the model server's ``/rerank`` endpoint (vLLM serving a reranker on a GPU);
- :class:`LLMReranker`: the chat model picks and orders the relevant passages (works with any chat server; costs
  one request with all passages in the prompt).

Each keeps the retrieval metadata and adds ``rerank_score``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from knowledge.types import Hit
from llm_backend.client import ChatClient
from llm_backend.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)


@runtime_checkable
class Reranker(Protocol):
    """Re-orders hits for a query and keeps the best ``k``."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]: ...


def _apply(hits: Sequence[Hit], scores: Sequence[float], k: int) -> list[Hit]:
    order = sorted(range(len(hits)), key=lambda i: scores[i], reverse=True)[:k]
    return [replace(hits[i], score=float(scores[i]), meta={**hits[i].meta, "rerank_score": float(scores[i])}) for i in order]


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` loaded from a local path (or given as ``model``)."""

    def __init__(self, path: str | Path | None = None, *, model: Any = None, device: str = "cpu", max_chars: int = 2000) -> None:
        if path is None and model is None:
            raise ConfigError("CrossEncoderReranker needs the path of a local cross-encoder model folder")
        self.path = Path(path).expanduser() if path else None
        self.device = device
        self.max_chars = max_chars
        self._model = model

    def warm_up(self) -> None:
        if self._model is not None:
            return
        assert self.path is not None
        if not self.path.exists():
            raise ConfigError(f"cross-encoder folder {self.path} does not exist; pass the folder of a downloaded reranker model")
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise MissingDependencyError("sentence_transformers", "The cross-encoder reranker", "sentence-transformers") from exc
        self._model = CrossEncoder(str(self.path), device=self.device)

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        self.warm_up()
        scores = self._model.predict([(query, h.text[: self.max_chars]) for h in hits], show_progress_bar=False)
        return _apply(hits, [float(s) for s in scores], k)


class ServerReranker:
    """The backend's ``/rerank`` endpoint through :meth:`OpenAIChatClient.rerank`."""

    def __init__(self, client: Any, model: str | None = None) -> None:
        self.client = client
        self.model = model

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        results = self.client.rerank(query, [h.text for h in hits], model=self.model)
        scores = [float("-inf")] * len(hits)
        for r in results:
            if 0 <= r.index < len(hits):
                scores[r.index] = r.score
        return _apply(hits, scores, k)


class LLMReranker:
    """Ask the chat model which passages answer the question, most relevant first (one request, JSON output).
    Passages it leaves out keep their retrieval order after the chosen ones.

    The prompt must fit the model's context whatever the caller retrieves: only the first ``max_passages`` hits are
    shown, each cut to its share of ``budget_chars`` (at most ``max_chars``); the rest keep their order after them.
    The default budget (3,000 characters, ~3,000 tokens of Chinese at worst) fits a 4,096-token context."""

    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"relevant": {"type": "array", "items": {"type": "integer"}}},
        "required": ["relevant"],
    }

    def __init__(self, client: ChatClient, *, max_chars: int = 600, budget_chars: int = 3000, max_passages: int = 20) -> None:
        self.client = client
        self.max_chars = max_chars
        self.budget_chars = budget_chars
        self.max_passages = max_passages

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        shown = list(hits[: self.max_passages])
        each = max(80, min(self.max_chars, self.budget_chars // len(shown)))
        passages = "\n".join(f"[{i + 1}] {' '.join(h.text.split())[:each]}" for i, h in enumerate(shown))
        prompt = (
            f"Question: {query}\n\nPassages:\n{passages}\n\n"
            'Which passages help answer the question? Reply with JSON {"relevant": [numbers]}, most relevant first.'
        )
        # Room for every number: a small model often lists them all.
        result = self.client.chat([{"role": "user", "content": prompt}], json_schema=self.SCHEMA, temperature=0.0, max_tokens=16 + 4 * len(shown))
        try:
            data = json.loads(result.text)
            numbers = data.get("relevant", []) if isinstance(data, dict) else []
        except ValueError:
            # Cut off (the token limit) or mangled: the numbers written so far still rank what they name.
            numbers = [int(n) for n in re.findall(r"\d+", result.text)]
            if not numbers:
                log.warning("LLM reranker returned unparsable output %r; keeping retrieval order", result.text[:200])
        chosen: list[int] = []
        for n in numbers:
            if isinstance(n, int) and 1 <= n <= len(shown) and n - 1 not in chosen:
                chosen.append(n - 1)
        rest = [i for i in range(len(hits)) if i not in chosen]
        order = chosen + rest
        scores = [0.0] * len(hits)
        for rank, i in enumerate(order):
            scores[i] = float(len(hits) - rank)
        return _apply(hits, scores, k)


def make_reranker(spec: str | None, *, client: Any = None) -> Reranker | None:
    """``None``/``"none"``; ``"llm"``; ``"server"`` or ``"server:MODEL"``; anything else is a cross-encoder path."""
    if not spec or spec == "none":
        return None
    if spec == "llm":
        if client is None:
            raise ConfigError("the LLM reranker needs a chat client")
        return LLMReranker(client)
    if spec == "server" or spec.startswith("server:"):
        if client is None:
            raise ConfigError("the server reranker needs a client")
        return ServerReranker(client, spec.split(":", 1)[1] if ":" in spec else None)
    return CrossEncoderReranker(spec)
