"""Find tasks: the built-in YAML files in ``evaluation/tasks/``, the user's own in ``<home>/eval/tasks/``, or any
YAML file given by path. A user file with the same name as a built-in one replaces it."""

from __future__ import annotations

import logging
from pathlib import Path

from evaluation.task import TaskSpec, load_task_file
from llm_backend.errors import ConfigError, did_you_mean

log = logging.getLogger(__name__)

BUILTIN_TASKS_DIR = Path(__file__).with_name("tasks")


def user_tasks_dir(home: Path) -> Path:
    """Where a user drops their own task YAML files."""
    return home / "eval" / "tasks"


def _task_files(dirs: list[Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            files[path.stem] = path  # later folders (the user's) replace earlier ones
    return files


class TaskRegistry:
    """Task names -> task files. Cheap to build; files are parsed on :meth:`get` / :meth:`all`."""

    def __init__(self, home: Path | None = None, extra_dirs: list[Path] | None = None) -> None:
        dirs = [BUILTIN_TASKS_DIR]
        if home is not None:
            dirs.append(user_tasks_dir(home))
        dirs.extend(extra_dirs or [])
        self.dirs = dirs
        self._files = _task_files(dirs)

    def names(self) -> list[str]:
        """All known task names, sorted."""
        return sorted(self._files)

    def path(self, name: str) -> Path:
        """The YAML file of ``name``; raises with a "did you mean" when unknown."""
        if name in self._files:
            return self._files[name]
        raise ConfigError(
            f"unknown task {name!r}. {did_you_mean(name, self._files)}Known tasks: {', '.join(self.names())}. "
            f"Add your own as a YAML file in {self.dirs[1] if len(self.dirs) > 1 else BUILTIN_TASKS_DIR}, "
            "or pass the path of a task file."
        )

    def get(self, name_or_path: str) -> TaskSpec:
        """Load a task by registered name, or from a YAML file path."""
        candidate = Path(name_or_path).expanduser()
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            return load_task_file(candidate)
        return load_task_file(self.path(name_or_path))

    def all(self) -> list[TaskSpec]:
        """Every task that parses; a broken user file is logged and skipped so ``eval list`` still works."""
        tasks = []
        for name in self.names():
            try:
                tasks.append(load_task_file(self._files[name]))
            except ConfigError as exc:
                log.warning("skipping task %s: %s", name, exc)
        return tasks
