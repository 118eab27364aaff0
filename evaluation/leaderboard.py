"""A leaderboard across runs and models: one row per model, one column per task, the task's primary metric.

For each (task, model) the run with the most scored samples counts (the latest one on a tie), so a quick
``--limit 20`` check does not replace a full run. Each cell says how many samples it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.report import _pyplot, load_results
from evaluation.types import RunResult


@dataclass(frozen=True)
class Cell:
    """One task score of one model."""

    value: float
    stderr: float | None
    n: int
    metric: str
    run_dir: Path

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "stderr": self.stderr, "n": self.n, "metric": self.metric, "run_dir": str(self.run_dir)}


def build_leaderboard(runs: list[tuple[Path, RunResult]]) -> dict[str, dict[str, Cell]]:
    """``{model: {task: Cell}}`` from run results."""
    best: dict[tuple[str, str], tuple[Path, RunResult]] = {}
    for run_dir, result in runs:
        if result.primary is None:
            continue
        key = (result.model, result.task["name"])
        rank = (result.primary.n, result.provenance.get("finished_at") or "")
        if key not in best or rank > (best[key][1].primary.n, best[key][1].provenance.get("finished_at") or ""):  # type: ignore[union-attr]
            best[key] = (run_dir, result)
    board: dict[str, dict[str, Cell]] = {}
    for (model, task), (run_dir, result) in best.items():
        p = result.primary
        assert p is not None
        board.setdefault(model, {})[task] = Cell(p.value, p.stderr, p.n, result.primary_metric, run_dir)
    return board


def leaderboard_markdown(board: dict[str, dict[str, Cell]]) -> str:
    """The table: models sorted by their mean over the tasks they have, cells as ``value ± stderr (n)``."""
    tasks = sorted({t for cells in board.values() for t in cells})
    if not tasks:
        return "# Leaderboard\n\nNo completed runs yet: `ragent eval run TASK` first.\n"

    def avg(model: str) -> float:
        cells = board[model]
        return sum(c.value for c in cells.values()) / len(cells)

    header = "| model | mean | " + " | ".join(tasks) + " |"
    sep = "|---|---:|" + "---:|" * len(tasks)
    rows = []
    for model in sorted(board, key=avg, reverse=True):
        cells = []
        for task in tasks:
            c = board[model].get(task)
            cells.append("" if c is None else f"{100 * c.value:.1f}" + (f" ± {100 * c.stderr:.1f}" if c.stderr else "") + f" (n={c.n})")
        rows.append(f"| {model} | {100 * avg(model):.1f} | " + " | ".join(cells) + " |")
    metrics = sorted({f"{t}: {c.metric}" for cells in board.values() for t, c in cells.items()})
    return "\n".join(["# Leaderboard", "", header, sep, *rows, "", "Metrics (%): " + "; ".join(metrics), ""])


def write_leaderboard(root: Path, out_dir: Path | None = None) -> tuple[Path, dict[str, dict[str, Cell]]]:
    """Write ``leaderboard.md`` and ``leaderboard.png`` for the runs under ``root``."""
    out_dir = out_dir or root
    out_dir.mkdir(parents=True, exist_ok=True)
    board = build_leaderboard(load_results(root))
    path = out_dir / "leaderboard.md"
    text = leaderboard_markdown(board)
    tasks = sorted({t for cells in board.values() for t in cells})
    if board and tasks:
        plt = _pyplot()
        models = sorted(board)
        width = 0.8 / len(models)
        fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(tasks) + 2), 3.8))
        for i, model in enumerate(models):
            xs = [j + i * width for j in range(len(tasks))]
            ys = [100 * board[model][t].value if t in board[model] else 0.0 for t in tasks]
            ax.bar(xs, ys, width=width, label=model[:32])
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks)
        ax.set_ylabel("primary metric (%)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "leaderboard.png", dpi=110)
        plt.close(fig)
        text += "\n![leaderboard](leaderboard.png)\n"
    path.write_text(text, encoding="utf-8")
    return path, board
