"""Reports: a markdown page with PNG plots for one run, or for every run under a folder.

Plots are drawn with matplotlib's ``Agg`` backend (no display needed): the metrics with their standard errors, the
per-sample latency, and, for grouped tasks (MMLU subjects, BFCL categories), the score of each group.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.store import RESULTS_FILE, RunStore
from evaluation.types import RunResult, SampleRecord

log = logging.getLogger(__name__)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def find_runs(root: Path) -> list[Path]:
    """Run directories (those holding a ``results.json``) under ``root``, sorted by path."""
    if (root / RESULTS_FILE).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(RESULTS_FILE))


def _fmt(value: float | None, scale: float = 100.0) -> str:
    return "" if value is None else f"{value * scale:.2f}"


def _metric_rows(result: RunResult) -> list[str]:
    rows = ["| metric | value (%) | ± stderr | n |", "|---|---:|---:|---:|"]
    for name, mv in sorted(result.metrics.items(), key=lambda kv: (kv[0] != result.primary_metric, kv[0])):
        star = " (primary)" if name == result.primary_metric else ""
        rows.append(f"| {name}{star} | {_fmt(mv.value)} | {_fmt(mv.stderr)} | {mv.n} |")
    return rows


def plot_metrics(result: RunResult, path: Path) -> Path:
    """Bar chart of every metric (percent) with standard-error bars."""
    plt = _pyplot()
    names = sorted(result.metrics)
    values = [100 * result.metrics[n].value for n in names]
    errors = [100 * (result.metrics[n].stderr or 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names) + 2), 3.6))
    bars = ax.bar(names, values, yerr=errors, capsize=4, color="#4C72B0")
    for bar, v in zip(bars, values, strict=True):
        ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, max(100.0, max(values, default=0) * 1.1))
    ax.set_title(f"{result.task['name']} - {result.model} (n={result.counts.get('scored', 0)})")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(records: Sequence[SampleRecord], path: Path) -> Path | None:
    """Histogram of per-sample latency (requests answered from the cache left out)."""
    latencies = [r.latency_s for r in records if not r.cached and r.error is None and r.latency_s > 0]
    if not latencies:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 3)), color="#55A868")
    ax.set_xlabel("seconds per sample")
    ax.set_ylabel("samples")
    ax.set_title("latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_groups(result: RunResult, path: Path) -> Path | None:
    """Horizontal bars of the primary metric per group, sorted."""
    metric = result.primary_metric
    items = sorted(((g, m[metric].value) for g, m in result.groups.items() if metric in m), key=lambda kv: kv[1])
    if not items:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.22 * len(items) + 1)))
    ax.barh([g for g, _ in items], [100 * v for _, v in items], color="#8172B2")
    ax.set_xlabel(f"{metric} (%)")
    ax.set_xlim(0, 100)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{result.task['name']} by group")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _excerpt(text: Any, limit: int = 300) -> str:
    s = str(text).replace("\n", "⏎ ").replace("|", "\\|")
    return s if len(s) <= limit else s[:limit] + "…"


def write_run_report(run_dir: Path) -> Path:
    """Write ``report.md`` (and its PNG plots) into ``run_dir``; returns the markdown path."""
    store = RunStore(run_dir)
    result = store.read_results()
    records = store.read_samples()
    plots = [plot_metrics(result, run_dir / "metrics.png"), plot_latency(records, run_dir / "latency.png"), plot_groups(result, run_dir / "groups.png")]
    prov = result.provenance
    git = prov.get("git") or {}
    t = result.timings
    lines = [
        f"# {result.task['name']} — {result.model}",
        "",
        f"- task: `{result.task['name']}` v{result.task['version']} ({result.task['kind']})"
        + (f", mirrors {result.task['reference']}" if result.task.get("reference") else ""),
        f"- model: `{result.model}` at {result.server}",
        f"- code: commit `{(git.get('commit') or 'unknown')[:12]}`{' (uncommitted changes)' if git.get('dirty') else ''}, "
        f"python {prov.get('python')}, finished {prov.get('finished_at')}",
        f"- samples: {result.counts.get('samples')} (scored {result.counts.get('scored')}, errors {result.counts.get('errors')}, "
        f"resumed {result.counts.get('resumed', 0)}, answered from cache {result.counts.get('cached', 0)})",
        f"- time: {t.get('wall_s')} s for {t.get('samples_evaluated')} samples ({t.get('samples_per_s')} samples/s, concurrency "
        f"{result.config.get('concurrency')}), mean latency {t.get('mean_latency_s')} s, tokens {t.get('prompt_tokens')} in / "
        f"{t.get('completion_tokens')} out",
        "",
        "## Metrics",
        "",
        *_metric_rows(result),
        "",
    ]
    if result.counts.get("errors"):
        lines.append(f"**{result.counts['errors']} samples failed and are not in the averages**; run the same command again to retry them.")
        lines.append("")
    lines += [f"![{p.stem}]({p.name})" for p in plots if p is not None]
    lines.append("")
    if result.groups:
        metric = result.primary_metric
        lines += ["## By group", "", f"| group | {metric} (%) | n |", "|---|---:|---:|"]
        for group, metrics in sorted(result.groups.items()):
            if metric in metrics:
                lines.append(f"| {group} | {_fmt(metrics[metric].value)} | {metrics[metric].n} |")
        lines.append("")
    errors = [r for r in records if r.error]
    if errors:
        lines += ["## Errors", "", "| sample | error |", "|---|---|"]
        lines += [f"| {r.sample_id} | {_excerpt(r.error, 200)} |" for r in errors[:10]]
        lines.append("")
    wrong = [r for r in records if r.error is None and r.metrics.get(result.primary_metric) == 0.0]
    if wrong:
        lines += ["## Examples of misses", "", "| sample | target | extracted | answer |", "|---|---|---|---|"]
        for r in wrong[:5]:
            answer = r.responses[0].get("text", "") if r.responses else ""
            lines.append(f"| {r.sample_id} | {_excerpt(r.target, 80)} | {_excerpt(r.extracted, 80)} | {_excerpt(answer)} |")
        lines.append("")
    cfg = result.config
    flags = [f"--limit {cfg['limit']}" if cfg.get("limit") else "", f"--limit-per-group {cfg['limit_per_group']}" if cfg.get("limit_per_group") else "",
             f"--num-fewshot {cfg['num_fewshot']}" if cfg.get("num_fewshot") is not None else "", f"--seed {cfg['seed']}" if cfg.get("seed") is not None else ""]
    lines += ["## Reproduce", "", "```", f"ragent eval run {result.task['name']} --model {result.model} --base-url {result.server} " + " ".join(f for f in flags if f), "```", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def load_results(root: Path) -> list[tuple[Path, RunResult]]:
    """Every readable run under ``root``."""
    out = []
    for run_dir in find_runs(root):
        try:
            out.append((run_dir, RunStore(run_dir).read_results()))
        except Exception as exc:  # a half-written or foreign folder must not break the overview
            log.warning("skipping %s: %s", run_dir, exc)
    return out


def write_runs_report(root: Path, out_dir: Path | None = None) -> Path:
    """``runs.md`` and ``runs.png``: one line per run under ``root`` (``ragent eval report --all``)."""
    out_dir = out_dir or root
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_results(root)
    lines = ["# Evaluation runs", "", "| task | model | primary metric | value (%) | ± | n | errors | finished | run |", "|---|---|---|---:|---:|---:|---:|---|---|"]
    for run_dir, r in sorted(runs, key=lambda x: (x[1].task["name"], x[1].model, x[1].provenance.get("finished_at") or "")):
        p = r.primary
        lines.append(
            f"| {r.task['name']} | {r.model} | {r.primary_metric} | {_fmt(p.value if p else None)} | {_fmt(p.stderr if p else None)} | "
            f"{p.n if p else 0} | {r.counts.get('errors', 0)} | {r.provenance.get('finished_at', '')} | {run_dir.relative_to(root) if run_dir != root else '.'} |"
        )
    if runs:
        plt = _pyplot()
        labels = [f"{r.task['name']}\n{r.model[:24]}" for _, r in runs]
        values = [100 * (r.primary.value if r.primary else 0.0) for _, r in runs]
        fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(runs) + 2), 3.8))
        ax.bar(range(len(runs)), values, color="#4C72B0")
        ax.set_xticks(range(len(runs)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("primary metric (%)")
        ax.set_ylim(0, 100)
        fig.tight_layout()
        fig.savefig(out_dir / "runs.png", dpi=110)
        plt.close(fig)
        lines += ["", "![runs](runs.png)"]
    path = out_dir / "runs.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
