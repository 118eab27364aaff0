"""`ragent serve`, `ragent chat`, `ragent models`: the model backend from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from llm_backend.errors import RagentError


def fail(error: RagentError | str, code: int = 1) -> typer.Exit:
    """Print an actionable error (no traceback) and return the Exit to raise."""
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def client_settings(base_url: str | None = None, model: str | None = None, **extra: Any) -> Any:
    """Settings for client commands: flags > env/YAML > the managed server's recorded URL > default."""
    from llm_backend.launcher import discovered_base_url
    from llm_backend.settings import Settings

    settings = Settings.load(base_url=base_url, model=model, **extra)
    url = discovered_base_url(settings)
    return settings.model_copy(update={"base_url": url}) if url != settings.base_url else settings


def register(app: typer.Typer) -> None:
    """Add `serve`, `chat` and `models` to the main CLI."""
    app.command("serve")(serve)
    app.command("chat")(chat)
    app.command("models")(models)


def serve(
    engine: str = typer.Option(None, help="vllm (default), llamacpp or external."),
    model: str = typer.Option(
        None, "--model", "-m",
        help="Checkpoint folder (e.g. from `ragent train`), .gguf file, or a known offline model name "
        "(qwen2.5-coder-0.5b-instruct [default], qwen2.5-coder-1.5b-instruct). For --engine external: the served model name.",
    ),
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port (default 8000)."),
    base_url: str = typer.Option(None, help="For --engine external: the server's OpenAI-compatible URL."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once healthy and leave the server running."),
    status: bool = typer.Option(False, "--status", help="Show the managed server's state and exit."),
    stop: bool = typer.Option(False, "--stop", help="Stop the managed server and exit."),
    prepare: bool = typer.Option(False, "--prepare", help="Only prepare the model (assemble, verify, convert) and exit."),
    name: str = typer.Option("default", help="Name of the managed server (several can run on different ports)."),
    max_model_len: int = typer.Option(None, help="Context length (default 4096)."),
    tensor_parallel_size: int = typer.Option(None, help="vLLM: GPUs per replica for tensor parallelism."),
    pipeline_parallel_size: int = typer.Option(None, help="vLLM: pipeline stages (across nodes with Ray)."),
    distributed_executor_backend: str = typer.Option(None, help="vLLM: 'ray' for multi-node serving, or 'mp'."),
    kv_cache_gib: float = typer.Option(None, help="vLLM on CPU: KV cache size in GiB (default 1)."),
    threads: int = typer.Option(None, help="llama.cpp: CPU threads (default all cores)."),
    start_timeout: float = typer.Option(None, help="Seconds to wait for the engine to become healthy (default 600)."),
    engine_arg: list[str] = typer.Option(None, "--engine-arg", help="Extra argument passed to the engine (repeatable)."),
) -> None:
    """Start the model server (vLLM by default, on this CPU or your GPUs) and wait until it answers.

    Without --detach it runs in the foreground until Ctrl-C. The server's URL is recorded so that `ragent chat` and
    every other command find it.
    """
    from llm_backend.launcher import ServerManager
    from llm_backend.settings import Settings

    try:
        settings = Settings.load(
            engine=engine, serve_model=model if engine != "external" else None, model=model if engine == "external" else None,
            host=host, port=port, base_url=base_url, max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
            distributed_executor_backend=distributed_executor_backend, kv_cache_gib=kv_cache_gib, threads=threads,
            start_timeout=start_timeout, engine_args=engine_arg or None,
        )
        manager = ServerManager(settings, name=name)
        if status:
            state = manager.status()
            typer.echo(json.dumps(state, indent=2, default=str))
            raise typer.Exit(0 if state["running"] else 3)
        if prepare:
            from llm_backend.model_assets import resolve_model

            resolved = resolve_model(settings.serve_model, settings.engine if settings.engine != "external" else "vllm", settings.models_dir)
            typer.echo(f"model ready: {resolved.path}")
            return
        if stop:
            stopped = manager.stop()
            typer.echo(f"stopped server {name!r}" if stopped else f"no server named {name!r} is running")
            return
        handle = manager.start(detach=True, progress=lambda m: typer.secho(m, err=True, fg=typer.colors.CYAN))
        typer.echo(f"serving {handle.model} at {handle.base_url}")
        if detach or settings.engine == "external":
            typer.echo(f"logs: {handle.log_path}" if handle.log_path else "", nl=bool(handle.log_path))
            typer.echo("stop it with: ragent serve --stop" + ("" if name == "default" else f" --name {name}"))
            return
        typer.echo("press Ctrl-C to stop")
        code = manager.wait()
        if code not in (0, 130, -15):
            raise fail(f"the engine exited with code {code}; see {handle.log_path}")
    except RagentError as exc:
        raise fail(exc) from None


def chat(
    question: str = typer.Argument(None, help="Ask one question and stream the answer. Without it: interactive chat."),
    system: str = typer.Option(None, help="System prompt."),
    model: str = typer.Option(None, "--model", "-m", help="Served model name (default: the server's first)."),
    base_url: str = typer.Option(None, help="Server URL (default: the managed server, else http://127.0.0.1:8000/v1)."),
    max_tokens: int = typer.Option(512, help="Most tokens to generate per answer."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0 = greedy)."),
) -> None:
    """Chat with the served model; answers stream as they are generated."""
    from llm_backend.client import OpenAIChatClient
    from llm_backend.errors import StreamInterruptedError

    try:
        client = OpenAIChatClient(client_settings(base_url, model))
        history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        if question is not None:
            _answer(client, [*history, {"role": "user", "content": question}], max_tokens, temperature)
            return
        typer.secho(f"chatting with {client.model} at {client.base_url} — /reset clears the history, /exit or Ctrl-D quits", fg=typer.colors.CYAN, err=True)
        while True:
            try:
                line = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                typer.echo()
                return
            if not line:
                continue
            if line in ("/exit", "/quit"):
                return
            if line == "/reset":
                history = history[:1] if system else []
                continue
            history.append({"role": "user", "content": line})
            try:
                text = _answer(client, history, max_tokens, temperature)
            except StreamInterruptedError as exc:
                typer.secho(f"\n[interrupted] {exc}", fg=typer.colors.RED, err=True)
                text = exc.partial
            history.append({"role": "assistant", "content": text})
    except RagentError as exc:
        raise fail(exc) from None


def _answer(client: Any, messages: list[dict[str, Any]], max_tokens: int, temperature: float) -> str:
    parts: list[str] = []
    for chunk in client.stream(messages, max_tokens=max_tokens, temperature=temperature):
        if chunk.delta:
            parts.append(chunk.delta)
            sys.stdout.write(chunk.delta)
            sys.stdout.flush()
    sys.stdout.write("\n")
    return "".join(parts)


def models(
    base_url: str = typer.Option(None, help="Server URL (default: the managed server)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the models the server serves, and the offline models that `ragent serve --model` can start."""
    from llm_backend.client import OpenAIChatClient
    from llm_backend.model_assets import KNOWN_MODELS

    settings = client_settings(base_url)
    try:
        served = OpenAIChatClient(settings).models()
        error = None
    except RagentError as exc:
        served, error = [], str(exc)
    offline = {name: {"hf_name": spec.hf_name, "cached": (Path(settings.models_dir) / "gguf" / spec.filename).exists()} for name, spec in KNOWN_MODELS.items()}
    if as_json:
        typer.echo(json.dumps({"base_url": settings.base_url, "served": served, "error": error, "offline": offline}, indent=2))
        return
    if error:
        typer.secho(f"server: {error}", fg=typer.colors.YELLOW)
    else:
        typer.echo(f"served at {settings.base_url}:")
        for name in served:
            typer.echo(f"  {name}")
    typer.echo("offline models for `ragent serve --model NAME`:")
    for name, info in offline.items():
        typer.echo(f"  {name}  ({info['hf_name']}{', cached' if info['cached'] else ''})")
