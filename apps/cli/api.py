"""`ragent api`: the OpenAI-compatible HTTP service (knowledge bases as ``kb:<name>``, agents as ``agent:<tools>``,
the backend's models passed through, embeddings from knowledge-base embedders)."""

from __future__ import annotations

import os

import typer


def register(app: typer.Typer) -> None:
    """Add `api` to the main CLI."""
    app.command("api")(api)


def api(
    host: str = typer.Option("127.0.0.1", help="Address to bind. Anything but loopback should come with RAGENT_API_SERVER_KEY set."),
    port: int = typer.Option(8100, help="Port."),
    base_url: str | None = typer.Option(None, "--base-url", help="The model server behind the service (default: the managed one)."),
    model: str | None = typer.Option(None, "--model", help="Backend model for kb: and agent: answers (default: the server's first)."),
    concurrency: int | None = typer.Option(None, help="Requests worked on at once (default: settings.concurrency, 8); more wait."),
    log_level: str = typer.Option("info", help="uvicorn log level (debug, info, warning, error)."),
) -> None:
    """Serve knowledge bases and agents to any OpenAI client (Open WebUI, LangChain, the openai SDK).

    Models: kb:<name> (cited answers; citations in message.citations), agent:<tools> (e.g. agent:calculator,python;
    steps in message.steps), and every model of the backend. Endpoints: /v1/models, /v1/chat/completions (streaming
    too), /v1/embeddings, /health. With RAGENT_API_SERVER_KEY set, clients must send it as their API key.
    """
    from apps.api import API_KEY_ENV, create_app
    from apps.api.server import LOOPBACK, serve_forever
    from apps.cli.backend import client_settings, fail
    from llm_backend.errors import RagentError

    try:
        settings = client_settings(base_url, model, concurrency=concurrency)
        key = os.environ.get(API_KEY_ENV) or None
        if host not in LOOPBACK and key is None:
            typer.secho(
                f"warning: serving on {host} without a key: anyone who can reach this port can use your knowledge bases "
                f"and model. Set {API_KEY_ENV} to require one.", fg=typer.colors.YELLOW, err=True,
            )
        app = create_app(settings, api_key=key)
    except RagentError as exc:
        raise fail(exc) from exc
    auth = "bearer key required" if key else "no key"
    typer.echo(f"ragent api on http://{host}:{port}/v1 ({auth}; backend {settings.base_url}). Ctrl-C stops it.", err=True)
    serve_forever(app, host=host, port=port, log_level=log_level)
