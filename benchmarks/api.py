"""What `ragent api` and `ragent mcp` cost and how they hold up, against the real model server.

1. Overhead (``--part overhead``): the same ``kb:<name>`` question answered by :func:`core.rag.answer` called
   directly and through ``ragent api`` (a separate process, streamed through the official ``openai`` client),
   alternately, ``--repeats`` times each after one warm-up of each: time to first token (first text delta) and
   total, medians side by side, and the median of the paired differences.
2. Load (``--part load``): ``--chat-clients`` concurrent streaming chat clients on ``kb:<name>`` through
   ``ragent api`` plus ``--mcp-clients`` concurrent ``kb_search`` callers through ``ragent mcp --http`` (the
   official ``mcp`` client), each calling again as soon as it has its answer, for ``--seconds``: requests
   completed, errors (a failed request, or a stream that ended without ``finish_reason``), p50/p95 latency.

Both services run as ``.venv/bin/ragent`` subprocesses with default settings (``concurrency`` 8), in front of the
model server at ``--base-url`` (default: the managed one; start it with ``ragent serve --detach``).

Run::

    .venv/bin/python benchmarks/api.py --out results/api.json            # both parts (~6 minutes here)
    .venv/bin/python benchmarks/api.py --part load --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RAGENT = str(ROOT / ".venv" / "bin" / "ragent")

QUESTIONS = [
    "How do I start the model server?",
    "Which file types can a knowledge base read?",
    "How do I stop the model server?",
    "What does ragent kb ingest skip?",
    "How do I run an agent with the calculator?",
    "Where does ragent keep its data?",
    "How do I evaluate a model on GSM8K?",
    "What is hybrid retrieval?",
]


def quoting_reply(body: dict[str, Any]) -> Any:
    """The fake backend's answer (``--backend fake``): the first sentence of passage [1], cited, streamed a token
    every 5 ms; a deterministic stand-in for the model that leaves only the API layer to measure."""
    import re

    from llm_backend.testing import FakeReply

    user = str((body.get("messages") or [{}])[-1].get("content", ""))
    match = re.search(r"\[1\][^\n]*\n(.+?)(?:\n\[2\]|\n\n|$)", user, re.S)
    first = " ".join(match.group(1).split())[:160].rstrip(".") if match else "no passage"
    return FakeReply(text=f"{first} [1].", chunk_delay=0.005)


def start(args: list[str], health: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a ragent service and wait until ``health`` answers."""
    proc = subprocess.Popen([RAGENT, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"`ragent {' '.join(args)}` exited with {proc.returncode}")
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"`ragent {' '.join(args)}` did not answer {health} within 120 s")


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 3)


# -- 1. overhead ---------------------------------------------------------------------------------------------------
def direct_once(question: str, kb: str, client: Any, retriever: Any, tokenizer: Any, max_tokens: int) -> dict[str, float]:
    from core.rag import answer

    t0 = time.perf_counter()
    first: list[float] = []
    answer(question, retriever=retriever, client=client, tokenizer=tokenizer, max_tokens=max_tokens,
           on_delta=lambda d: first.append(time.perf_counter()) if not first else None)
    end = time.perf_counter()
    return {"ttft": (first[0] if first else end) - t0, "total": end - t0}


def api_once(question: str, kb: str, api: Any, max_tokens: int) -> dict[str, float]:
    t0 = time.perf_counter()
    first: float | None = None
    finished = False
    for c in api.chat.completions.create(model=f"kb:{kb}", messages=[{"role": "user", "content": question}], max_tokens=max_tokens, stream=True):
        if first is None and c.choices and c.choices[0].delta.content:
            first = time.perf_counter()
        finished = finished or bool(c.choices and c.choices[0].finish_reason)
    end = time.perf_counter()
    if not finished:
        raise RuntimeError("stream ended without finish_reason")
    return {"ttft": (first or end) - t0, "total": end - t0}


def overhead(args: argparse.Namespace, api_url: str, settings: Any) -> dict[str, Any]:
    import openai

    from core.rag import open_retriever
    from knowledge.tokenizer import default_tokenizer
    from llm_backend.client import OpenAIChatClient

    client = OpenAIChatClient(settings)
    retriever = open_retriever(args.kb, settings=settings)
    tokenizer = default_tokenizer(settings.models_dir)
    api = openai.OpenAI(base_url=api_url, api_key="-", timeout=600)
    question = args.question
    direct_once(question, args.kb, client, retriever, tokenizer, args.max_tokens)  # warm-up: retriever, tokenizer, prefix cache
    api_once(question, args.kb, api, args.max_tokens)
    rows: dict[str, list[dict[str, float]]] = {"direct": [], "api": []}
    for i in range(args.repeats):
        order = ("direct", "api") if i % 2 == 0 else ("api", "direct")  # alternate, so drift hits both sides alike
        for side in order:
            r = direct_once(question, args.kb, client, retriever, tokenizer, args.max_tokens) if side == "direct" else api_once(question, args.kb, api, args.max_tokens)
            rows[side].append(r)
        print(f"  {i + 1}/{args.repeats}: direct ttft {rows['direct'][-1]['ttft']:.3f}s total {rows['direct'][-1]['total']:.3f}s · "
              f"api ttft {rows['api'][-1]['ttft']:.3f}s total {rows['api'][-1]['total']:.3f}s", flush=True)
    med = {side: {m: round(statistics.median(r[m] for r in rs), 3) for m in ("ttft", "total")} for side, rs in rows.items()}
    paired = {m: round(statistics.median(a[m] - d[m] for a, d in zip(rows["api"], rows["direct"], strict=True)), 3) for m in ("ttft", "total")}
    return {"question": question, "kb": args.kb, "repeats": args.repeats, "max_tokens": args.max_tokens, "median_s": med,
            "api_minus_direct_median_of_pairs_s": paired, "runs": rows}


# -- 2. load ---------------------------------------------------------------------------------------------------------
async def load(args: argparse.Namespace, api_url: str, mcp_url: str) -> dict[str, Any]:
    import openai
    from mcp import Client

    stop_at = time.monotonic() + args.seconds
    stats: dict[str, dict[str, Any]] = {"chat": {"latency": [], "ttft": [], "errors": []}, "kb_search": {"latency": [], "errors": []}}

    async def chat_client(n: int) -> None:
        api = openai.AsyncOpenAI(base_url=api_url, api_key="-", timeout=600, max_retries=0)
        i = n
        while time.monotonic() < stop_at:
            question = QUESTIONS[i % len(QUESTIONS)]
            i += 1
            t0 = time.perf_counter()
            first, finished = None, False
            try:
                stream = await api.chat.completions.create(model=f"kb:{args.kb}", messages=[{"role": "user", "content": question}],
                                                           max_tokens=args.load_max_tokens, stream=True)
                async for c in stream:
                    if first is None and c.choices and c.choices[0].delta.content:
                        first = time.perf_counter() - t0
                    finished = finished or bool(c.choices and c.choices[0].finish_reason)
                if not finished:
                    raise RuntimeError("stream ended without finish_reason")
                stats["chat"]["latency"].append(time.perf_counter() - t0)
                stats["chat"]["ttft"].append(first or 0.0)
            except Exception as exc:
                stats["chat"]["errors"].append(f"{type(exc).__name__}: {exc}"[:300])
        await api.close()

    async def mcp_client(n: int) -> None:
        async with Client(mcp_url, read_timeout_seconds=300) as client:
            i = n
            while time.monotonic() < stop_at:
                t0 = time.perf_counter()
                try:
                    result = await client.call_tool("kb_search", {"knowledge_base": args.kb, "query": QUESTIONS[i % len(QUESTIONS)], "k": 5})
                    i += 1
                    if result.is_error:
                        raise RuntimeError("".join(getattr(c, "text", "") for c in result.content)[:200])
                    stats["kb_search"]["latency"].append(time.perf_counter() - t0)
                except Exception as exc:
                    stats["kb_search"]["errors"].append(f"{type(exc).__name__}: {exc}"[:300])

    t0 = time.monotonic()
    await asyncio.gather(*(chat_client(i) for i in range(args.chat_clients)), *(mcp_client(i) for i in range(args.mcp_clients)))
    wall = time.monotonic() - t0
    out: dict[str, Any] = {"seconds": args.seconds, "wall_s": round(wall, 1), "chat_clients": args.chat_clients, "mcp_clients": args.mcp_clients,
                           "max_tokens": args.load_max_tokens, "kb": args.kb}
    for kind, s in stats.items():
        out[kind] = {"completed": len(s["latency"]), "errors": len(s["errors"]), "error_examples": s["errors"][:3],
                     "p50_s": pct(s["latency"], 0.5), "p95_s": pct(s["latency"], 0.95), "per_minute": round(60 * len(s["latency"]) / wall, 1)}
        if "ttft" in s:
            out[kind]["ttft_p50_s"], out[kind]["ttft_p95_s"] = pct(s["ttft"], 0.5), pct(s["ttft"], 0.95)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["overhead", "load", "both"], default="both")
    parser.add_argument("--kb", default="ragent-docs", help="knowledge base (default: the user guide `make run` builds)")
    parser.add_argument("--question", default=QUESTIONS[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128, help="answer length in the overhead part")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--chat-clients", type=int, default=16)
    parser.add_argument("--mcp-clients", type=int, default=8)
    parser.add_argument("--load-max-tokens", type=int, default=64, help="answer length in the load part")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--backend", choices=["real", "fake"], default="real",
                        help="real: the model server; fake: a scripted OpenAI-compatible server in this process (isolates the API layer)")
    parser.add_argument("--api-port", type=int, default=8102)
    parser.add_argument("--mcp-port", type=int, default=8103)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve-fake", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from apps.cli.backend import client_settings

    if args.serve_fake:  # the fake backend's own process (started below), so it shares no interpreter with either side
        from llm_backend.testing import FakeOpenAIServer

        FakeOpenAIServer(responder=quoting_reply, models=["fake-model"], port=args.serve_fake).start()
        while True:
            time.sleep(3600)
    fake = None
    if args.backend == "fake":
        port = args.api_port + 10
        fake = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        args.base_url = f"http://127.0.0.1:{port}/v1"
        for _ in range(100):
            try:
                httpx.get(f"{args.base_url}/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
    settings = client_settings(args.base_url)
    env = {**os.environ, "RAGENT_BASE_URL": settings.base_url, "HF_HUB_OFFLINE": "1"}
    env.pop("RAGENT_API_SERVER_KEY", None)
    api_url, mcp_url = f"http://127.0.0.1:{args.api_port}/v1", f"http://127.0.0.1:{args.mcp_port}/mcp"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops the services it started
    procs = [start(["api", "--port", str(args.api_port), "--log-level", "warning"], api_url.removesuffix("/v1") + "/health", env)]
    result: dict[str, Any] = {"command": " ".join(["benchmarks/api.py", *(argv if argv is not None else sys.argv[1:])]),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "base_url": settings.base_url, "backend": args.backend, "load_average_before": os.getloadavg()}
    try:
        if args.part in ("overhead", "both"):
            print("overhead:", flush=True)
            result["overhead"] = overhead(args, api_url, settings)
            print(json.dumps({k: v for k, v in result["overhead"].items() if k != "runs"}, indent=1), flush=True)
        if args.part in ("load", "both"):
            procs.append(start(["mcp", "--http", "--port", str(args.mcp_port), "--tools", ""], mcp_url, env))
            print(f"load: {args.chat_clients} streaming chat clients + {args.mcp_clients} kb_search MCP clients for {args.seconds:g} s", flush=True)
            result["load"] = asyncio.run(load(args, api_url, mcp_url))
            print(json.dumps(result["load"], indent=1), flush=True)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=15)
        if fake is not None:
            fake.terminate()
            fake.wait(timeout=15)
    result["load_average_after"] = os.getloadavg()
    result["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=ROOT).stdout.strip()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
