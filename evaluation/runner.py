"""Run a task against a model: asynchronous with a concurrency limit, cached, resumable, with a progress bar.

Example::

    from evaluation import RunOptions, TaskRegistry, run_task
    from llm_backend.client import OpenAIChatClient
    from llm_backend.settings import Settings

    settings = Settings.load(data_dir="../shared/data")
    result = run_task(TaskRegistry(settings.home).get("gsm8k"), client=OpenAIChatClient(settings), settings=settings,
                      options=RunOptions(limit=20))
    print(result.metrics["exact_match,strict-match"].value)

A run lives in a directory (default ``<home>/eval/runs/<task>/<model>/<fingerprint>``, where the fingerprint
hashes the task file, the model and every option that changes the samples or prompts). Running the same command
again after a crash resumes it: samples already recorded are skipped, failed ones are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluation import provenance
from evaluation.cache import ResponseCache
from evaluation.data import load_task_data
from evaluation.kinds import make_evaluator
from evaluation.kinds.base import EvalContext
from evaluation.metrics import mean, mean_stderr
from evaluation.send import cached_sender
from evaluation.store import RunStore
from evaluation.task import TaskSpec
from evaluation.types import MetricValue, RunResult, Sample, SampleRecord
from llm_backend.errors import ConfigError, RagentError
from llm_backend.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Everything that selects samples and shapes prompts, besides the task file and the model."""

    limit: int | None = None
    limit_per_group: int | None = None
    num_fewshot: int | None = None
    seed: int | None = None
    max_tokens: int | None = None
    concurrency: int = 8
    data_dir: Path | None = None
    dataset_dir: Path | None = None
    use_cache: bool = True
    rerun: bool = False
    show_progress: bool = False
    shard: tuple[int, int] | None = None  # (i, n): only samples with index % n == i, for runs split over endpoints
    evaluator_options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """The options that change what is evaluated (not how fast), hashed into the run fingerprint."""
        return {
            "limit": self.limit,
            "limit_per_group": self.limit_per_group,
            "num_fewshot": self.num_fewshot,
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            **({"shard": list(self.shard)} if self.shard else {}),
        }


def apply_overrides(task: TaskSpec, options: RunOptions) -> TaskSpec:
    """The task with ``--num-fewshot``, ``--seed`` and ``--max-tokens`` applied."""
    changes: dict[str, Any] = {}
    if options.num_fewshot is not None:
        changes["fewshot"] = {"n": options.num_fewshot}
    if options.seed is not None:
        changes["fewshot"] = {**changes.get("fewshot", {}), "seed": options.seed}
        changes["generation"] = {"seed": options.seed}
    if options.max_tokens is not None:
        changes["generation"] = {**changes.get("generation", {}), "max_tokens": options.max_tokens}
    return task.with_overrides(**changes) if changes else task


def fingerprint(task: TaskSpec, model: str, options: RunOptions) -> str:
    """Short hash of the task file, model and sample/prompt options: equal fingerprints = the same run."""
    data = {"task": task.name, "sha256": task.sha256, "version": task.version, "model": model, **options.identity()}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def slug(text: str) -> str:
    """A file-name-safe form of a model or task name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def runs_root(home: Path) -> Path:
    """Where run directories live by default."""
    return home / "eval" / "runs"


def default_run_dir(home: Path, task: TaskSpec, model: str, options: RunOptions) -> Path:
    return runs_root(home) / slug(task.name) / slug(model) / fingerprint(task, model, options)


def cache_path(home: Path) -> Path:
    return home / "eval" / "cache.sqlite"


# -- aggregation -----------------------------------------------------------------------------------------------------
def _metric_values(records: Sequence[SampleRecord]) -> dict[str, MetricValue]:
    values: dict[str, list[float]] = {}
    for rec in records:
        if rec.error is None:
            for key, value in rec.metrics.items():
                values.setdefault(key, []).append(float(value))
    return {k: MetricValue(value=mean(v), stderr=mean_stderr(v), n=len(v)) for k, v in values.items()}


def aggregate(records: Sequence[SampleRecord]) -> tuple[dict[str, MetricValue], dict[str, dict[str, MetricValue]], dict[str, int]]:
    """Metrics over scored samples (errors excluded and counted), per group, and the counts."""
    metrics = _metric_values(records)
    groups: dict[str, dict[str, MetricValue]] = {}
    names = sorted({r.group for r in records if r.group})
    if len(names) > 1:
        for name in names:
            groups[name] = _metric_values([r for r in records if r.group == name])
    counts = {
        "samples": len(records),
        "scored": sum(1 for r in records if r.error is None),
        "errors": sum(1 for r in records if r.error is not None),
        "cached": sum(1 for r in records if r.cached),
    }
    return metrics, groups, counts


# -- the run ---------------------------------------------------------------------------------------------------------
class RunInterrupted(RagentError):
    """The run stopped before every sample was scored (server unreachable, sandbox missing...); what was done is
    saved and the same command resumes it."""


async def arun_task(
    task: TaskSpec,
    *,
    client: Any,
    settings: Settings,
    options: RunOptions | None = None,
    run_dir: Path | None = None,
    model: str | None = None,
    on_record: Callable[[SampleRecord], None] | None = None,
) -> RunResult:
    """Evaluate ``task`` with ``client`` and return the aggregated result (also written to ``run_dir``)."""
    options = options or RunOptions()
    task = apply_overrides(task, options)
    model_name = model or str(client.model)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(settings.home, task, model_name, options)
    store = RunStore(run_dir)
    if options.rerun:
        store.reset()
    fp = fingerprint(task, model_name, options)
    store.begin({"task": task.name, "task_version": task.version, "model": model_name, "fingerprint": fp, "options": options.identity()})

    data_dir = options.data_dir or settings.data_dir
    data = load_task_data(task, data_dir=data_dir, dataset_dir=options.dataset_dir, limit=options.limit, limit_per_group=options.limit_per_group)
    if options.shard is not None:
        i, n = options.shard
        if not 0 <= i < n:
            raise ConfigError(f"shard {i}/{n} is invalid: use I/N with 0 <= I < N")
        data.samples = [s for s in data.samples if s.index % n == i]
    evaluator = make_evaluator(task, **options.evaluator_options)
    evaluator.prepare(data)

    previous = store.load_records()
    wanted = {s.id for s in data.samples}
    done = {sid: rec for sid, rec in previous.items() if rec.error is None and sid in wanted}
    pending = [s for s in data.samples if s.id not in done]
    if done:
        log.info("%s: resuming, %d of %d samples already scored", task.name, len(done), len(data.samples))

    cache = ResponseCache(cache_path(settings.home)).open() if options.use_cache else None
    ctx = EvalContext(send=cached_sender(client, model_name, cache), client=client, model=model_name, cache=cache)
    fresh: dict[str, SampleRecord] = {}
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    progress = _progress(task.name, total=len(data.samples), initial=len(done), enabled=options.show_progress)

    async def score(sample: Sample) -> SampleRecord:
        try:
            return await evaluator.evaluate(sample, ctx)
        except RagentError:
            raise
        except Exception as exc:  # a scorer fault on one odd answer: that sample's error, not the run's end
            log.exception("scoring sample %s failed", sample.id)
            return SampleRecord(sample_id=sample.id, index=sample.index, group=sample.group, error=f"scoring failed: {type(exc).__name__}: {exc}")

    queue: asyncio.Queue[Sample] = asyncio.Queue()
    for sample in pending:
        queue.put_nowait(sample)

    async def worker() -> None:
        while True:
            try:
                sample = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            rec = await score(sample)
            store.append(rec)
            fresh[rec.sample_id] = rec
            progress.update(1)
            if rec.error:
                progress.set_postfix(errors=sum(1 for r in fresh.values() if r.error), refresh=False)
            if on_record is not None:
                on_record(rec)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(options.concurrency, len(pending) or 1)))]
    try:
        await asyncio.gather(*workers)
    except RagentError as exc:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        scored = len(done) + sum(1 for r in fresh.values() if r.error is None)
        raise RunInterrupted(
            f"{task.name} stopped after {scored} of {len(data.samples)} samples: {exc} Everything scored so far is saved "
            f"in {run_dir}; run the same command again to resume."
        ) from exc
    finally:
        progress.close()
        store.close()
        if cache is not None:
            cache.close()

    wall = time.perf_counter() - started
    records = sorted({**done, **fresh}.values(), key=lambda r: r.index)
    store.compact(records)
    metrics, groups, counts = aggregate(records)
    counts["resumed"] = len(done)
    evaluated = list(fresh.values())
    result = RunResult(
        run_id=f"{slug(task.name)}/{slug(model_name)}/{fp}",
        task={"name": task.name, "version": task.version, "kind": task.kind, "source": task.source, "sha256": task.sha256,
              "reference": task.reference, "description": task.description},
        model=model_name,
        server=getattr(client, "base_url", "") or settings.base_url,
        metrics=metrics,
        primary_metric=task.primary_metric,
        counts=counts,
        groups=groups,
        config={
            **options.identity(),
            "fingerprint": fp,
            "concurrency": options.concurrency,
            "use_cache": options.use_cache,
            "data_dir": str(data_dir) if data_dir else None,
            "dataset_dir": str(options.dataset_dir) if options.dataset_dir else None,
            "fewshot": task.fewshot.model_dump(),
            "generation": task.generation.model_dump(),
            "filters": {k: [s.model_dump() for s in v] for k, v in task.filters.items()},
            "metrics": [m.model_dump() for m in task.metrics],
            "options": task.options,
        },
        settings=settings.public_dict(),
        provenance={**provenance.collect(), "started_at": started_at, "finished_at": datetime.now(UTC).isoformat(timespec="seconds")},
        timings={
            "wall_s": round(wall, 3),
            "samples_evaluated": len(evaluated),
            "samples_per_s": round(len(evaluated) / wall, 4) if wall > 0 else 0.0,
            "mean_latency_s": round(mean([r.latency_s for r in evaluated]), 4),
            "prompt_tokens": sum(r.prompt_tokens for r in records),
            "completion_tokens": sum(r.completion_tokens for r in records),
            "cache_hits": cache.hits if cache else 0,
        },
        complete=counts["errors"] == 0,
        run_dir=str(run_dir),
    )
    store.write_results(result)
    return result


def merge_runs(run_dirs: Sequence[Path], out: Path) -> RunResult:
    """Combine the shards of one run (same task file, model and options, ``--shard I/N``) into ``out``."""
    stores = [RunStore(d) for d in run_dirs]
    results = [s.read_results() for s in stores]
    first = results[0]

    def key(r: RunResult) -> tuple[Any, ...]:
        cfg = {k: v for k, v in r.config.items() if k not in ("shard", "fingerprint", "concurrency", "use_cache")}
        return (r.task.get("sha256"), r.model, json.dumps(cfg, sort_keys=True, default=str))

    for d, r in zip(run_dirs, results, strict=True):
        if key(r) != key(first):
            raise ConfigError(f"{d} is not a shard of the same run as {run_dirs[0]} (task file, model or options differ)")
    records: dict[str, SampleRecord] = {}
    for store in stores:
        for rec in store.read_samples():
            records.setdefault(rec.sample_id, rec)
    merged = sorted(records.values(), key=lambda r: r.index)
    target = RunStore(out)
    target.dir.mkdir(parents=True, exist_ok=True)
    target.compact(merged)
    metrics, groups, counts = aggregate(merged)
    wall = max(r.timings.get("wall_s", 0.0) for r in results)
    result = RunResult(
        run_id=first.run_id + "+merged", task=first.task, model=first.model, server=", ".join(sorted({r.server for r in results})),
        metrics=metrics, primary_metric=first.primary_metric, counts=counts, groups=groups,
        config={**{k: v for k, v in first.config.items() if k != "shard"}, "merged_from": [str(d) for d in run_dirs]},
        settings=first.settings, provenance=first.provenance,
        timings={"wall_s": wall, "samples_evaluated": sum(int(r.timings.get("samples_evaluated", 0)) for r in results),
                 "samples_per_s": round(len(merged) / wall, 4) if wall else 0.0,
                 "prompt_tokens": sum(int(r.timings.get("prompt_tokens", 0)) for r in results),
                 "completion_tokens": sum(int(r.timings.get("completion_tokens", 0)) for r in results)},
        complete=counts["errors"] == 0, run_dir=str(out),
    )
    target.write_results(result)
    return result


def run_task(task: TaskSpec, **kwargs: Any) -> RunResult:
    """Synchronous wrapper around :func:`arun_task` (for the CLI and scripts)."""
    return asyncio.run(arun_task(task, **kwargs))


class _NoProgress:
    def update(self, n: int = 1) -> None:
        return

    def set_postfix(self, **kwargs: Any) -> None:
        return

    def close(self) -> None:
        return


def _progress(name: str, *, total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="sample", file=sys.stderr, dynamic_ncols=True)
