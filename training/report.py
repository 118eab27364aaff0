"""What a training run did and measured (:class:`TrainReport`, saved as ``training_run.json`` beside the checkpoint),
and the provenance it records: library versions, git commit, time."""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainReport:
    """What a run did and measured; saved as ``training_run.json`` in the output folder."""

    kind: str
    out_dir: str
    steps: int
    minutes: float
    n_params: int
    train_tokens: int
    first_loss: float | None
    last_loss: float | None
    eval_tokens: int | None
    perplexity_before: float | None
    perplexity_after: float | None
    loss_png: str | None
    model: dict[str, Any]
    data: dict[str, Any]
    options: dict[str, Any]
    provenance: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def provenance() -> dict[str, Any]:
    """Versions of the training libraries, the git commit and the time, for the run report."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for package in ("torch", "transformers", "accelerate", "tokenizers"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    return {"versions": versions, "git_commit": commit, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
