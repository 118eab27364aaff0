"""``ragent mcp``: knowledge bases and built-in tools served over the Model Context Protocol (official ``mcp`` SDK).
See :mod:`apps.mcp_server.server`."""

from apps.mcp_server.server import BUILTIN, DEFAULT_HTTP_PORT, build_server, http_app

__all__ = ["BUILTIN", "DEFAULT_HTTP_PORT", "build_server", "http_app"]
