"""A small MCP server for the client tests, on the official SDK: `python mcp_echo_server.py` serves stdio."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("echo")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)


@server.tool(name="shout.loud")
def shout(text: str) -> str:
    """Upper-case a text (its name has a dot, which OpenAI function names do not allow)."""
    return text.upper()


if __name__ == "__main__":
    server.run("stdio")
