"""What the API serves and the heavy objects behind it, opened once and shared by all requests.

:class:`ApiService` holds the one backend client (:class:`~llm_backend.client.OpenAIChatClient`), the knowledge-base
registry, a retriever per knowledge base and an embedder per name (each opened at first use), and the gate that
limits how many requests do work at once (``settings.concurrency``, the limit the client itself keeps).

Model names:

- ``kb:<name>``: answers from the knowledge base ``<name>`` with citations (:mod:`apps.api.chat`);
- ``agent:<tools>``: runs an agent with those tools, comma-separated: ``calculator``, ``python``, ``datetime``,
  ``kb:<name>`` (search that knowledge base), ``mcp`` / ``mcp:<server>`` (tools of the configured MCP servers);
- any other name: passed through to the backend.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from apps.api.errors import ApiError, model_not_found
from llm_backend.client import ChatClient, OpenAIChatClient
from llm_backend.errors import BackendError, ConfigError, did_you_mean
from llm_backend.settings import Settings

log = logging.getLogger(__name__)

KB_PREFIX = "kb:"
AGENT_PREFIX = "agent:"
AGENT_TOOLS = ("calculator", "python", "datetime")
"""Built-in tools an API client may give an agent (file tools and imported user tools are not offered over HTTP)."""
AGENT_PRESETS = ("agent:calculator,python,datetime", "agent:calculator")
"""Agent models listed by ``/v1/models`` (besides ``agent:kb:<name>`` for every knowledge base)."""


@dataclass(frozen=True)
class AgentSpec:
    """An ``agent:...`` model name taken apart: built-in tool names, knowledge bases, MCP tool specs."""

    tools: tuple[str, ...]
    kbs: tuple[str, ...]
    mcp: tuple[str, ...]


def parse_agent_model(model: str) -> AgentSpec:
    """Split ``agent:calculator,kb:guide,mcp:fs`` into its tools; unknown names raise a 404 :class:`ApiError`."""
    names = [n.strip() for n in model[len(AGENT_PREFIX):].split(",") if n.strip()]
    if not names:
        raise model_not_found(model, f"model {model!r} names no tools: use e.g. 'agent:calculator,python' (tools: {', '.join(AGENT_TOOLS)}, kb:<name>, mcp:<server>).")
    tools, kbs, mcp = [], [], []
    for name in names:
        if name.startswith(KB_PREFIX) and len(name) > len(KB_PREFIX):
            kbs.append(name[len(KB_PREFIX):])
        elif name == "mcp" or name.startswith("mcp:"):
            mcp.append(name)
        elif name in AGENT_TOOLS:
            tools.append(name)
        else:
            raise model_not_found(
                model,
                f"model {model!r}: unknown agent tool {name!r}. {did_you_mean(name, AGENT_TOOLS)}Agent tools over the API: "
                f"{', '.join(AGENT_TOOLS)}, kb:<name> (a knowledge base), mcp or mcp:<server> (configured MCP servers).",
            )
    return AgentSpec(tuple(tools), tuple(kbs), tuple(mcp))


class ApiService:
    """Shared state of one API process. ``client`` defaults to an :class:`OpenAIChatClient` on ``settings``."""

    def __init__(self, settings: Settings, *, client: ChatClient | None = None) -> None:
        from knowledge.registry import KnowledgeBaseRegistry

        self.settings = settings
        self.client: Any = client or OpenAIChatClient(settings)
        self.registry = KnowledgeBaseRegistry(settings.home)
        self._lock = threading.Lock()
        self._retrievers: dict[str, Any] = {}
        self._embedders: dict[str, Any] = {}
        self._tokenizer: Any = None
        self._gate: asyncio.Semaphore | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None

    # -- concurrency ----------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of ``settings.concurrency`` work slots (requests beyond it wait their turn)."""
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:
            self._gate, self._gate_loop = asyncio.Semaphore(self.settings.concurrency), loop
        async with self._gate:
            yield

    # -- models ---------------------------------------------------------------------------------------------------
    def knowledge_bases(self) -> list[str]:
        """Names of the knowledge bases in the data home."""
        return self.registry.names()

    def backend_models(self) -> list[str]:
        """The backend's models; empty (with a warning) when it cannot be reached, so kb models are still listed."""
        try:
            return list(self.client.models())
        except BackendError as exc:
            log.warning("model list without the backend's models: %s", exc)
            return []

    def model_ids(self) -> list[tuple[str, str]]:
        """``(id, owned_by)`` for ``/v1/models``: the backend's models, ``kb:<name>`` and agent presets."""
        kbs = self.knowledge_bases()
        out = [(m, "backend") for m in self.backend_models()]
        out += [(f"{KB_PREFIX}{n}", "ragent-kb") for n in kbs]
        out += [(p, "ragent-agent") for p in AGENT_PRESETS]
        out += [(f"{AGENT_PREFIX}{KB_PREFIX}{n}", "ragent-agent") for n in kbs]
        return out

    # -- knowledge bases ------------------------------------------------------------------------------------------
    def retriever(self, name: str) -> Any:
        """The hybrid retriever of knowledge base ``name`` (opened once). Unknown names raise a 404 error."""
        with self._lock:
            found = self._retrievers.get(name)
            if found is not None:
                return found
        from core.rag import open_retriever
        from knowledge.errors import KnowledgeBaseNotFoundError

        try:
            retriever = open_retriever(name, settings=self.settings)
        except KnowledgeBaseNotFoundError as exc:
            raise model_not_found(f"{KB_PREFIX}{name}", str(exc)) from exc
        with self._lock:
            return self._retrievers.setdefault(name, retriever)

    def tokenizer(self) -> Any:
        """The chat model's tokenizer for context budgets (loaded once)."""
        with self._lock:
            if self._tokenizer is None:
                from knowledge.tokenizer import default_tokenizer

                self._tokenizer = default_tokenizer(self.settings.models_dir)
            return self._tokenizer

    # -- embeddings -----------------------------------------------------------------------------------------------
    def embedder(self, model: str) -> Any:
        """The embedder for ``model``: ``kb:<name>`` (that base's embedder) or an embedder name (``e5``, ``minilm``,
        ...). Returns None when ``model`` is neither, so the caller can pass it to the backend."""
        name = model
        if model.startswith(KB_PREFIX):
            kb_name = model[len(KB_PREFIX):]
            if kb_name not in self.knowledge_bases():
                self.retriever(kb_name)  # raises the 404 with the known names
            name = self.registry.open(kb_name).manifest.embedder
            if name == "none":
                raise ApiError(400, f"knowledge base {kb_name!r} has no embedder (it was built BM25-only, --embedder none), so it has "
                               "no vectors to give. Ask for an embedder by name, e.g. model 'e5'.", code="no_embedder")
        with self._lock:
            if name in self._embedders:
                return self._embedders[name]
        from knowledge.embedders import make_embedder

        try:
            embedder = make_embedder(name, client=self.client if isinstance(self.client, OpenAIChatClient) else None)
        except ConfigError:
            return None
        if embedder is None:
            return None
        with self._lock:
            return self._embedders.setdefault(name, embedder)

    def close(self) -> None:
        """Release the backend client's connections."""
        close = getattr(self.client, "close", None)
        if callable(close):
            close()
