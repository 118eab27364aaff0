"""The MCP server of ``ragent mcp``: knowledge bases and the built-in tools for any MCP client (Claude Desktop,
Cursor, smolagents, Qwen-Agent, AutoGen), on the official ``mcp`` SDK (:class:`mcp.server.mcpserver.MCPServer`).

Tools:

- ``kb_list()``: the knowledge bases (name, description, embedder, files, chunks);
- ``kb_search(knowledge_base, query, k=5)``: the best passages, with source, section, page and score (no model);
- ``kb_ask(knowledge_base, question)``: a cited answer from the model server (:func:`core.rag.answer`);
- the built-in agent tools: ``calculator``, ``current_datetime`` and ``python`` (run in the sandbox), each with
  the schema it has for our own agents.

Transports: stdio (the default; a client starts ``ragent mcp`` itself) or streamable HTTP (``ragent mcp --http``,
at ``http://127.0.0.1:8101/mcp``; with ``RAGENT_API_SERVER_KEY`` set, requests need ``Authorization: Bearer <key>``).
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from typing import Any

from apps.api.service import ApiService
from llm_backend.client import ChatClient
from llm_backend.errors import ConfigError
from llm_backend.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_HTTP_PORT = 8101
BUILTIN = ("calculator", "datetime", "python")
INSTRUCTIONS = (
    "ragent knowledge bases and tools. Call kb_list to see the knowledge bases, kb_search to read passages (with their "
    "sources) and kb_ask for an answer with numbered citations [n]. calculator evaluates arithmetic exactly; python "
    "runs code in a sandbox (no network, no files outside its work folder)."
)


def _hit(hit: Any, rank: int) -> dict[str, Any]:
    meta = hit.meta or {}
    return {
        "rank": rank,
        "chunk_id": hit.chunk_id,
        "score": float(hit.score),
        "source": meta.get("source", ""),
        "section": meta.get("section", ""),
        "page": meta.get("page"),
        "text": hit.text,
    }


def reported(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with our errors (a missing knowledge base, a tool fault, the model server down) raised as the SDK's
    ``ToolError``, so the client gets their message (the SDK hides the text of other exceptions)."""
    from mcp.server.mcpserver.exceptions import ToolError as McpToolError

    from apps.api.errors import ApiError
    from llm_backend.errors import RagentError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (RagentError, ApiError) as exc:
            raise McpToolError(str(exc)) from exc

    return wrapper


def build_server(settings: Settings, *, client: ChatClient | None = None, tools: tuple[str, ...] = BUILTIN) -> Any:
    """The MCP server (an :class:`MCPServer`) on ``settings``; ``tools`` picks the built-in tools it offers."""
    from mcp.server.mcpserver import MCPServer

    from core.rag import answer
    from core.sandbox import Sandbox
    from core.tools import resolve_tools

    service = ApiService(settings, client=client)
    server = MCPServer("ragent", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    @reported
    def kb_list() -> list[dict[str, Any]]:
        """List the knowledge bases: name, description, embedder, number of files and chunks."""
        keep = ("name", "description", "embedder", "files", "chunks", "error")
        return [{k: v for k, v in kb.items() if k in keep} for kb in service.registry.list()]

    @server.tool()
    @reported
    def kb_search(knowledge_base: str, query: str, k: int = 5) -> list[dict[str, Any]]:
        """Search a knowledge base without the model: the passages that best match the query, best first, with their
        source file, section, page and score.

        Args:
            knowledge_base: the knowledge base's name (see kb_list).
            query: what to look for, in the language of the documents.
            k: how many passages (1 to 20).
        """
        hits = service.retriever(knowledge_base).retrieve(query, max(1, min(int(k), 20)))
        return [_hit(h, i) for i, h in enumerate(hits, 1)]

    @server.tool()
    @reported
    def kb_ask(knowledge_base: str, question: str) -> dict[str, Any]:
        """Answer a question from a knowledge base with the model, citing passages as [n]; returns the answer and the
        cited passages (number, source, section, text).

        Args:
            knowledge_base: the knowledge base's name (see kb_list).
            question: the question, in any language.
        """
        result = answer(question, retriever=service.retriever(knowledge_base), client=service.client, tokenizer=service.tokenizer())
        cited = [{"number": c.number, "source": c.source, "section": c.section, "page": c.page, "text": c.text} for c in result.citations]
        return {"answer": result.text, "found": result.found, "citations": cited}

    unknown = [t for t in tools if t not in BUILTIN]
    if unknown:
        raise ConfigError(f"unknown MCP tool(s) {', '.join(unknown)}; the built-in tools are {', '.join(BUILTIN)}.")
    sandbox = Sandbox()
    for t in resolve_tools(list(tools), sandbox=sandbox):
        if t.fn is None:  # pragma: no cover - built-ins always have a function
            continue
        server.add_tool(reported(t.fn), name=t.name, description=t.description)
    return server


def bearer_guard(app: Any, key: str) -> Any:
    """``app`` (ASGI) behind a bearer-key check on HTTP requests (lifespan and other scopes pass through)."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
                body = b'{"error": {"message": "missing or wrong API key: send Authorization: Bearer <key>", "type": "authentication_error", "code": "invalid_api_key"}}'
                await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


def http_app(server: Any, *, host: str = "127.0.0.1", key: str | None = None) -> Any:
    """The streamable-HTTP ASGI app of ``server`` at ``/mcp`` (bearer-guarded when ``key`` is given)."""
    app = server.streamable_http_app(host=host)
    return bearer_guard(app, key) if key else app
