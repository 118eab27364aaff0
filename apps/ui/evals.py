"""The evaluation dashboard without Streamlit: start a benchmark run as a background job, and turn run results into
tables (runs, per-sample records, leaderboard) the page shows.

Example::

    job = JOBS.submit("eval", "gsm8k", make_eval_work(settings, "gsm8k", model="qwen", limit=20))
    rows = runs_table(load_runs(settings.home))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evaluation.leaderboard import build_leaderboard
from evaluation.report import load_results
from evaluation.runner import RunOptions, run_task, runs_root
from evaluation.types import RunResult, SampleRecord

if TYPE_CHECKING:
    from apps.ui.jobs import Job
    from llm_backend.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalRequest:
    """What the Run form asks for."""

    task: str
    model: str | None = None
    limit: int | None = 10
    concurrency: int = 4
    data_dir: Path | None = None
    rerun: bool = False


def make_eval_work(settings: Settings, request: EvalRequest) -> _EvalWork:
    """A callable for :meth:`JobRunner.submit` that runs ``request`` with per-sample progress, writes the report
    and returns the :class:`RunResult`."""
    return _EvalWork(settings, request)


class _EvalWork:
    def __init__(self, settings: Settings, request: EvalRequest) -> None:
        self.settings = settings
        self.request = request

    def __call__(self, job: Job) -> RunResult:
        from evaluation.data import load_task_data
        from evaluation.registry import TaskRegistry
        from evaluation.report import write_run_report
        from llm_backend.client import OpenAIChatClient

        req = self.request
        settings = self.settings.model_copy(
            update={"model": req.model or self.settings.model, "data_dir": req.data_dir or self.settings.data_dir, "concurrency": req.concurrency}
        )
        spec = TaskRegistry(settings.home).get(req.task)
        job.update(message="loading the data")
        total = len(load_task_data(spec, data_dir=settings.data_dir, limit=req.limit).samples)
        job.update(done=0, total=total, message="sending requests")
        errors = 0

        def on_record(record: SampleRecord) -> None:
            nonlocal errors
            if record.error:
                errors += 1
                if errors <= 5:
                    job.note(f"sample {record.sample_id}: {record.error}")
            job.update(done=job.done + 1, message=f"{errors} errors" if errors else "")

        client = OpenAIChatClient(settings)
        options = RunOptions(limit=req.limit, concurrency=req.concurrency, data_dir=settings.data_dir, rerun=req.rerun)
        result = run_task(spec, client=client, settings=settings, options=options, on_record=on_record)
        write_run_report(Path(result.run_dir))
        primary = result.primary
        job.update(done=total, message=f"{result.primary_metric} = {100 * primary.value:.1f}%" if primary else "no score")
        return result


def load_runs(home: Path) -> list[tuple[Path, RunResult]]:
    """Every completed run under the data home, newest first."""
    runs = load_results(runs_root(home))
    return sorted(runs, key=lambda r: r[1].provenance.get("finished_at") or "", reverse=True)


def run_label(result: RunResult) -> str:
    """``gsm8k · model · n=20 · 2026-11-29T10:00``."""
    n = result.counts.get("samples", 0)
    return f"{result.task['name']} · {result.model} · n={n} · {str(result.provenance.get('finished_at', ''))[:16]}"


def runs_table(runs: list[tuple[Path, RunResult]]) -> list[dict[str, Any]]:
    """One row per run: task, model, primary metric (%), stderr, samples, errors, finished, folder."""
    rows = []
    for run_dir, r in runs:
        p = r.primary
        rows.append({
            "task": r.task["name"],
            "model": r.model,
            "metric": r.primary_metric,
            "value (%)": round(100 * p.value, 2) if p else None,
            "± stderr": round(100 * p.stderr, 2) if p and p.stderr is not None else None,
            "samples": r.counts.get("samples", 0),
            "errors": r.counts.get("errors", 0),
            "finished": r.provenance.get("finished_at", ""),
            "run": str(run_dir),
        })
    return rows


def metrics_table(result: RunResult) -> list[dict[str, Any]]:
    """The metrics of one run, primary first."""
    items = sorted(result.metrics.items(), key=lambda kv: (kv[0] != result.primary_metric, kv[0]))
    return [
        {"metric": name + (" (primary)" if name == result.primary_metric else ""), "value (%)": round(100 * mv.value, 2),
         "± stderr": round(100 * mv.stderr, 2) if mv.stderr is not None else None, "n": mv.n}
        for name, mv in items
    ]


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def samples_table(records: list[SampleRecord], primary_metric: str) -> list[dict[str, Any]]:
    """One row per sample: id, group, target, extracted answer, score, error, latency."""
    rows = []
    for r in records:
        answer = r.responses[0].get("text", "") if r.responses else ""
        rows.append({
            "sample": r.sample_id,
            "group": r.group or "",
            "target": _short(r.target, 60),
            "extracted": _short(r.extracted, 60),
            "answer": _short(answer),
            primary_metric: r.metrics.get(primary_metric),
            "error": r.error or "",
            "latency (s)": round(r.latency_s, 2),
        })
    return rows


def leaderboard_table(runs: list[tuple[Path, RunResult]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows ``{"model", "mean (%)", task: value (%)...}`` (best mean first) and the task columns."""
    board = build_leaderboard(runs)
    tasks = sorted({t for cells in board.values() for t in cells})
    rows = []
    for model, cells in board.items():
        row: dict[str, Any] = {"model": model, "mean (%)": round(100 * sum(c.value for c in cells.values()) / len(cells), 2)}
        for task in tasks:
            cell = cells.get(task)
            row[task] = round(100 * cell.value, 2) if cell else None
        rows.append(row)
    rows.sort(key=lambda r: r["mean (%)"], reverse=True)
    return rows, tasks
