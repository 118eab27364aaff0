"""Run the tiny task against a server; used by test_resume_kill.py as a process that gets killed with SIGKILL."""

from __future__ import annotations

import sys
from pathlib import Path

from evaluation.registry import TaskRegistry
from evaluation.runner import RunOptions, run_task
from llm_backend.client import OpenAIChatClient
from llm_backend.settings import Settings


def main() -> None:
    task_file, data_dir, url, run_dir, home = sys.argv[1:6]
    settings = Settings.load(base_url=url, home=Path(home), data_dir=Path(data_dir), max_retries=0, concurrency=3)
    result = run_task(
        TaskRegistry().get(task_file), client=OpenAIChatClient(settings), settings=settings,
        options=RunOptions(concurrency=3, use_cache=False), run_dir=Path(run_dir),
    )
    print(result.metrics["exact_match,strict"].value)


if __name__ == "__main__":
    main()
