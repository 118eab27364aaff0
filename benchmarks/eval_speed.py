"""Speed of our evaluation harness vs lm-evaluation-harness: samples per second at equal concurrency on one server.

Both tools are run as a user would run them, as separate commands, on the same samples: ``ragent eval run``
(response cache off) and ``lm_eval run`` (``local-completions`` for MMLU log-likelihood, ``local-chat-completions
--apply_chat_template`` for GSM8K generation). The time is the command's wall clock, start-up included; each tool's
own evaluation time is reported too.

vLLM keeps a prefix cache that the first run of a prompt fills and later runs reuse; so that neither tool profits from
the other, one unmeasured warm-up pass runs first and the measured runs alternate their order from round to round.

Usage::

    .venv/bin/python benchmarks/eval_speed.py --base-url http://127.0.0.1:8000/v1 --data-dir ../shared/data \\
        --concurrency 1,8 --mmlu-per-subject 1 --gsm8k-n 16 --rounds 1 --out artifacts/eval_speed
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _lmeval

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("eval_speed")


def run_ours(task: str, *, args: argparse.Namespace, concurrency: int, out: Path, home: Path, limit_args: list[str]) -> dict[str, Any]:
    cmd = [
        str(REPO / ".venv" / "bin" / "python"), "-m", "apps.cli.main", "eval", "run", task, *limit_args, "--concurrency", str(concurrency),
        "--no-cache", "--rerun", "--no-report", "--json", "--out", str(out), "--base-url", args.base_url, "--model", args.model,
        "--data-dir", args.data_dir,
    ]
    env = {**os.environ, "RAGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"ragent eval run failed: {proc.stderr[-3000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return {"wall_s": wall, "internal_s": result["timings"]["wall_s"], "n": result["counts"]["samples"], "errors": result["counts"]["errors"],
            "metrics": {k: v["value"] for k, v in result["metrics"].items()}}


def run_reference(task: str, *, args: argparse.Namespace, concurrency: int, out: Path, include: Path) -> dict[str, Any]:
    if task == "mmlu":
        wall, folder = _lmeval.run_lm_eval(model_type="local-completions", base_url=args.base_url, model=args.model, tasks="mmlu_local",
                                           include_path=include, out=out, limit=args.mmlu_per_subject, concurrency=concurrency, tokenizer=args.tokenizer)
    else:
        wall, folder = _lmeval.run_lm_eval(model_type="local-chat-completions", base_url=args.base_url, model=args.model, tasks="gsm8k_local",
                                           include_path=include, out=out, limit=args.gsm8k_n, concurrency=concurrency, chat=True)
    results = sorted(folder.rglob("results_*.json"))[-1]
    data = json.loads(results.read_text())
    return {"wall_s": wall, "internal_s": float(data.get("total_evaluation_time_seconds") or 0.0),
            "n": sum(int(v.get("effective", v.get("original", 0))) for k, v in data.get("n-samples", {}).items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("RAGENT_BASE_URL", "http://127.0.0.1:8000/v1"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--tokenizer", default=str(Path.home() / ".cache/ragent/models/hf/qwen2.5-coder-0.5b-instruct"))
    parser.add_argument("--data-dir", default=os.environ.get("RAGENT_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--tasks", default="mmlu,gsm8k")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--mmlu-per-subject", type=int, default=1)
    parser.add_argument("--gsm8k-n", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default="artifacts/eval_speed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="ragent-speed-"))
    if args.model is None:
        from llm_backend.client import OpenAIChatClient
        from llm_backend.settings import Settings

        args.model = OpenAIChatClient(Settings.load(base_url=args.base_url)).model
    include = work / "lm_eval_tasks"
    _lmeval.write_gsm8k_task(Path(args.data_dir), include)
    _lmeval.write_mmlu_tasks(Path(args.data_dir), include)

    rows: list[dict[str, Any]] = []
    for task in args.tasks.split(","):
        limit_args = ["--limit-per-group", str(args.mmlu_per_subject)] if task == "mmlu" else ["--limit", str(args.gsm8k_n)]
        log.warning("%s: warm-up pass (unmeasured)", task)
        run_ours(task, args=args, concurrency=8, out=work / f"warmup_{task}", home=home, limit_args=limit_args)
        for c in [int(x) for x in args.concurrency.split(",")]:
            for r in range(args.rounds):
                order = ["ours", "lm_eval"] if r % 2 == 0 else ["lm_eval", "ours"]
                measured: dict[str, dict[str, Any]] = {}
                for tool in order:
                    log.warning("%s c=%d round %d: %s", task, c, r, tool)
                    out = work / f"{tool}_{task}_c{c}_r{r}"
                    if tool == "ours":
                        measured[tool] = run_ours(task, args=args, concurrency=c, out=out, home=home, limit_args=limit_args)
                    else:
                        measured[tool] = run_reference(task, args=args, concurrency=c, out=out, include=include)
                ours, ref = measured["ours"], measured["lm_eval"]
                row = {
                    "task": task, "concurrency": c, "round": r, "order": order, "n": ours["n"], "n_lm_eval": ref["n"],
                    "ours_wall_s": round(ours["wall_s"], 1), "lm_eval_wall_s": round(ref["wall_s"], 1),
                    "ours_internal_s": round(ours["internal_s"], 1), "lm_eval_internal_s": round(ref["internal_s"], 1),
                    "ours_samples_per_s": round(ours["n"] / ours["wall_s"], 3), "lm_eval_samples_per_s": round(ref["n"] / ref["wall_s"], 3),
                    "speedup": round(ref["wall_s"] / ours["wall_s"], 2), "ours_errors": ours["errors"],
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                (work / "speed.json").write_text(json.dumps({"server": args.base_url, "model": args.model, "rows": rows}, indent=2))
    print(f"written {work / 'speed.json'}")


if __name__ == "__main__":
    main()
