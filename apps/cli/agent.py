"""`ragent agent run | resume | replay` and `ragent sandbox run`.

``ragent agent run "task"`` shows each step live (the model's thought, the tool calls, what came back) and then the
final answer; ``--trace FILE`` keeps the run as JSONL, which ``replay`` shows again and ``resume`` continues.
Heavy imports happen inside the commands so ``ragent --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(help="Run tool-using agents: run a task, replay or resume a trace.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Run Python code in the sandbox (no network, no files outside its work folder).", no_args_is_help=True)

TOOLS_HELP = (
    "Comma-separated tools: calculator, python, datetime, files (with --files), kb (with --kb), mcp or mcp:NAME (the "
    "MCP servers under mcp_servers: in the config), or user tools as package.module:function. Default: calculator,python,datetime."
)


@contextmanager
def _errors() -> Iterator[None]:
    """Our errors as one readable red line and exit status 1, never a traceback."""
    from llm_backend.errors import RagentError

    try:
        yield
    except RagentError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


class StepPrinter:
    """Renders agent events (live or replayed) on the terminal with rich."""

    def __init__(self, *, stream: Any = None, width: int = 500) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.width = width

    def _cut(self, text: str) -> str:
        text = text.strip()
        return text if len(text) <= self.width else text[: self.width] + f" ... [{len(text) - self.width} more]"

    def __call__(self, event: Any) -> None:
        from rich.markup import escape

        c = self.console
        if event.kind == "run_started":
            resumed = f", resuming after step {event.resumed_steps}" if event.resumed_steps else ""
            c.print(f"[bold]task:[/bold] {escape(event.task)}")
            c.print(f"[dim]model {event.model or '?'} · mode {event.mode} · tools {', '.join(event.tools) or 'none'} · "
                    f"at most {event.max_steps} steps{resumed}[/dim]")
        elif event.kind == "step_started":
            c.rule(f"step {event.step}", style="dim")
        elif event.kind == "model_replied":
            if event.thought:
                c.print(f"[cyan]thought:[/cyan] {escape(self._cut(event.thought))}")
            for call in event.tool_calls:
                args = call.raw_arguments if call.arguments is None else json.dumps(call.arguments, ensure_ascii=False)
                c.print(f"[yellow]→ {escape(call.name)}[/yellow]({escape(self._cut(args))})")
            if event.error:
                c.print(f"[red]could not parse the reply:[/red] {escape(self._cut(event.error))}")
        elif event.kind == "tool_finished":
            style = "red" if event.call.error else "green"
            c.print(f"[{style}]← {escape(event.call.name)}:[/{style}] {escape(self._cut(event.call.observation))}")
        elif event.kind == "run_finished":
            self.finished(event.result)

    def finished(self, result: Any) -> None:
        """The closing summary: the answer and the counts."""
        c = self.console
        c.rule(style="dim")
        u = result.usage
        c.print(
            f"[dim]{len(result.steps)} steps · stop: {result.stop_reason} · parse failures {result.parse_failures} · "
            f"invalid calls {result.invalid_calls} · tool errors {result.tool_errors} · tokens {u.prompt_tokens}+"
            f"{u.completion_tokens} · {result.duration_s:.1f} s[/dim]"
        )


def _build_agent(
    *, tools: str, kb: str | None, files: Path | None, mode: str, max_steps: int, trace: Path | None,
    base_url: str | None, model: str | None, instructions: str | None, timeout_s: float,
) -> Any:
    from apps.cli.backend import client_settings
    from core.agent import Agent
    from core.sandbox import Sandbox
    from core.tools import resolve_tools
    from llm_backend.client import OpenAIChatClient

    names = [n for n in tools.split(",") if n.strip()]
    sandbox = Sandbox(timeout_s=timeout_s)
    if "python" in names:
        sandbox.check()  # fail before the first model call, with the fix, if no sandbox can be made
    toolset = resolve_tools(names, kb=kb, files_root=files, sandbox=sandbox)
    client = OpenAIChatClient(client_settings(base_url, model))
    metadata = {"tools": names, "kb": kb, "files": str(files) if files else None, "sandbox_timeout_s": timeout_s}
    return Agent(client, toolset, mode=mode, max_steps=max_steps, trace_path=trace, instructions=instructions, metadata=metadata)


def _finish(result: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(result.summary(), ensure_ascii=False, indent=2))
    else:
        answer = result.final_answer if result.final_answer is not None else "(no final answer)"
        typer.echo(answer)
    if result.final_answer is None:
        raise typer.Exit(2)


@app.command()
def run(
    task: str = typer.Argument(..., help="What the agent should do."),
    tools: str = typer.Option("calculator,python,datetime", "--tools", "-t", help=TOOLS_HELP),
    kb: str | None = typer.Option(None, "--kb", help="Knowledge base to search (adds the kb tool)."),
    files: Path | None = typer.Option(None, "--files", help="Folder the read_file / list_files tools may read (adds them)."),
    mode: str = typer.Option(
        "auto", "--mode",
        help="auto, native (constrained tool calls), native-plan (a plan in words first), native-think, react-json "
             "(JSON-schema ReAct), react (text), inline (reasoning in text; calculator results and python output "
             "written into it: best for small models on arithmetic).",
    ),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Steps before a final answer is forced (default 8; inline 40)."),
    trace: Path | None = typer.Option(None, "--trace", help="Write the run as JSONL here (replay / resume it later)."),
    instructions: str | None = typer.Option(None, "--instructions", help="Extra instructions for the system prompt."),
    timeout_s: float = typer.Option(10.0, "--python-timeout", help="Seconds a python tool call may run."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server (default: the managed one)."),
    model: str | None = typer.Option(None, "--model", help="Served model name (default: the server's first)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result summary as JSON (steps still go to stderr)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not show the steps."),
) -> None:
    """Run a task: steps are shown live on stderr, the final answer is printed on stdout."""
    with _errors():
        from core.agent.modes import InlineToolMode

        steps = max_steps or (InlineToolMode.MAX_STEPS if mode == "inline" else 8)
        agent = _build_agent(tools=tools, kb=kb, files=files, mode=mode, max_steps=steps, trace=trace,
                             base_url=base_url, model=model, instructions=instructions, timeout_s=timeout_s)
        result = agent.run(task, on_event=None if quiet else StepPrinter())
    if trace:
        typer.secho(f"trace: {trace}", fg=typer.colors.BRIGHT_BLACK, err=True)
    _finish(result, as_json)


@app.command()
def resume(
    trace: Path = typer.Argument(..., exists=True, dir_okay=False, help="Trace written by `ragent agent run --trace`."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="New step limit (default: the recorded one)."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server (default: the managed one)."),
    model: str | None = typer.Option(None, "--model", help="Served model name."),
    as_json: bool = typer.Option(False, "--json", help="Print the result summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not show the steps."),
) -> None:
    """Continue an interrupted run from its last complete step (same task, tools and mode), appending to its trace."""
    from core.agent import load_trace

    with _errors():
        recorded = load_trace(trace)
        h = recorded.header
        meta = h.get("metadata") or {}
        agent = _build_agent(
            tools=",".join(meta.get("tools") or h.get("tools") or []), kb=meta.get("kb"),
            files=Path(meta["files"]) if meta.get("files") else None, mode=str(h.get("mode") or "auto"),
            max_steps=max_steps or int(h.get("max_steps") or 8), trace=trace, base_url=base_url, model=model,
            instructions=None, timeout_s=float(meta.get("sandbox_timeout_s") or 10.0),
        )
        result = agent.resume(trace, on_event=None if quiet else StepPrinter())
    _finish(result, as_json)


@app.command()
def replay(
    trace: Path = typer.Argument(..., exists=True, dir_okay=False, help="Trace written by `ragent agent run --trace`."),
    as_json: bool = typer.Option(False, "--json", help="Print the steps as JSON instead."),
) -> None:
    """Show a recorded run again, step by step (no model calls)."""
    from core.agent import AgentResult, load_trace, replay_events

    with _errors():
        recorded = load_trace(trace)
    stop = (recorded.result or {}).get("stop_reason", "unfinished")
    result = AgentResult.from_steps(recorded.task, recorded.steps, stop, mode=str(recorded.header.get("mode", "")),
                                    model=str(recorded.header.get("model", "")), trace_path=str(trace),
                                    duration_s=float((recorded.result or {}).get("duration_s", 0.0)))
    if as_json:
        typer.echo(json.dumps({**result.summary(), "steps": [s.to_dict() for s in result.steps]}, ensure_ascii=False, indent=2))
        return
    printer = StepPrinter(stream=sys.stdout)
    for event in replay_events(recorded):
        printer(event)
    printer.finished(result)
    answer = result.final_answer if result.final_answer is not None else f"(no final answer: {stop})"
    printer.console.print(f"[bold]final answer:[/bold] {answer}")


@sandbox_app.command("run")
def sandbox_run(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Python program to run."),
    timeout_s: float = typer.Option(10.0, "--timeout", help="Wall-clock seconds."),
    memory_mb: int = typer.Option(512, "--memory-mb", help="Address-space limit in MB."),
    max_output_bytes: int = typer.Option(1_000_000, "--max-output", help="Bytes of stdout + stderr kept."),
    stdin_file: Path | None = typer.Option(None, "--stdin", exists=True, dir_okay=False, help="File fed to the program's stdin."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Run FILE.py in the sandbox and report its output, or the limit or rule that stopped it.

    Exit status: the program's own when it ran normally, 3 when the sandbox stopped it, 1 when no sandbox could
    be made (nothing runs then)."""
    from core.sandbox import run_code

    with _errors():
        stdin = stdin_file.read_text(encoding="utf-8") if stdin_file else None
        result = run_code(file.read_text(encoding="utf-8"), timeout_s=timeout_s, memory_mb=memory_mb,
                          max_output_bytes=max_output_bytes, stdin=stdin)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    else:
        if result.stdout:
            typer.echo(result.stdout, nl=not result.stdout.endswith("\n"))
        if result.stderr:
            typer.echo(result.stderr, err=True, nl=not result.stderr.endswith("\n"))
        status = f"exit code {result.exit_code} · {result.duration_s:.2f} s"
        if result.violation:
            typer.secho(f"violation: {result.violation} ({status})", fg=typer.colors.RED, err=True)
        else:
            typer.secho(status, fg=typer.colors.BRIGHT_BLACK, err=True)
    if result.violation:
        raise typer.Exit(3)
    if result.exit_code:
        raise typer.Exit(min(result.exit_code, 255) if result.exit_code > 0 else 1)
