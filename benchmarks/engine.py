"""Model backend benchmark: figures side by side with a baseline in the same run (ratios, not absolute times).

1. Client overhead: our ``OpenAIChatClient`` vs the raw official ``openai`` client, same server, same requests,
   interleaved (A B A B ...) so that machine noise hits both alike.
2. Concurrency: total decode throughput with 1, 4 and 8 requests in flight (our async client).
3. Engines: vLLM (CPU build) vs llama.cpp on the same model (Qwen2.5-Coder-0.5B): prompt processing, single-stream
   decode, 8 concurrent requests. Each engine runs alone (the other is stopped) so they never share the 2 cores.

Usage::

    .venv/bin/python benchmarks/engine.py                      # starts vLLM (and llama.cpp if built) itself
    .venv/bin/python benchmarks/engine.py --vllm-url http://127.0.0.1:8000/v1 --skip-llamacpp
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import openai  # baseline only: the product itself reaches models through llm_backend.client

from llm_backend.client import OpenAIChatClient
from llm_backend.engines import engine_venv
from llm_backend.launcher import ServerManager
from llm_backend.settings import Settings

SHORT = [{"role": "user", "content": "Name three colours."}]
STORY = [{"role": "user", "content": "Write a long story about a robot who learns to paint. Use many details."}]
LONG_CONTEXT = " ".join(
    f"Paragraph {i}: the knowledge base stores chunks of documents with their sources, and the retriever ranks them "
    "by relevance before the model writes an answer with citations." for i in range(40)
)


@dataclass
class EngineFigures:
    prompt_tps: float
    decode_tps: float
    concurrent_tps: dict[int, float]


def overhead(url: str, model: str, n: int) -> tuple[float, float]:
    """Median seconds per request: (ours, raw). Same request, interleaved, after a warm-up of each."""
    ours = OpenAIChatClient(Settings.load(base_url=url, model=model, max_retries=0))
    raw = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    kwargs: dict[str, Any] = {"max_tokens": 8, "temperature": 0}
    ours.chat(SHORT, **kwargs)
    raw.chat.completions.create(model=model, messages=SHORT, **kwargs)  # type: ignore[arg-type]
    t_ours, t_raw = [], []
    for i in range(2 * n):
        start = time.perf_counter()
        if i % 2 == 0:
            ours.chat(SHORT, **kwargs)
            t_ours.append(time.perf_counter() - start)
        else:
            raw.chat.completions.create(model=model, messages=SHORT, **kwargs)  # type: ignore[arg-type]
            t_raw.append(time.perf_counter() - start)
    return statistics.median(t_ours), statistics.median(t_raw)


async def throughput(url: str, model: str, concurrency: int, max_tokens: int, *, ignore_eos: bool) -> float:
    """Completion tokens per second with ``concurrency`` requests in flight."""
    extra = {"ignore_eos": True} if ignore_eos else {}
    async with OpenAIChatClient(Settings.load(base_url=url, model=model, concurrency=concurrency, max_retries=0)) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*[client.achat(STORY, max_tokens=max_tokens, temperature=0, **extra) for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    return sum(r.usage.completion_tokens for r in results) / elapsed


def prompt_speed(url: str, model: str, repeats: int) -> float:
    """Prompt tokens per second on a ~1,100-token prompt with one generated token (median of ``repeats``)."""
    client = OpenAIChatClient(Settings.load(base_url=url, model=model, max_retries=0))
    speeds = []
    for i in range(repeats):
        # A different first word each time defeats prefix caching.
        messages = [{"role": "user", "content": f"Run {i} {time.time()}. {LONG_CONTEXT}\nSummarise in one word."}]
        start = time.perf_counter()
        result = client.chat(messages, max_tokens=1, temperature=0)
        speeds.append(result.usage.prompt_tokens / (time.perf_counter() - start))
    return statistics.median(speeds)


def engine_figures(url: str, model: str, repeats: int, *, ignore_eos: bool) -> EngineFigures:
    prompt_tps = prompt_speed(url, model, repeats)
    decode = statistics.median(asyncio.run(throughput(url, model, 1, 128, ignore_eos=ignore_eos)) for _ in range(repeats))
    conc = {c: statistics.median(asyncio.run(throughput(url, model, c, 128, ignore_eos=ignore_eos)) for _ in range(repeats)) for c in (4, 8)}
    return EngineFigures(prompt_tps, decode, {1: decode, **conc})


def start(engine: str, port: int, home: Path) -> ServerManager:
    manager = ServerManager(Settings.load(engine=engine, port=port, home=home, threads=os.cpu_count()), name=f"bench-{engine}")
    manager.stop()
    manager.start(detach=True, progress=lambda m: print(f"  [{engine}] {m}", file=sys.stderr))
    return manager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm-url", help="use this running vLLM server instead of starting one")
    parser.add_argument("--llamacpp-url", help="use this running llama.cpp server instead of starting one")
    parser.add_argument("--skip-llamacpp", action="store_true")
    parser.add_argument("--requests", type=int, default=20, help="requests per client in the overhead test")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per throughput figure (median)")
    args = parser.parse_args()
    home = Settings.load().home
    model = "qwen2.5-coder-0.5b-instruct"

    managers: list[ServerManager] = []
    url = args.vllm_url
    if url is None:
        managers.append(start("vllm", 8031, home))
        url = "http://127.0.0.1:8031/v1"
    print(f"vLLM at {url}", file=sys.stderr)
    ours, raw = overhead(url, model, args.requests)
    vllm = engine_figures(url, model, args.repeats, ignore_eos=True)
    for m in managers:
        m.stop()

    llama: EngineFigures | None = None
    if not args.skip_llamacpp:
        lurl = args.llamacpp_url
        lmanager = None
        if lurl is None and (engine_venv("llamacpp") / "bin" / "python").exists():
            lmanager = start("llamacpp", 8032, home)
            lurl = "http://127.0.0.1:8032/v1"
        if lurl:
            print(f"llama.cpp at {lurl}", file=sys.stderr)
            llama = engine_figures(lurl, model, args.repeats, ignore_eos=False)
        else:
            print("llama.cpp not built (make engine-llamacpp): skipping the engine comparison", file=sys.stderr)
        if lmanager:
            lmanager.stop()

    print("\n## Client overhead (same vLLM server, short chat requests, median of", args.requests, "each, interleaved)\n")
    print("| client | median s/request | ratio |\n|---|---|---|")
    print(f"| raw `openai` | {raw:.4f} | 1.000 |")
    print(f"| ours (`OpenAIChatClient`) | {ours:.4f} | {ours / raw:.3f} |")
    print("\n## Concurrency (vLLM, 128 tokens per request, total completion tokens/s, median of", args.repeats, ")\n")
    print("| requests in flight | tokens/s | vs 1 |\n|---|---|---|")
    for c, tps in vllm.concurrent_tps.items():
        print(f"| {c} | {tps:.1f} | {tps / vllm.concurrent_tps[1]:.2f}x |")
    if llama:
        print("\n## Engines on the same model (Qwen2.5-Coder-0.5B; vLLM bf16 vs llama.cpp Q4_K_M, 2 cores)\n")
        print("| figure | vLLM | llama.cpp | vLLM / llama.cpp |\n|---|---|---|---|")
        rows = [("prompt processing, tokens/s", vllm.prompt_tps, llama.prompt_tps), ("single-stream decode, tokens/s", vllm.decode_tps, llama.decode_tps)]
        rows += [(f"{c} concurrent x 128 tokens, total tokens/s", vllm.concurrent_tps[c], llama.concurrent_tps[c]) for c in (4, 8)]
        for name, a, b in rows:
            print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
