"""Agent benchmark: GSM8K with tools vs. plain chain-of-thought, BFCL tool-call accuracy through our schema path,
and the sandbox attack suite.

- **GSM8K** (first ``--limit`` test problems, default 200): (a) plain zero-shot chain-of-thought, no tools, one
  request; (b) our agent with the ``calculator`` and ``python`` (sandboxed) tools, by default in ``inline`` mode
  (:class:`~core.agent.modes.InlineToolMode`): it reasons in text with the chain-of-thought prompt while the
  calculator writes every result after an ``=`` and python blocks run in the sandbox. ``--agent-mode`` picks a
  calling mode instead (``native-plan``: a plan in words, then constrained tool calls with a ``final_answer``
  tool). Both zero-shot, same model, greedy decoding. Reported: accuracy, mean
  steps, parse failures, invalid calls, tokens, per-sample errors (a failed request is an error, not a wrong
  answer).
- **BFCL** single-turn ``simple_python``, ``multiple``, ``parallel``: each function document becomes our
  :class:`~core.tools.Tool` (``Tool.from_schema``), the request carries ``Toolbox.schemas()`` with
  ``tool_choice="required"``, the calls are parsed and validated by our tools, and the result is judged by BFCL's
  AST rules (``evaluation.bfcl``, checked against the official bfcl-eval by ``benchmarks/eval_fidelity.py``).
  ``--bfcl-auto N`` also runs the first N per category with ``tool_choice="auto"`` for comparison.
- **Sandbox attacks**: every program of :data:`core.sandbox.attacks.ATTACKS`, contained or not, and why.

Runs are resumable: every finished sample is appended to ``<out>.samples.jsonl`` and skipped on the next run with
the same ``--out``. Requests run concurrently (asyncio, ``client.achat``; ``--concurrency``, default 8).

Run::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/agent.py --out ~/.cache/ragent/benchmarks/agent.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/agent.py --only attacks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.agent import Agent
from core.agent.modes import AgentMode, InlineToolMode, NativeToolMode
from core.sandbox import Sandbox
from core.sandbox.attacks import run_attack_suite
from core.tools import Tool, Toolbox, calculator, make_python_tool
from llm_backend.client import OpenAIChatClient
from llm_backend.errors import BackendError
from llm_backend.settings import Settings

log = logging.getLogger("benchmarks.agent")

COT_SYSTEM = "Solve the math word problem step by step. At the end, write the final line as: The answer is <number>."
AGENT_INSTRUCTIONS = "Solve the math word problem. Use the tools to compute; when you have the result, call final_answer with the number only."
BFCL_CATEGORIES = ("simple_python", "multiple", "parallel")

# -- answers -----------------------------------------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def gold_answer(solution: str) -> float:
    """GSM8K's reference: the number after ``####``."""
    return float(solution.split("####")[-1].strip().replace(",", ""))


def extract_number(text: str | None) -> float | None:
    """The answer number in a reply: after 'answer is' when present, else the last number."""
    if not text:
        return None
    parts = re.split(r"answer is", text, flags=re.IGNORECASE)
    after = _NUMBER.findall(parts[-1]) if len(parts) > 1 else []
    numbers = after[:1] or _NUMBER.findall(text)[-1:]
    if not numbers:
        return None
    try:
        return float(numbers[0].replace(",", ""))
    except ValueError:
        return None


def same(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-6 * max(1.0, abs(b))


# -- bookkeeping -----------------------------------------------------------------------------------------------------
class SampleLog:
    """Append-only JSONL of finished samples, so an interrupted run resumes where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[tuple[str, str], dict[str, Any]] = {}
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.done[(rec["bench"], rec["id"])] = rec
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, rec: dict[str, Any]) -> None:
        self.done[(rec["bench"], rec["id"])] = rec
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def records(self, bench: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        return [self.done[(bench, i)] for i in ids if (bench, i) in self.done]


async def run_all(items: list[Any], work: Callable[[Any], Awaitable[None]], concurrency: int, label: str) -> None:
    slots = asyncio.Semaphore(concurrency)
    finished = 0
    started = time.monotonic()

    async def one(item: Any) -> None:
        nonlocal finished
        async with slots:
            await work(item)
        finished += 1
        if finished % 10 == 0 or finished == len(items):
            log.warning("%s: %d/%d done (%.0f s)", label, finished, len(items), time.monotonic() - started)

    await asyncio.gather(*(one(i) for i in items))


# -- GSM8K -----------------------------------------------------------------------------------------------------------
def load_gsm8k(data_dir: Path, limit: int) -> list[dict[str, Any]]:
    path = data_dir / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    return [{"id": f"gsm8k-{i}", "question": r["question"], "gold": gold_answer(r["answer"])} for i, r in enumerate(rows)]


async def gsm8k_cot(client: OpenAIChatClient, row: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"bench": "gsm8k-cot", "id": row["id"], "gold": row["gold"]}
    try:
        reply = await client.achat(
            [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": row["question"]}], temperature=0.0, max_tokens=max_tokens
        )
    except BackendError as exc:
        return {**rec, "error": str(exc)}
    pred = extract_number(reply.text)
    return {**rec, "pred": pred, "correct": same(pred, row["gold"]), "steps": 1, "parse_failures": 0,
            "prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": reply.usage.completion_tokens,
            "finish_reason": reply.finish_reason, "output": reply.text}


async def gsm8k_agent(
    client: OpenAIChatClient, tools: list[Tool], row: dict[str, Any], mode: str | AgentMode, max_steps: int, max_tokens: int,
    instructions: str = AGENT_INSTRUCTIONS,
) -> dict[str, Any]:
    rec: dict[str, Any] = {"bench": "gsm8k-tools", "id": row["id"], "gold": row["gold"]}
    agent = Agent(client, tools, mode=mode, max_steps=max_steps, instructions=instructions, max_tokens=max_tokens)
    try:
        result = await agent.arun(row["question"])
    except BackendError as exc:
        return {**rec, "error": str(exc)}
    pred = extract_number(result.final_answer)
    return {**rec, "pred": pred, "correct": same(pred, row["gold"]), "steps": len(result.steps),
            "parse_failures": result.parse_failures, "invalid_calls": result.invalid_calls, "tool_errors": result.tool_errors,
            "stop_reason": result.stop_reason, "prompt_tokens": result.usage.prompt_tokens,
            "completion_tokens": result.usage.completion_tokens, "final_answer": result.final_answer,
            "calls": [[c.name, c.raw_arguments[:2000], c.observation[:300]] for s in result.steps for c in s.tool_calls],
            "plan": next((s.thought[:2000] for s in result.steps if s.format == "plan"), None),
            "failed_steps": [{"step": s.step, "error": (s.error or "")[:300], "finish_reason": s.finish_reason,
                              "output": s.model_output[:1000]} for s in result.steps if s.parse_failure]}


def summarize(records: list[dict[str, Any]], total: int) -> dict[str, Any]:
    ok = [r for r in records if "error" not in r]
    n = len(ok)
    return {
        "samples": total,
        "finished": len(records),
        "errors": len(records) - n,
        "accuracy": round(sum(bool(r["correct"]) for r in ok) / n, 4) if n else None,
        "correct": sum(bool(r["correct"]) for r in ok),
        "mean_steps": round(sum(r["steps"] for r in ok) / n, 3) if n else None,
        "parse_failures": sum(r.get("parse_failures", 0) for r in ok),
        "invalid_calls": sum(r.get("invalid_calls", 0) for r in ok),
        "tool_errors": sum(r.get("tool_errors", 0) for r in ok),
        "no_final_answer": sum(1 for r in ok if r.get("bench") == "gsm8k-tools" and r.get("final_answer") is None),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in ok),
        "completion_tokens": sum(r.get("completion_tokens", 0) for r in ok),
    }


def agent_mode(args: argparse.Namespace) -> str | AgentMode:
    """The agent mode the GSM8K tool run uses."""
    if args.plan_prompt:
        return NativeToolMode(plan=True, plan_prompt=args.plan_prompt)
    if args.agent_mode == "inline":
        return InlineToolMode(budget_tokens=args.cot_max_tokens)  # the same answer length as chain-of-thought
    return str(args.agent_mode)


async def bench_gsm8k(client: OpenAIChatClient, args: argparse.Namespace, log_: SampleLog) -> dict[str, Any]:
    rows = load_gsm8k(args.data_dir, args.limit)
    tools = [calculator, make_python_tool(Sandbox(timeout_s=10, memory_mb=512, max_output_bytes=20_000))]
    # Both set-ups interleaved, so partial results compare like with like.
    todo = [(bench, r) for r in rows for bench in args.gsm8k_configs if (bench, r["id"]) not in log_.done]
    if args.report_only:
        todo = []

    inline = args.agent_mode == "inline"
    # Inline reasoning gets the chain-of-thought prompt, so the two set-ups differ only in the tools; each of its
    # steps is a stretch of text, so it gets more of them.
    instructions = args.agent_instructions or (COT_SYSTEM if inline else AGENT_INSTRUCTIONS)
    agent_steps = args.max_steps or (InlineToolMode.MAX_STEPS if inline else 4)

    async def work(item: tuple[str, dict[str, Any]]) -> None:
        bench, row = item
        if bench == "gsm8k-cot":
            rec = await gsm8k_cot(client, row, args.cot_max_tokens)
        else:
            rec = await gsm8k_agent(client, tools, row, agent_mode(args), agent_steps, args.step_max_tokens, instructions)
        log_.add(rec)

    await run_all(todo, work, args.concurrency, "gsm8k")
    ids = [r["id"] for r in rows]
    out = {bench: summarize(log_.records(bench, ids), len(rows)) for bench in args.gsm8k_configs}
    # For a partial run: the problems every set-up has finished, compared on the same footing.
    both = [i for i in ids if all((b, i) in log_.done and "error" not in log_.done[(b, i)] for b in args.gsm8k_configs)]
    out["paired"] = {"problems": len(both), **{b: sum(bool(log_.done[(b, i)]["correct"]) for i in both) for b in args.gsm8k_configs}}
    return out


# -- BFCL ------------------------------------------------------------------------------------------------------------
def load_bfcl(data_dir: Path, category: str, limit: int | None) -> list[dict[str, Any]]:
    base = data_dir / "bfcl"
    questions = [json.loads(line) for line in (base / f"BFCL_v4_{category}.json").read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = {a["id"]: a["ground_truth"] for a in (json.loads(line) for line in (base / "possible_answer" / f"BFCL_v4_{category}.json").read_text(encoding="utf-8").splitlines() if line.strip())}
    rows = [{**q, "ground_truth": answers[q["id"]]} for q in questions]
    return rows[:limit] if limit else rows


async def bfcl_sample(client: OpenAIChatClient, row: dict[str, Any], category: str, tool_choice: str) -> dict[str, Any]:
    from evaluation import bfcl

    rec: dict[str, Any] = {"bench": f"bfcl-{category}-{tool_choice}", "id": row["id"]}
    schemas = bfcl.to_openai_tools(bfcl.with_python_hint(row["function"]))
    # Our schema path: BFCL function docs -> our Tools -> Toolbox.schemas() -> a constrained call -> our validation.
    toolbox = Toolbox(Tool.from_schema(s["function"]["name"], s["function"].get("description", ""), s["function"]["parameters"]) for s in schemas)
    try:
        reply = await client.achat(row["question"][0], tools=toolbox.schemas(), tool_choice=tool_choice, temperature=0.0, max_tokens=512)
    except BackendError as exc:
        return {**rec, "error": str(exc)}
    malformed = invalid = 0
    decoded: list[dict[str, Any]] = []
    for call in reply.tool_calls:
        try:
            args = call.parsed_arguments()
        except ValueError:
            malformed += 1
            continue
        tool = toolbox.get(call.name)
        if tool is None:
            invalid += 1
        else:
            try:
                tool.validate(args)
            except ValueError:
                invalid += 1
        decoded.append({call.name: args})
    ok, details = bfcl.verdict(category, row["function"], row["ground_truth"], lambda: decoded, underscore_names=True)
    return {**rec, "correct": ok, "calls": len(reply.tool_calls), "malformed": malformed, "schema_invalid": invalid,
            "no_call": not reply.tool_calls, "error_type": details.get("error_type"),
            "prompt_tokens": reply.usage.prompt_tokens, "completion_tokens": reply.usage.completion_tokens,
            "decoded": decoded if not ok else None, "text": reply.text[:300] if not reply.tool_calls else None}


async def bench_bfcl(client: OpenAIChatClient, args: argparse.Namespace, log_: SampleLog) -> dict[str, Any]:
    out: dict[str, Any] = {}
    plans = [(c, "required", args.bfcl_limit) for c in BFCL_CATEGORIES]
    if args.bfcl_auto:
        plans += [(c, "auto", args.bfcl_auto) for c in BFCL_CATEGORIES]
    for category, choice, limit in plans:
        rows = load_bfcl(args.data_dir, category, limit)
        bench = f"bfcl-{category}-{choice}"
        todo = [] if args.report_only else [r for r in rows if (bench, r["id"]) not in log_.done]

        async def work(row: dict[str, Any], category: str = category, choice: str = choice) -> None:
            log_.add(await bfcl_sample(client, row, category, choice))

        await run_all(todo, work, args.concurrency, bench)
        recs = log_.records(bench, [r["id"] for r in rows])
        ok = [r for r in recs if "error" not in r]
        out[bench] = {
            "samples": len(rows), "finished": len(recs), "errors": len(recs) - len(ok),
            "accuracy": round(sum(r["correct"] for r in ok) / len(ok), 4) if ok else None,
            "correct": sum(r["correct"] for r in ok),
            "malformed_json": sum(r["malformed"] for r in ok), "schema_invalid": sum(r["schema_invalid"] for r in ok),
            "no_call": sum(r["no_call"] for r in ok),
        }
    return out


# -- attacks ---------------------------------------------------------------------------------------------------------
def bench_attacks() -> dict[str, Any]:
    outcomes = run_attack_suite(Sandbox(timeout_s=5, memory_mb=256, max_output_bytes=200_000))
    return {
        "total": len(outcomes),
        "contained": sum(o.contained for o in outcomes),
        "attacks": [{"attack": o.attack, "contained": o.contained, "reason": o.reason, "duration_s": round(o.result.duration_s, 2)} for o in outcomes],
    }


# -- report ----------------------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    lines: list[str] = []
    g = dict(results.get("gsm8k") or {})
    paired = g.pop("paired", None)
    if g:
        first = next(iter(g.values()))["samples"]
        lines += [f"| GSM8K (first {first} test) | accuracy | mean steps | parse failures | invalid calls | prompt tokens | completion tokens | errors |",
                  "|---|---|---|---|---|---|---|---|"]
        mode = results.get("gsm8k_agent_mode", "inline")
        names = {"gsm8k-cot": "chain-of-thought, no tools", "gsm8k-tools": f"agent ({mode}), calculator + python"}
        for bench, s in g.items():
            acc = f"{s['accuracy']:.3f} ({s['correct']}/{s['finished'] - s['errors']})" if s["accuracy"] is not None else "-"
            lines.append(f"| {names.get(bench, bench)} | {acc} | {s['mean_steps']} | {s['parse_failures']} | {s['invalid_calls']} | "
                         f"{s['prompt_tokens']:,} | {s['completion_tokens']:,} | {s['errors']} |")
        lines.append("")
        if paired and any(s["finished"] < s["samples"] for s in g.values()):
            counts = ", ".join(f"{names.get(b, b)} {c}" for b, c in paired.items() if b != "problems")
            lines += [f"Partial run: on the {paired['problems']} problems both set-ups finished, correct: {counts}.", ""]
    b = results.get("bfcl")
    if b:
        lines += ["| BFCL category | tool_choice | accuracy | malformed JSON | schema-invalid calls | no call | errors |", "|---|---|---|---|---|---|---|"]
        for bench, s in b.items():
            category, choice = bench[len("bfcl-"):].rsplit("-", 1)
            acc = f"{s['accuracy']:.3f} ({s['correct']}/{s['finished'] - s['errors']})" if s["accuracy"] is not None else "-"
            lines.append(f"| {category} | {choice} | {acc} | {s['malformed_json']} | {s['schema_invalid']} | {s['no_call']} | {s['errors']} |")
        lines.append("")
    a = results.get("attacks")
    if a:
        lines += [f"Sandbox attack suite: {a['contained']}/{a['total']} contained.", "", "| attack | contained | reason reported |", "|---|---|---|"]
        for item in a["attacks"]:
            lines.append(f"| {item['attack']} | {'yes' if item['contained'] else '**NO**'} | {item['reason'].replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("RAGENT_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--data-dir", type=Path, default=Path(default_data))
    p.add_argument("--base-url", default=None, help="model server (default: settings / RAGENT_BASE_URL)")
    p.add_argument("--model", default=None)
    p.add_argument("--only", default="gsm8k,bfcl,attacks", help="comma-separated: gsm8k, bfcl, attacks")
    p.add_argument("--limit", type=int, default=200, help="GSM8K problems (first N of test)")
    p.add_argument("--gsm8k-configs", default="gsm8k-cot,gsm8k-tools")
    p.add_argument("--agent-mode", default="inline", help="agent mode for gsm8k-tools (inline, native-plan, native, native-think, react-json)")
    p.add_argument("--agent-instructions", default=None, help="instructions in the agent's system prompt (default: per mode)")
    p.add_argument("--plan-prompt", default=None, help="native-plan with this planning request instead of the default one")
    p.add_argument("--max-steps", type=int, default=None, help="agent step limit (default: 4; inline 40)")
    p.add_argument("--step-max-tokens", type=int, default=512)
    p.add_argument("--cot-max-tokens", type=int, default=512)
    p.add_argument("--bfcl-limit", type=int, default=None, help="questions per BFCL category (default: all)")
    p.add_argument("--bfcl-auto", type=int, default=0, help="also run the first N per category with tool_choice=auto")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", type=Path, default=None, help="results JSON (default: $RAGENT_HOME/benchmarks/agent.json)")
    p.add_argument("--report-only", action="store_true", help="send nothing: summarise the samples finished so far")
    args = p.parse_args(argv)
    args.gsm8k_configs = [c.strip() for c in args.gsm8k_configs.split(",") if c.strip()]
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    settings = Settings.load(base_url=args.base_url, model=args.model, concurrency=args.concurrency, data_dir=args.data_dir)
    out = args.out or settings.home / "benchmarks" / "agent.json"
    samples = SampleLog(out.with_suffix(".samples.jsonl"))
    only = {s.strip() for s in args.only.split(",")}
    results: dict[str, Any] = {}
    if out.exists():
        results = json.loads(out.read_text(encoding="utf-8")).get("results", {})
    client = OpenAIChatClient(settings)
    started = time.time()
    if "attacks" in only:
        results["attacks"] = bench_attacks()
    if "gsm8k" in only:
        results["gsm8k"] = asyncio.run(bench_gsm8k(client, args, samples))
        results["gsm8k_agent_mode"] = args.agent_mode
    if "bfcl" in only:
        results["bfcl"] = asyncio.run(bench_bfcl(client, args, samples))
    try:
        from evaluation.provenance import collect

        provenance: dict[str, Any] = collect()
    except ImportError:
        provenance = {}
    model = client.model if ({"gsm8k", "bfcl"} & only) and not args.report_only else settings.model
    record = {
        "benchmark": "agent", "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "wall_s": round(time.time() - started, 1),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": model, "base_url": settings.base_url, "temperature": 0.0, "provenance": provenance, "results": results,
    }
    if not args.report_only:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    print(markdown(results))
    print(f"\nresults: {out}\nsamples: {samples.path}")


if __name__ == "__main__":
    main()
