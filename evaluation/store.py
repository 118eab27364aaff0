"""The results directory of one run, built to survive ``kill -9``.

Layout of ``<run dir>``::

    run.json        what is being run (task, model, config, fingerprint), written before the first sample
    samples.jsonl   one line per scored sample, appended, flushed and fsynced as each sample finishes
    results.json    aggregated metrics with provenance, written (atomically) when the run completes
    report.md, *.png  written by ``ragent eval report``

Resuming reads ``samples.jsonl``: a torn last line (the process died mid-write) is cut off, the last record of each
sample wins, samples with an error are retried, and the rest are skipped. When the run completes the file is
rewritten with exactly one record per sample, in sample order.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from evaluation.types import RunResult, SampleRecord
from llm_backend.errors import ConfigError

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = "results.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir)
        self._fh: Any = None

    @property
    def samples_path(self) -> Path:
        return self.dir / SAMPLES_FILE

    @property
    def results_path(self) -> Path:
        return self.dir / RESULTS_FILE

    # -- run metadata ----------------------------------------------------------------------------------------------
    def read_run(self) -> dict[str, Any] | None:
        path = self.dir / RUN_FILE
        if not path.is_file():
            return None
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def begin(self, run: dict[str, Any]) -> None:
        """Record what this directory holds; refuse to mix a different run into it."""
        existing = self.read_run()
        if existing is not None and existing.get("fingerprint") != run.get("fingerprint"):
            raise ConfigError(
                f"{self.dir} holds a run with different settings (task {existing.get('task')!r}, model "
                f"{existing.get('model')!r}, fingerprint {existing.get('fingerprint')}). Pass another --out, or --rerun "
                "to discard it."
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        if existing is None:
            write_json_atomic(self.dir / RUN_FILE, run)

    def reset(self) -> None:
        """Discard the records and results of this directory (``--rerun``); the response cache is kept."""
        for name in (SAMPLES_FILE, RESULTS_FILE, RUN_FILE):
            (self.dir / name).unlink(missing_ok=True)

    # -- per-sample records ----------------------------------------------------------------------------------------
    def load_records(self) -> dict[str, SampleRecord]:
        """The latest record of each sample, after repairing a torn last line."""
        path = self.samples_path
        if not path.is_file():
            return {}
        self._repair(path)
        records: dict[str, SampleRecord] = {}
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = SampleRecord.from_dict(json.loads(line))
                except (json.JSONDecodeError, TypeError) as exc:
                    log.warning("%s:%d unreadable record skipped (%s)", path, n, exc)
                    continue
                records[rec.sample_id] = rec
        return records

    @staticmethod
    def _repair(path: Path) -> None:
        """Cut a partial last line left by a process killed in the middle of a write."""
        with open(path, "rb+") as fh:
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping a torn last record (%d bytes) left by an interrupted run", path, len(data) - keep)
            fh.truncate(keep)

    def append(self, record: SampleRecord) -> None:
        """Append one record and make it durable before returning (flush + fsync)."""
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.samples_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        self._fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def compact(self, records: list[SampleRecord]) -> None:
        """Rewrite ``samples.jsonl`` with exactly these records (one per sample), atomically."""
        self.close()
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{SAMPLES_FILE}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.samples_path)

    # -- results ---------------------------------------------------------------------------------------------------
    def write_results(self, result: RunResult) -> Path:
        write_json_atomic(self.results_path, result.to_dict())
        return self.results_path

    def read_results(self) -> RunResult:
        if not self.results_path.is_file():
            raise ConfigError(
                f"{self.dir} has no {RESULTS_FILE}: the run has not completed. Run the same `ragent eval run` command "
                "again to resume it."
            )
        return RunResult.from_dict(json.loads(self.results_path.read_text(encoding="utf-8")))

    def read_samples(self) -> list[SampleRecord]:
        """All records in sample order."""
        return sorted(self.load_records().values(), key=lambda r: r.index)
