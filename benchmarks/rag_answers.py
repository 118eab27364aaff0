"""Cited answers of the real model: how often an answer is nothing but citation markers, cites a passage with an
explicit ``[n]``, refuses correctly, and mentions what the question asks for.

Questions (``benchmarks/rag_answers.yaml``): English and Chinese questions over the knowledge base ``ragent-docs``
(the user guide; build it with ``ragent app --with-default-kb``), plus ClapNQ dev questions (``--data-dir``), each
answered from its own gold passages (answerable) or from the related passages that do not answer it
(unanswerable). Every answer goes through :func:`core.rag.answer` as ``ragent kb ask`` does (k 4, 1,000 context
tokens, greedy).

Run::

    .venv/bin/python benchmarks/rag_answers.py --out results/rag_answers.json
    .venv/bin/python benchmarks/rag_answers.py --template old_answer.yaml --raw   # a prompt file, no recovery
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.rag.answer import REFUSALS, Answer, answer, marker_only
from knowledge.types import Hit, Retriever

log = logging.getLogger("benchmarks.rag_answers")
QUESTIONS = Path(__file__).with_name("rag_answers.yaml")


class LockedRetriever:
    """One retrieval at a time (the BM25 index is shared by the worker threads)."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def retrieve(self, query: str, k: int) -> list[Hit]:
        with self.lock:
            return self.inner.retrieve(query, k)


class FixedRetriever:
    """A ClapNQ question's own passages, in their order."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


def clapnq_items(data_dir: Path, answerable: int, unanswerable: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for kind, n in (("answerable", answerable), ("unanswerable", unanswerable)):
        with open(data_dir / "clapnq" / f"clapnq_dev_{kind}.jsonl", encoding="utf-8") as fh:
            for line in list(fh)[:n]:
                row = json.loads(line)
                hits = [
                    Hit(f"{row['id']}-{i}", p["text"], 1.0, {"source": f"clapnq/{p.get('title', '')}", "title": p.get("title", ""), "bm25_score": 1.0})
                    for i, p in enumerate(row["passages"])
                ]
                reference = (row.get("output") or [{}])[0].get("answer", "")
                items.append({"set": "clapnq", "lang": "en", "q": row["input"], "answerable": kind == "answerable", "hits": hits, "reference": reference})
    return items


def classify(item: dict[str, Any], result: Answer) -> dict[str, Any]:
    text = result.text
    refused = (not result.found) or any(p in text for p in REFUSALS)
    explicit = any(not c.inferred for c in result.citations)
    expect = [e.lower() for e in item.get("expect", [])]
    return {
        "set": item["set"],
        "lang": item["lang"],
        "question": item["q"],
        "answerable": item.get("answerable", True),
        "text": text,
        "marker_only": marker_only(text),
        "explicit_citation": explicit and not refused and not marker_only(text),
        "inferred_citation": bool(result.citations) and not explicit,
        "refused": refused,
        "fallback": getattr(result, "fallback", ""),
        "on_topic": bool(expect) and any(e in text.lower() for e in expect),
        "citations": [c.number for c in result.citations],
        "completion_tokens": result.usage.completion_tokens,
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['set']}/{r['lang']}", []).append(r)
    out: dict[str, Any] = {}
    for key, rs in groups.items():
        ans = [r for r in rs if r["answerable"]]
        una = [r for r in rs if not r["answerable"]]
        out[key] = {
            "questions": len(rs),
            "answerable": len(ans),
            "marker_only": sum(r["marker_only"] for r in rs),
            "explicit_citation": sum(r["explicit_citation"] for r in ans),
            "inferred_citation_only": sum(r["inferred_citation"] for r in ans),
            "refused_answerable": sum(r["refused"] for r in ans),
            "unanswerable": len(una),
            "correct_refusals": sum(r["refused"] for r in una),
            "on_topic": sum(r["on_topic"] for r in ans) if any(r.get("expect_given") for r in ans) else None,
            "fallback_retry": sum(r["fallback"] == "retry" for r in rs),
            "fallback_extract": sum(r["fallback"] == "extract" for r in rs),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("RAGENT_DATA") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--kb", default="ragent-docs")
    parser.add_argument("--template", default="answer", help="packaged template name or a YAML path")
    parser.add_argument("--raw", action="store_true", help="the model's text as it is: no retry, no extractive fallback")
    parser.add_argument("--parts", default="docs-en,docs-zh,clapnq")
    parser.add_argument("--max-tokens", type=int, default=384, help="longest answer (384 as in `ragent kb ask`)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "bm25s", "jieba", "chromadb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from core.rag import open_retriever
    from knowledge.tokenizer import default_tokenizer
    from llm_backend.client import OpenAIChatClient
    from llm_backend.settings import Settings

    settings = Settings.load(base_url=args.base_url)
    client = OpenAIChatClient(settings)
    tok = default_tokenizer(settings.models_dir)
    spec = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    parts = set(args.parts.split(","))
    items: list[dict[str, Any]] = []
    docs_retriever: Retriever | None = None
    for lang in ("en", "zh"):
        if f"docs-{lang}" in parts:
            docs_retriever = docs_retriever or LockedRetriever(open_retriever(args.kb, settings=settings))
            for q in spec["ragent_docs"][lang]:
                items.append({"set": "ragent-docs", "lang": lang, "q": q["q"], "answerable": q.get("answerable", True), "expect": q.get("expect", [])})
    if "clapnq" in parts:
        items += clapnq_items(args.data_dir, int(spec["clapnq"]["answerable"]), int(spec["clapnq"]["unanswerable"]))

    extra: dict[str, Any] = {"recover": False} if args.raw else {}

    def run(item: dict[str, Any]) -> dict[str, Any]:
        retriever: Retriever = FixedRetriever(item["hits"]) if "hits" in item else docs_retriever  # type: ignore[assignment]
        t = time.perf_counter()
        result = answer(
            item["q"], retriever=retriever, client=client, k=4, context_tokens=1000, max_tokens=args.max_tokens, tokenizer=tok, template=args.template, **extra
        )
        row = classify(item, result)
        row["expect_given"] = bool(item.get("expect"))
        row["seconds"] = round(time.perf_counter() - t, 1)
        log.info("%s %s: %r", item["set"], item["lang"], row["text"][:120])
        return row

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        rows = list(pool.map(run, items))
    summary = summarise(rows)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    result = {
        "command": " ".join(["rag_answers.py", *(argv if argv is not None else sys.argv[1:])]),
        "started": started,
        "load_average": [round(x, 2) for x in (*load_before, *os.getloadavg())],
        "model": client.model,
        "base_url": settings.base_url,
        "template": args.template,
        "recover": not args.raw,
        "git_commit": commit,
        "summary": summary,
        "rows": rows,
    }
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
