"""`ragent mcp`: knowledge bases (kb_list, kb_search, kb_ask) and the built-in tools over the Model Context Protocol,
for Claude Desktop-style clients (stdio) or over streamable HTTP (``--http``)."""

from __future__ import annotations

import os

import typer


def register(app: typer.Typer) -> None:
    """Add `mcp` to the main CLI."""
    app.command("mcp")(mcp_command)


def mcp_command(
    http: bool = typer.Option(False, "--http", help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio."),
    host: str = typer.Option("127.0.0.1", help="With --http: address to bind."),
    port: int = typer.Option(8101, help="With --http: port."),
    tools: str = typer.Option("calculator,datetime,python", "--tools", help="Built-in tools to offer besides kb_list, kb_search and kb_ask (comma-separated; '' for none)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Model server for kb_ask (default: the managed one)."),
    model: str | None = typer.Option(None, "--model", help="Served model name for kb_ask (default: the server's first)."),
) -> None:
    """Serve knowledge bases and tools to MCP clients.

    stdio (default): the client starts this command itself, e.g. in Claude Desktop's config
    {"mcpServers": {"ragent": {"command": "ragent", "args": ["mcp"]}}}. Nothing but the protocol goes to stdout.
    --http: streamable HTTP at http://127.0.0.1:8101/mcp; with RAGENT_API_SERVER_KEY set, clients must send it as a
    bearer token.
    """
    from apps.api import API_KEY_ENV
    from apps.api.server import LOOPBACK, serve_forever
    from apps.cli.backend import client_settings, fail
    from apps.mcp_server import build_server, http_app
    from llm_backend.errors import RagentError

    try:
        settings = client_settings(base_url, model)
        server = build_server(settings, tools=tuple(t.strip() for t in tools.split(",") if t.strip()))
    except RagentError as exc:
        raise fail(exc) from exc
    if not http:
        server.run("stdio")
        return
    key = os.environ.get(API_KEY_ENV) or None
    if host not in LOOPBACK and key is None:
        typer.secho(f"warning: serving MCP on {host} without a key; set {API_KEY_ENV} to require one.", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"ragent mcp on http://{host}:{port}/mcp ({'bearer key required' if key else 'no key'}). Ctrl-C stops it.", err=True)
    serve_forever(http_app(server, host=host, key=key), host=host, port=port, log_level="warning")
