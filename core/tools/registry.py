"""Find tools by name: the built-in ones and user tools given by import path (``package.module:function``)."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.sandbox import Sandbox
from core.tools.base import Tool, ToolOutput
from llm_backend.errors import ConfigError, did_you_mean

BUILTIN_TOOLS: dict[str, str] = {
    "calculator": "safe arithmetic (AST-evaluated, never eval)",
    "python": "run Python code in the sandbox",
    "datetime": "the current date and time",
    "files": "read_file and list_files in one allowed folder (--files DIR)",
    "kb": "search a knowledge base (--kb NAME)",
    "mcp": "the tools of the MCP servers in the config (mcp, or mcp:NAME for one server); they run outside the sandbox",
}


def load_tool(spec: str) -> list[Tool]:
    """Import a user tool: ``package.module:name`` where ``name`` is a :class:`Tool`, a typed function (wrapped with
    ``@tool``) or a list of either."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"tool {spec!r}: give user tools as 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"tool {spec!r}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from exc
    try:
        obj: Any = getattr(module, attr)
    except AttributeError as exc:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ConfigError(f"tool {spec!r}: {module_name} has no {attr!r}. {did_you_mean(attr, names)}") from exc
    items = obj if isinstance(obj, list | tuple) else [obj]
    tools = []
    for item in items:
        if isinstance(item, Tool):
            tools.append(item)
        elif callable(item):
            tools.append(Tool.from_function(item))
        else:
            raise ConfigError(f"tool {spec!r}: {type(item).__name__} is neither a Tool nor a function")
    return tools


def resolve_tools(
    names: Sequence[str],
    *,
    kb: str | None = None,
    files_root: str | Path | None = None,
    sandbox: Sandbox | None = None,
) -> list[Tool]:
    """Tools for names such as ``["calculator", "python", "my_pkg.tools:search"]``. ``kb`` adds the knowledge-base
    search tool and ``files_root`` the file tools even when not named."""
    from core.tools.arithmetic import calculator
    from core.tools.clock import current_datetime
    from core.tools.files import make_file_tools
    from core.tools.knowledge import knowledge_base_tool
    from core.tools.python_tool import make_python_tool

    wanted = list(dict.fromkeys(n.strip() for name in names for n in name.split(",") if n.strip()))
    if kb and "kb" not in wanted:
        wanted.append("kb")
    if files_root and "files" not in wanted:
        wanted.append("files")
    tools: list[Tool] = []
    for name in wanted:
        if name == "mcp" or name.startswith("mcp:"):
            from core.tools.mcp_client import mcp_tools

            tools.extend(mcp_tools(name))
        elif ":" in name:
            tools.extend(load_tool(name))
        elif name == "calculator":
            tools.append(calculator)
        elif name == "python":
            tools.append(make_python_tool(sandbox))
        elif name == "datetime":
            tools.append(current_datetime)
        elif name == "files":
            if not files_root:
                raise ConfigError("the files tools need a folder: pass --files DIR")
            tools.extend(make_file_tools(files_root))
        elif name == "kb":
            if not kb:
                raise ConfigError("the kb tool needs a knowledge base: pass --kb NAME")
            tools.append(knowledge_base_tool(kb))
        else:
            raise ConfigError(
                f"unknown tool {name!r}. {did_you_mean(name, BUILTIN_TOOLS)}Built-in tools: "
                f"{', '.join(BUILTIN_TOOLS)}; user tools as 'package.module:function'."
            )
    return tools


class Toolbox:
    """The tools of one agent, by name. :meth:`call` turns an unknown name into an observation, not an exception."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            if t.name in self._tools:
                raise ConfigError(f"two tools are named {t.name!r}; give one of them another name")
            self._tools[t.name] = t

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI ``tools`` entries for every tool."""
        return [t.to_openai() for t in self._tools.values()]

    def call(self, name: str, arguments: Mapping[str, Any] | str) -> ToolOutput:
        """Run the tool ``name``; an unknown name comes back as an error observation listing the tools."""
        found = self._tools.get(name)
        if found is None:
            msg = f"unknown tool {name!r}"
            return ToolOutput(
                f"Error: {msg}. {did_you_mean(name, self._tools)}Available tools: {', '.join(self._tools)}.",
                error=msg,
                fault="unknown_tool",
            )
        return found.run(arguments)
