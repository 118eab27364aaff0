"""Answer quality of the real model, per question set and per set-up: retrieval hit, answer hit, wrong-grounded,
refused, seconds per answer, answers per minute.

Question sets:
- ``book-zh`` / ``book-en``: factual questions on the Happy-LLM book (``benchmarks/rag_book.yaml``, 46 in Chinese,
  11 of them also in English) over the knowledge base ``--book-kb`` (default ``happy-llm-book``; build it with
  ``ragent kb create happy-llm-book --embedder none`` and ``ragent kb ingest happy-llm-book DATA/happy-llm-book``).
- ``docs-en`` / ``docs-zh``: the user-guide questions (``benchmarks/rag_answers.yaml``) over ``ragent-docs``
  (``ragent app --with-default-kb``).
- ``clapnq``: ClapNQ dev questions (``--data-dir``) answered from their own gold passages (answerable) or from the
  related passages that do not answer them (unanswerable).

Scores, per question: *retrieval hit*: one of the k retrieved passages holds every required string (book), one of
the expected strings (guide), or the gold passages were given (ClapNQ answerable); *answer hit*: the answer holds
every required string (book; number forms normalised: "4,096" = "4096"), one of the expected strings (guide), or at
least half the words of the reference answer (ClapNQ); *wrong-grounded*: the answer states a number or name that
no passage it cites holds (:func:`core.rag.grounding.unsupported`); *refused*: the answer says the passages do not
hold the answer (or nothing relevant was found).

Set-ups (``--setup``, repeatable; all run on the same questions, one after another, in one run): a name and
comma-separated options ``url=`` (a running server), or ``model=`` (an offline model name that this script serves
with ``ragent serve --name NAME --port PORT`` and stops afterwards), ``port=``, ``spec=ngram`` (vLLM's n-gram
prompt-lookup proposer), ``baseline`` (the pipeline before grounding: prompt v4, no check).

Run::

    .venv/bin/python benchmarks/rag_answers.py --check-book            # every required string is in the book
    .venv/bin/python benchmarks/rag_answers.py --setup "today=url=http://127.0.0.1:8000/v1,baseline" \\
        --setup "grounded=url=http://127.0.0.1:8000/v1" \\
        --setup "1.5b=model=qwen2.5-coder-1.5b-instruct,port=8011" --out results/rag_answers.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.rag.answer import REFUSALS, Answer, answer  # noqa: E402
from core.rag.grounding import claims, unsupported  # noqa: E402
from knowledge.lexical import tokenize  # noqa: E402
from knowledge.types import Hit, Retriever  # noqa: E402

log = logging.getLogger("benchmarks.rag_answers")
QUESTIONS = Path(__file__).with_name("rag_answers.yaml")
BOOK_QUESTIONS = Path(__file__).with_name("rag_book.yaml")
BASELINE_TEMPLATE = Path(__file__).with_name("prompts") / "answer_v4.yaml"


def norm(text: str) -> str:
    """Lower case, no white space, no thousands separators: how required strings are matched."""
    return re.sub(r"(?<=\d)[,，](?=\d{3})", "", re.sub(r"\s+", "", text)).lower()


def holds(text: str, expect: Sequence[str | Sequence[str]], *, numerals: bool = False) -> bool:
    """Whether ``text`` holds every item of ``expect`` (an item that is a list: any one of its forms). With
    ``numerals`` a required number also matches a Chinese numeral of that value in ``text`` (六 for 6)."""
    t = norm(text)
    values = {c.value for c in claims(text) if c.value is not None and not c.unit} if numerals else set()

    def found(a: str) -> bool:
        return norm(a) in t or (a.isdigit() and Decimal(a) in values)

    return bool(expect) and all(any(found(a) for a in ([e] if isinstance(e, str) else e)) for e in expect)


class LockedRetriever:
    """One retrieval at a time (the BM25 index is shared by the worker threads)."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def retrieve(self, query: str, k: int) -> list[Hit]:
        with self.lock:
            return self.inner.retrieve(query, k)


class RecordingRetriever:
    """Remembers what it retrieved (for the retrieval hit)."""

    def __init__(self, inner: Retriever) -> None:
        self.inner = inner
        self.hits: list[Hit] = []

    def retrieve(self, query: str, k: int) -> list[Hit]:
        self.hits = self.inner.retrieve(query, k)
        return self.hits


class FixedRetriever:
    """A ClapNQ question's own passages, in their order."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


def clapnq_items(data_dir: Path, answerable: int, unanswerable: int) -> list[dict[str, Any]]:
    """The first ClapNQ dev questions of each kind, with their passages, each carrying its e5 cosine to the question
    (``dense_score``) as retrieval from a knowledge base with the default embedder would give it."""
    from knowledge.embedders import E5Embedder

    e5 = E5Embedder()
    items: list[dict[str, Any]] = []
    for kind, n in (("answerable", answerable), ("unanswerable", unanswerable)):
        with open(data_dir / "clapnq" / f"clapnq_dev_{kind}.jsonl", encoding="utf-8") as fh:
            for line in list(fh)[:n]:
                row = json.loads(line)
                cosines = e5.embed_documents([p["text"] for p in row["passages"]]) @ e5.embed_query(row["input"])
                hits = [
                    Hit(f"{row['id']}-{i}", p["text"], 1.0, {"source": f"clapnq/{p.get('title', '')}", "title": p.get("title", ""), "bm25_score": 1.0,
                                                             "dense_score": float(cos), "dense_model": "e5"})
                    for i, (p, cos) in enumerate(zip(row["passages"], cosines, strict=True))
                ]
                reference = (row.get("output") or [{}])[0].get("answer", "")
                items.append({"set": "clapnq", "lang": "en", "q": row["input"], "answerable": kind == "answerable", "hits": hits, "reference": reference})
    return items


def score(item: dict[str, Any], result: Answer, retrieved: list[Hit]) -> dict[str, Any]:
    """One question's scores (see the module docstring)."""
    text = result.text
    refused = (not result.found) or any(p in text for p in REFUSALS)
    bad = unsupported(text, [c.text for c in result.citations]) if result.found and not refused else []
    if item["set"] == "clapnq":
        ref = set(tokenize(item.get("reference", "")))
        recall = len(ref & set(tokenize(text))) / len(ref) if ref else 0.0
        hit_r, hit_a = item["answerable"], item["answerable"] and recall >= 0.5
    elif item["set"] == "book":
        hit_r = any(holds(h.text, item["expect"]) for h in retrieved)
        hit_a = holds(text, item["expect"], numerals=True)
    else:
        expect = [[e for e in item.get("expect", [])]]
        hit_r = any(holds(h.text, expect) for h in retrieved)
        hit_a = holds(text, expect)
    return {
        "set": item["set"],
        "lang": item["lang"],
        "question": item["q"],
        "answerable": item.get("answerable", True),
        "expect": item.get("expect", []),
        "text": text,
        "retrieval_hit": bool(hit_r),
        "answer_hit": bool(hit_a),
        "wrong_grounded": bool(bad),
        "unsupported": bad,
        "refused": refused,
        "dropped": list(result.dropped),
        "quoted": any(s.kind == "quote" for s in result.segments),
        "fallback": result.fallback,
        "citations": [c.number for c in result.citations],
        "completion_tokens": result.usage.completion_tokens,
        "answerability": None if result.answerability is None else round(result.answerability, 3),
    }


def summarise(rows: Sequence[dict[str, Any]], wall: float) -> dict[str, Any]:
    """Per set (``book/zh``, ``clapnq/en``, ...): the counts of the scores and seconds per answer."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(f"{r['set']}/{r['lang']}", []).append(r)
    out: dict[str, Any] = {"answers_per_minute": round(60 * len(rows) / wall, 2) if wall else None, "wall_s": round(wall, 1)}
    for key, rs in sorted(groups.items()):
        ans = [r for r in rs if r["answerable"]]
        una = [r for r in rs if not r["answerable"]]
        secs = sorted(r["seconds"] for r in rs)
        out[key] = {
            "questions": len(rs),
            "retrieval_hit": sum(r["retrieval_hit"] for r in ans),
            "answer_hit": sum(r["answer_hit"] for r in ans),
            "answer_hit_of_retrieval_hits": sum(r["answer_hit"] for r in ans if r["retrieval_hit"]),
            "wrong_grounded": sum(r["wrong_grounded"] for r in rs),
            "refused_answerable": f"{sum(r['refused'] for r in ans)}/{len(ans)}",
            "refused_unanswerable": f"{sum(r['refused'] for r in una)}/{len(una)}" if una else "-",
            "quoted": sum(r["quoted"] for r in rs),
            "median_s": round(statistics.median(secs), 2),
            "p95_s": round(secs[min(len(secs) - 1, round(0.95 * (len(secs) - 1)))], 2),
        }
    return out


def parse_setup(spec: str) -> dict[str, Any]:
    """``NAME=key=value,key=value,flag`` -> a dict with ``name`` and the options."""
    name, _, rest = spec.partition("=")
    setup: dict[str, Any] = {"name": name}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        setup[key] = value if eq else True
    return setup


def start_server(setup: dict[str, Any]) -> str:
    """Serve ``setup['model']`` with ``ragent serve`` (detached) and return its base URL."""
    port = int(setup.get("port", 8011))
    argv = [str(ROOT / ".venv" / "bin" / "ragent"), "serve", "--detach", "--name", setup["name"], "--port", str(port), "--model", setup["model"]]
    if setup.get("spec") == "ngram":
        cfg = {"method": "ngram", "num_speculative_tokens": int(setup.get("spec_tokens", 4)), "prompt_lookup_max": 4, "prompt_lookup_min": 2}
        argv += ["--engine-arg=--speculative-config", f"--engine-arg={json.dumps(cfg)}"]
    log.info("starting %s", " ".join(argv))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGENT_SPECULATIVE": "none"}  # the set-up's own choice only
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"ragent serve failed for set-up {setup['name']}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return f"http://127.0.0.1:{port}/v1"


def stop_server(setup: dict[str, Any]) -> None:
    """Stop a server this script started."""
    subprocess.run([str(ROOT / ".venv" / "bin" / "ragent"), "serve", "--stop", "--name", setup["name"]], capture_output=True, check=False)


def load_items(args: argparse.Namespace, settings: Any) -> list[dict[str, Any]]:
    """The questions of the chosen parts, each with the retriever it is answered from."""
    from core.rag import open_retriever

    spec = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    book = yaml.safe_load(BOOK_QUESTIONS.read_text(encoding="utf-8"))["questions"]
    parts = set(args.parts.split(","))
    items: list[dict[str, Any]] = []
    if parts & {"book-zh", "book-en"}:
        book_retriever = LockedRetriever(open_retriever(args.book_kb, settings=settings, mode=args.book_mode))
        chosen = book[: args.book_limit] if args.book_limit else book
        if "book-zh" in parts:
            items += [{"set": "book", "lang": "zh", "q": q["q"], "expect": q["expect"], "retriever": book_retriever} for q in chosen]
        if "book-en" in parts:
            items += [{"set": "book", "lang": "en", "q": q["en"], "expect": q["expect"], "retriever": book_retriever} for q in book if "en" in q]
    if parts & {"docs-en", "docs-zh"}:
        docs_retriever = LockedRetriever(open_retriever(args.kb, settings=settings))
        for lang in ("en", "zh"):
            if f"docs-{lang}" in parts:
                for q in spec["ragent_docs"][lang]:
                    items.append({"set": "ragent-docs", "lang": lang, "q": q["q"], "answerable": q.get("answerable", True), "expect": q.get("expect", []),
                                  "retriever": docs_retriever})
    if "clapnq" in parts:
        items += clapnq_items(args.data_dir, int(spec["clapnq"]["answerable"]), int(spec["clapnq"]["unanswerable"]))
    return items


def run_setup(setup: dict[str, Any], items: list[dict[str, Any]], args: argparse.Namespace, tok: Any) -> dict[str, Any]:
    """Answer every item with one set-up; rows and summary."""
    from llm_backend.client import OpenAIChatClient
    from llm_backend.settings import Settings

    started_here = "model" in setup and "url" not in setup
    url = start_server(setup) if started_here else setup.get("url") or args.base_url
    try:
        client = OpenAIChatClient(Settings.load(base_url=url))
        baseline = bool(setup.get("baseline"))
        extra: dict[str, Any] = {"template": str(BASELINE_TEMPLATE), "grounded": False} if baseline else {}

        def one(item: dict[str, Any]) -> dict[str, Any]:
            retriever = RecordingRetriever(FixedRetriever(item["hits"]) if "hits" in item else item["retriever"])
            t = time.perf_counter()
            result = answer(item["q"], retriever=retriever, client=client, k=4, context_tokens=1000, max_tokens=args.max_tokens, tokenizer=tok, **extra)
            row = score(item, result, retriever.hits)
            row["seconds"] = round(time.perf_counter() - t, 2)
            log.info("%s %s/%s %s: %r", setup["name"], item["set"], item["lang"], "HIT" if row["answer_hit"] else "miss", row["text"][:100])
            return row

        one(items[0])  # warm-up, not counted
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            rows = list(pool.map(one, items))
        wall = time.perf_counter() - t0
        return {"setup": setup, "model": client.model, "base_url": url, "summary": summarise(rows, wall), "rows": rows}
    finally:
        if started_here:
            stop_server(setup)


def check_book(data_dir: Path) -> int:
    """Every required string of the book questions appears in the book (after the same normalisation)."""
    text = norm("".join(p.read_text(encoding="utf-8") for p in sorted((data_dir / "happy-llm-book").glob("*.md"))))
    book = yaml.safe_load(BOOK_QUESTIONS.read_text(encoding="utf-8"))["questions"]
    missing = [(q["q"], e) for q in book for e in q["expect"] if not any(norm(a) in text for a in ([e] if isinstance(e, str) else e))]
    print(json.dumps({"questions": len(book), "english": sum("en" in q for q in book), "missing": missing}, ensure_ascii=False, indent=1))
    return 1 if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("RAGENT_DATA") or str(ROOT.parent / "shared" / "data")
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--kb", default="ragent-docs")
    parser.add_argument("--book-kb", default="happy-llm-book")
    parser.add_argument("--book-mode", default="hybrid", help="retrieval mode for the book: hybrid (BM25 alone for a BM25-only base), dense, bm25")
    parser.add_argument("--book-limit", type=int, default=0, help="only the first N Chinese book questions (0: all)")
    parser.add_argument("--parts", default="book-zh,book-en,docs-en,docs-zh,clapnq")
    parser.add_argument("--setup", action="append", default=[], help="NAME=url=URL|model=NAME[,port=P][,spec=ngram][,baseline]; repeatable")
    parser.add_argument("--max-tokens", type=int, default=384, help="longest answer (384 as in `ragent kb ask`)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--check-book", action="store_true", help="only check the book questions' required strings")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.check_book:
        return check_book(args.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "bm25s", "jieba", "chromadb", "core.rag.answer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from knowledge.tokenizer import default_tokenizer
    from llm_backend.settings import Settings

    settings = Settings.load(base_url=args.base_url)
    tok = default_tokenizer(settings.models_dir)
    items = load_items(args, settings)
    setups = [parse_setup(s) for s in args.setup] or [{"name": "default", "url": settings.base_url}]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    load_before = os.getloadavg()
    results = []
    for setup in setups:
        try:
            results.append(run_setup(setup, items, args, tok))
        except Exception as exc:  # a set-up whose server does not start (out of memory, refused option): recorded
            log.exception("set-up %s failed", setup["name"])
            results.append({"setup": setup, "error": f"{type(exc).__name__}: {str(exc)[-1500:]}"})
        print(json.dumps({setup["name"]: results[-1].get("summary") or results[-1].get("error")}, indent=1, ensure_ascii=False), flush=True)
        if args.out:  # written after every set-up, so a long run keeps what it measured
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False, cwd=ROOT).stdout.strip()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({
                "command": " ".join(["rag_answers.py", *(argv if argv is not None else sys.argv[1:])]),
                "started": started, "load_average": [round(x, 2) for x in (*load_before, *os.getloadavg())],
                "git_commit": commit, "results": results,
            }, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
