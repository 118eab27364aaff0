"""Tools for agents: ``@tool`` from typed functions, the built-in tools and the registry.

- :func:`tool`, :class:`Tool`, :class:`ToolOutput`, :class:`ToolError` (:mod:`core.tools.base`)
- built-ins: :data:`calculator`, :func:`make_python_tool`, :data:`current_datetime`, :func:`make_file_tools`,
  :func:`make_knowledge_search_tool` / :func:`knowledge_base_tool`
- :func:`resolve_tools` (names and ``package.module:function`` import paths), :class:`Toolbox`
- LangChain: :func:`core.tools.langchain_adapter.to_langchain`
"""

from core.tools.arithmetic import calculator
from core.tools.base import INFRASTRUCTURE_ERRORS, Tool, ToolArgumentError, ToolError, ToolOutput, tool
from core.tools.clock import current_datetime
from core.tools.files import make_file_tools
from core.tools.knowledge import knowledge_base_tool, make_knowledge_search_tool
from core.tools.python_tool import make_python_tool
from core.tools.registry import BUILTIN_TOOLS, Toolbox, load_tool, resolve_tools

__all__ = [
    "BUILTIN_TOOLS",
    "INFRASTRUCTURE_ERRORS",
    "Tool",
    "ToolArgumentError",
    "ToolError",
    "ToolOutput",
    "Toolbox",
    "calculator",
    "current_datetime",
    "knowledge_base_tool",
    "load_tool",
    "make_file_tools",
    "make_knowledge_search_tool",
    "make_python_tool",
    "resolve_tools",
    "tool",
]
