"""The loss curve of a run as a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def loss_points(log_history: Sequence[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(train, eval) ``(step, loss)`` points from a ``Trainer`` log history (``trainer_state.json``).

    >>> loss_points([{"step": 10, "loss": 5.0}, {"step": 10, "eval_loss": 5.5}, {"step": 20, "train_loss": 4.0}])
    ([(10, 5.0)], [(10, 5.5)])
    """
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]
    held = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e and "step" in e]
    return train, held


def plot_loss_curve(log_history: Sequence[dict[str, Any]], path: Path, *, title: str = "training loss") -> Path:
    """Draw training (and held-out, when logged) loss against step into ``path``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, held = loss_points(log_history)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    try:
        if train:
            ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
        if held:
            ax.plot(*zip(*held, strict=True), "o-", label="held-out loss", color="tab:orange")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("cross-entropy (nats / token)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if train or held:
            ax.legend()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path
