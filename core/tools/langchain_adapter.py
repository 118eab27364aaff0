"""Our tools as LangChain tools, and LangChain tools as ours (``langchain-core``'s ``StructuredTool``).

Example::

    from core.tools import calculator
    from core.tools.langchain_adapter import to_langchain

    lc = to_langchain(calculator)
    lc.invoke({"expression": "6 * 7"})   # "42"
"""

from __future__ import annotations

from typing import Any

from core.tools.base import Tool
from llm_backend.errors import MissingDependencyError


def to_langchain(tool: Tool) -> Any:
    """A ``langchain_core.tools.StructuredTool`` with the same name, description and argument schema. LangChain
    validates the arguments with our pydantic model (or our JSON schema for schema-built tools); the function
    returns the observation text, and tool faults come back as that text, as in our agent."""
    try:
        from langchain_core.tools import StructuredTool
    except ImportError as exc:
        raise MissingDependencyError("langchain-core", "the LangChain tool adapter") from exc

    def call(**kwargs: Any) -> str:
        return tool.run(kwargs).content

    schema: Any = tool.args_model if tool.args_model is not None else tool.parameters
    return StructuredTool.from_function(func=call, name=tool.name, description=tool.description, args_schema=schema)


def from_langchain(lc_tool: Any) -> Tool:
    """Wrap a LangChain ``BaseTool`` as our :class:`Tool` (JSON schema from ``tool_call_schema``)."""
    schema_source = getattr(lc_tool, "tool_call_schema", None) or getattr(lc_tool, "args_schema", None)
    if isinstance(schema_source, dict):
        parameters = dict(schema_source)
    elif schema_source is not None and hasattr(schema_source, "model_json_schema"):
        parameters = schema_source.model_json_schema()
    else:
        parameters = {"type": "object", "properties": {}}
    parameters.pop("title", None)
    parameters.pop("description", None)

    def run(**kwargs: Any) -> Any:
        return lc_tool.invoke(kwargs)

    return Tool.from_schema(lc_tool.name, lc_tool.description or lc_tool.name, parameters, run)
