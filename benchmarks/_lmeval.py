"""Helpers shared by the evaluation benchmarks: run lm-evaluation-harness (in ``.venv-bench``) on local data.

lm-eval reads datasets from the Hugging Face hub; here everything is offline, so its own task files (gsm8k.yaml,
the mmlu default template) are copied with only the data source changed to local JSON files. Prompts, few-shot
sampling, filters and metrics stay lm-eval's.

``.venv-bench`` (gitignored) is made with::

    python3.11 -m venv .venv-bench
    .venv-bench/bin/pip install -r requirements-bench.txt
    .venv-bench/bin/pip install --no-deps bfcl-eval==2026.3.23   # its checker only; the full install pulls CUDA torch
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BENCH_PY = REPO / ".venv-bench" / "bin" / "python"


def bench_python() -> Path:
    if not BENCH_PY.exists():
        sys.exit(
            f"{BENCH_PY} is missing. Create it: python3.11 -m venv .venv-bench && .venv-bench/bin/pip install -r "
            "requirements-bench.txt && .venv-bench/bin/pip install --no-deps bfcl-eval==2026.3.23"
        )
    return BENCH_PY


def lm_eval_tasks_dir() -> Path:
    out = subprocess.run(
        [str(bench_python()), "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"],
        capture_output=True, text=True, check=True,
    )
    return Path(out.stdout.strip()) / "tasks"


def write_gsm8k_task(data_dir: Path, out: Path) -> str:
    """lm-eval's gsm8k.yaml reading ``<data>/gsm8k/{train,test}.jsonl``; returns the task name."""
    cfg = yaml.safe_load((lm_eval_tasks_dir() / "gsm8k" / "gsm8k.yaml").read_text())
    cfg["task"] = "gsm8k_local"
    cfg.pop("tag", None)
    cfg["dataset_path"] = "json"
    cfg.pop("dataset_name", None)
    cfg["dataset_kwargs"] = {"data_files": {"train": str(data_dir / "gsm8k" / "train.jsonl"), "test": str(data_dir / "gsm8k" / "test.jsonl")}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gsm8k_local.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return "gsm8k_local"


def write_mmlu_tasks(data_dir: Path, out: Path) -> tuple[str, list[str]]:
    """One lm-eval task per MMLU subject from the default template, data converted to the ``cais/mmlu`` shape
    (question, subject, choices, answer) in JSON lines; plus a group weighting subjects by size (as lm-eval's mmlu)."""
    template = yaml.safe_load((lm_eval_tasks_dir() / "mmlu" / "default" / "_default_template_yaml").read_text())
    jdir = out / "mmlu_data"
    jdir.mkdir(parents=True, exist_ok=True)
    subjects = sorted(p.name[: -len("_test.csv")] for p in (data_dir / "mmlu" / "test").glob("*_test.csv"))
    names = []
    for subject in subjects:
        files = {}
        for split in ("test", "dev"):
            rows = []
            with open(data_dir / "mmlu" / split / f"{subject}_{split}.csv", encoding="utf-8", newline="") as fh:
                for r in csv.DictReader(fh):
                    rows.append({"question": r["question"], "subject": subject, "choices": [r[f"choice{i}"] for i in range(4)], "answer": int(r["answer"])})
            path = jdir / f"{subject}_{split}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            files[split] = str(path)
        cfg = dict(template)
        cfg.update(
            task=f"mmlu_local_{subject}",
            dataset_path="json",
            dataset_kwargs={"data_files": files},
            description=f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n",
        )
        (out / f"mmlu_local_{subject}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
        names.append(cfg["task"])
    group = {"group": "mmlu_local", "task": names, "aggregate_metric_list": [{"metric": "acc", "weight_by_size": True}], "metadata": {"version": 1}}
    (out / "mmlu_local.yaml").write_text(yaml.safe_dump(group, sort_keys=False))
    return "mmlu_local", names


def run_lm_eval(
    *,
    model_type: str,
    base_url: str,
    model: str,
    tasks: str,
    include_path: Path,
    out: Path,
    limit: int,
    concurrency: int,
    tokenizer: str | None = None,
    chat: bool = False,
    num_fewshot: int | None = None,
    extra_env: dict[str, str] | None = None,
    cache: Path | None = None,
) -> tuple[float, Path]:
    """Run ``lm_eval`` and return (wall seconds, output folder). Logs samples for per-sample comparison.

    ``cache``: lm-eval's own response cache (``--use_cache``, SQLite per rank), so that a killed run resumes; never
    for speed measurements."""
    endpoint = "/chat/completions" if chat else "/completions"
    args = [f"base_url={base_url.rstrip('/')}{endpoint}", f"model={model}", f"num_concurrent={concurrency}", "max_retries=3", "timeout=600"]
    if tokenizer:
        args += ["tokenizer_backend=huggingface", f"tokenizer={tokenizer}", "max_length=4096"]
    else:
        args += ["tokenizer_backend=None", "tokenized_requests=False"]
    cmd = [
        str(bench_python()), "-m", "lm_eval", "run", "--model", model_type, "--model_args", ",".join(args), "--tasks", tasks,
        "--include_path", str(include_path), "--limit", str(limit), "--log_samples", "--output_path", str(out),
    ]
    if chat:
        cmd.append("--apply_chat_template")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["--use_cache", str(cache)]
    if num_fewshot is not None:
        cmd += ["--num_fewshot", str(num_fewshot)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra_env or {})}
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "lm_eval.log", "w") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"lm_eval failed (exit {proc.returncode}); see {out / 'lm_eval.log'}\ncommand: {' '.join(cmd)}")
    return wall, out


def lm_eval_samples(out: Path, task: str) -> list[dict[str, Any]]:
    """The logged samples of ``task`` from an lm-eval output folder."""
    files = sorted(out.rglob(f"samples_{task}_*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no samples_{task}_*.jsonl under {out}")
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
