"""``ragent app``: build (or refresh) the default knowledge base and serve the Streamlit app.

Example::

    ragent app --with-default-kb            # http://127.0.0.1:8501, the user guide as knowledge base "ragent-docs"
    ragent app --host 0.0.0.0 --port 8080   # reachable from other machines (mind who can reach it)
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import typer


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line for the app (headless, no usage statistics, no file watcher)."""
    from apps.logs import resolve_level
    from apps.ui import APP_PATH

    return [
        sys.executable, "-m", "streamlit", "run", str(APP_PATH),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        # Streamlit's own log lines at the level the user chose (errors only by default), like every library's.
        "--logger.level", "debug" if resolve_level(None) <= logging.DEBUG else "error",
    ]


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1" if host in ("0.0.0.0", "") else host, port)) == 0


def register(app: typer.Typer) -> None:
    """Add the ``app`` command to the main CLI."""

    @app.command("app")
    def run_app(
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default 127.0.0.1: this machine only)."),
        port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port (default 8501)."),
        with_default_kb: bool = typer.Option(
            False, "--with-default-kb", help="Build or refresh the knowledge base 'ragent-docs' from the user guide in docs/ first (incremental)."
        ),
        kb_embedder: str = typer.Option(
            "e5", "--kb-embedder", help="Embedder of the default knowledge base: e5 (multilingual dense + BM25, the default; without bf16 matrix units (AMX) the first build exports the model once, about a minute), none (BM25 only, builds in seconds) or minilm (English)."
        ),
        docs: Path | None = typer.Option(None, "--docs", help="Folder of the guide for the default knowledge base (default: docs/guide)."),
        base_url: str | None = typer.Option(None, "--base-url", help="Model server URL for the app (default: settings, RAGENT_BASE_URL)."),
        model: str | None = typer.Option(None, "--model", help="Served model name (default: the server's first)."),
    ) -> None:
        """Serve the app: knowledge-base chat, agent runner and evaluation dashboard (Streamlit)."""
        from apps.ui.common import KB_ENV
        from apps.ui.default_kb import DEFAULT_KB, ensure_default_kb
        from knowledge.registry import KnowledgeBaseRegistry
        from llm_backend.errors import RagentError
        from llm_backend.launcher import discovered_base_url
        from llm_backend.settings import Settings

        env = dict(os.environ)
        try:
            settings = Settings.load(base_url=base_url, model=model)
            settings = settings.model_copy(update={"base_url": discovered_base_url(settings)})
            if port_in_use(host, port):
                raise RagentError(f"port {port} is already in use (is the app already running?). Open it, stop it, or pass --port.")
            if with_default_kb:
                typer.echo(f"knowledge base {DEFAULT_KB}: reading the user guide ...", err=True)
                registry = KnowledgeBaseRegistry(settings.home, models_dir=settings.models_dir)
                report = ensure_default_kb(registry, docs=docs, embedder=kb_embedder, progress=True)
                typer.echo(f"knowledge base {DEFAULT_KB}: {report.summary()}", err=True)
                for failed in report.failed:
                    typer.secho(f"  failed: {failed.path}: {failed.reason}", fg=typer.colors.YELLOW, err=True)
                env[KB_ENV] = DEFAULT_KB
        except RagentError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from exc
        # The app's pages find the server as every command does; pass the resolved URL on explicitly.
        env["RAGENT_BASE_URL"] = settings.base_url
        if model:
            env["RAGENT_MODEL"] = model
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
        typer.echo(f"serving the app at http://{host}:{port} (model server {settings.base_url}); Ctrl-C stops it", err=True)
        try:
            code = subprocess.call(streamlit_command(host, port), env=env)
        except KeyboardInterrupt:
            code = 0
        raise typer.Exit(code)
