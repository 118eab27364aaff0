"""Evaluation harness: benchmarks as versioned YAML tasks, run against any OpenAI-compatible server through the
project's client, faithful to the reference harnesses, cached, resumable, with reports and a leaderboard.

The walk: :class:`TaskSpec` (YAML) -> :class:`Sample` -> :class:`Request` -> cached/sent -> :class:`Response` ->
extracted answer -> :class:`SampleRecord` (with ``error`` when the request failed) -> :class:`RunResult` with
provenance -> report (markdown + PNG plots) -> leaderboard.

Example::

    from evaluation import RunOptions, TaskRegistry, run_task
    from llm_backend.client import OpenAIChatClient
    from llm_backend.settings import Settings

    settings = Settings.load(data_dir="../shared/data")
    result = run_task(TaskRegistry(settings.home).get("gsm8k"), client=OpenAIChatClient(settings), settings=settings,
                      options=RunOptions(limit=20))
    print(result.metrics["exact_match,strict-match"])
"""

from evaluation.registry import TaskRegistry
from evaluation.runner import RunInterrupted, RunOptions, arun_task, merge_runs, run_task
from evaluation.task import TaskSpec, load_task_file
from evaluation.types import MetricValue, Request, Response, RunResult, Sample, SampleRecord

__all__ = [
    "MetricValue",
    "Request",
    "Response",
    "RunInterrupted",
    "RunOptions",
    "RunResult",
    "Sample",
    "SampleRecord",
    "TaskRegistry",
    "TaskSpec",
    "arun_task",
    "load_task_file",
    "merge_runs",
    "run_task",
]
