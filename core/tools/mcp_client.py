"""Agent tools from MCP servers (``mcp_servers:`` in the config), through the official ``mcp`` client.

Each configured server becomes a set of :class:`~core.tools.base.Tool` s offered to the model like our own: the
server's JSON schema is checked when the tools are listed (a tool whose schema is not a valid JSON-Schema object is
left out, with a warning), the model's arguments are validated against it before the call, and everything that goes
wrong in a call (the server's own error result, a timeout, a server that died) comes back as an observation the model
reads. A server that cannot be reached or started when the tools are listed raises, since no tool can be offered.

Who runs them: the sandbox does not apply. A ``command`` server is started by ragent as a process of the user's, with
the user's rights; a ``url`` server runs wherever it is. Only servers written in the config are used (the model
cannot name others).

The ``mcp`` client is asynchronous and the agent's tools are called synchronously (from the loop, or from a worker
thread in ``Agent.astream``), so each server lives in a background thread with its own event loop, connected once per
process and shared by every agent.

Example (``~/.cache/ragent/config.yaml``)::

    mcp_servers:
      files: {command: npx, args: ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/notes"]}
      ragent: {url: "http://127.0.0.1:8101/mcp"}

then ``ragent agent run "..." --tools calculator,mcp:files``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import logging
import os
import re
import threading
from typing import Any

from core.tools.base import Tool, ToolError
from llm_backend.errors import ConfigError, MissingDependencyError, RagentError, did_you_mean
from llm_backend.settings import McpServerConfig, Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 60.0
_INVALID_NAME = re.compile(r"[^A-Za-z0-9_-]")


class McpServerError(RagentError):
    """An MCP server in the config could not be started, reached or listed."""


class McpConnection:
    """One MCP server, connected in a background thread. :meth:`call` is synchronous and thread-safe."""

    def __init__(self, name: str, config: McpServerConfig) -> None:
        self.name = name
        self.config = config
        self.tools: list[Any] = []
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        """True while the connection's thread runs."""
        return self._thread is not None and self._thread.is_alive() and self._error is None

    def _target(self) -> Any:
        if self.config.url:
            return self.config.url
        from mcp import StdioServerParameters

        env = {**os.environ, **self.config.env} if self.config.env else None
        return StdioServerParameters(command=str(self.config.command), args=list(self.config.args), env=env, cwd=self.config.cwd)

    async def _main(self) -> None:
        from mcp import Client

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with Client(self._target(), read_timeout_seconds=self.config.timeout) as client:
                listed = await client.list_tools()
                self._client, self.tools = client, list(listed.tools)
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # reported to whoever waits (open) or calls next (call)
            self._error = exc
        finally:
            self._client = None
            self._ready.set()

    def open(self) -> McpConnection:
        """Start or connect to the server and list its tools; raises :class:`McpServerError` when it cannot."""
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name=f"mcp-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(CONNECT_TIMEOUT_S):
            raise McpServerError(f"MCP server {self.name!r} did not answer within {CONNECT_TIMEOUT_S:.0f} s; {self._where()}")
        if self._error is not None:
            raise McpServerError(f"MCP server {self.name!r} could not be reached: {_describe(self._error)}; {self._where()}") from self._error
        return self

    def _where(self) -> str:
        if self.config.url:
            return f"check that it runs at {self.config.url} (mcp_servers.{self.name}.url in the config)"
        return f"check that `{' '.join([str(self.config.command), *self.config.args])}` starts an MCP server (mcp_servers.{self.name} in the config)"

    def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call ``tool``; the result as text. Every failure raises :class:`ToolError` (an observation for the model)."""
        if self._client is None or self._loop is None:
            raise ToolError(f"MCP server {self.name!r} is not connected ({_describe(self._error) if self._error else 'closed'}); continue without it")
        future = asyncio.run_coroutine_threadsafe(self._client.call_tool(tool, arguments), self._loop)
        try:
            result = future.result(self.config.timeout + 5)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise ToolError(f"MCP server {self.name!r} did not answer {tool} within {self.config.timeout:g} s") from exc
        except Exception as exc:
            raise ToolError(f"MCP server {self.name!r} failed on {tool}: {_describe(exc)}") from exc
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"{tool} failed on MCP server {self.name!r} (no message)")
        return text

    def close(self) -> None:
        """Disconnect (a ``command`` server's process ends with it)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)


def _describe(exc: BaseException) -> str:
    """A one-line account of an exception (task groups wrap the cause in ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def result_text(result: Any) -> str:
    """The text of a ``CallToolResult``: its text blocks, else its structured content as JSON; other blocks (images,
    audio) are named, not shown."""
    parts: list[str] = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')} omitted]")
    if not any(p.strip() for p in parts) and result.structured_content is not None:
        return json.dumps(result.structured_content, ensure_ascii=False)
    return "\n".join(parts)


def check_schema(schema: Any) -> dict[str, Any]:
    """The tool's input schema if it is a valid JSON-Schema object description; raises :class:`ValueError` if not."""
    import jsonschema

    if not isinstance(schema, dict):
        raise ValueError(f"the input schema is a {type(schema).__name__}, not a JSON object")
    if schema.get("type", "object") != "object":
        raise ValueError(f"the input schema describes {schema.get('type')!r}, not an object of arguments")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"the input schema is not valid JSON Schema: {exc.message}") from exc
    return {"type": "object", "properties": {}, **schema}


def to_tool(connection: McpConnection, spec: Any) -> Tool:
    """Our :class:`Tool` for the MCP tool ``spec`` (its schema checked, its name made OpenAI-safe)."""
    schema = check_schema(spec.input_schema)
    name = _INVALID_NAME.sub("_", spec.name)[:64]
    description = (spec.description or spec.title or spec.name).strip() + f" (MCP server {connection.name!r})"

    def call(**arguments: Any) -> str:
        return connection.call(spec.name, arguments)

    return Tool.from_schema(name, description, schema, call)


_OPEN: dict[str, McpConnection] = {}
_LOCK = threading.Lock()


def connect(name: str, config: McpServerConfig) -> McpConnection:
    """The process-wide connection to server ``name`` (opened at first use, opened again if it died)."""
    with _LOCK:
        found = _OPEN.get(name)
        if found is not None and found.alive and found.config == config:
            return found
        if found is not None:
            found.close()
        connection = McpConnection(name, config).open()
        _OPEN[name] = connection
        return connection


@atexit.register
def close_all() -> None:
    """Close every connection (stops the servers ragent started)."""
    with _LOCK:
        for connection in _OPEN.values():
            connection.close()
        _OPEN.clear()


def mcp_tools(spec: str = "mcp", *, settings: Settings | None = None) -> list[Tool]:
    """The tools for ``spec``: ``"mcp"`` (every configured server) or ``"mcp:NAME"`` (one of them)."""
    try:
        import mcp  # noqa: F401
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise MissingDependencyError("mcp", "tools from MCP servers") from exc
    servers = (settings or Settings.load()).mcp_servers
    wanted = list(servers) if spec == "mcp" else [spec.split(":", 1)[1]]
    if not servers:
        raise ConfigError("no MCP servers are configured: add them under mcp_servers: in the config file (command/args or url).")
    tools: list[Tool] = []
    for name in wanted:
        if name not in servers:
            raise ConfigError(f"no MCP server named {name!r} in the config. {did_you_mean(name, servers)}Configured: {', '.join(servers)}.")
        config = servers[name]
        connection = connect(name, config)
        for item in connection.tools:
            if config.tools is not None and item.name not in config.tools:
                continue
            try:
                tools.append(to_tool(connection, item))
            except ValueError as exc:
                log.warning("MCP server %s: tool %r left out: %s", name, item.name, exc)
    return tools
