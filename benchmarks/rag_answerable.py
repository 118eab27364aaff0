"""Calibrate the answerability decision on ClapNQ dev questions that ``benchmarks/rag_answers.py`` does not score.

For each question (answerable: its gold passages; unanswerable: the related passages that do not answer it) the
passages are packed as ``ragent kb ask`` packs them (k 4, 1,000 tokens) and three signals are recorded: the
relevance gate's verdict and term coverage (:mod:`core.rag.context`), and the model's yes/no judgement P(yes)
(:mod:`core.rag.answerable`). The summary gives, per threshold, how many answerable questions would be refused and
how many unanswerable ones refused, so the thresholds are chosen on this slice and checked on another.

Run (a model server on port 8000)::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rag_answerable.py --start 100 --stop 300 --out /tmp/calib.json
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rag_answerable.py --start 0 --stop 30 --out /tmp/heldout.json

``--fit CALIB.json HELDOUT.json`` fits the weights of :func:`core.rag.answerable.answerability` (logistic
regression, scikit-learn) on the first file's rows and reports ROC AUC on both, with and without e5's cosine of the
closest passage (added to rows that lack it; no model server needed), and the cut that keeps 85% of the calibration
slice's answerable questions::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rag_answerable.py --fit /tmp/calib.json /tmp/heldout.json

``--cross-lingual`` calibrates the relevance gate's e5 threshold for a question and a passage in different languages
(no model server needed): for each English ClapNQ question the highest e5 cosine over all CMRC2018 (Chinese)
passages, and for each CMRC2018 question the highest over ClapNQ's (English) passages, i.e. the best unrelated
passage of the other language that retrieval could return; the threshold must stay above nearly all of them. The
book's English questions against the Chinese chunk that answers them (``--book-kb``) are the check, not the data::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rag_answerable.py --cross-lingual --book-kb happy-llm-book-e5d
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.rag.answerable import judge  # noqa: E402
from core.rag.context import is_relevant, pack_context, term_coverage, to_citation  # noqa: E402
from knowledge.types import Hit  # noqa: E402


def items(data_dir: Path, start: int, stop: int) -> list[dict[str, Any]]:
    """ClapNQ dev questions ``start``..``stop`` of each kind, with their passages as hits."""
    out: list[dict[str, Any]] = []
    for kind in ("answerable", "unanswerable"):
        with open(data_dir / "clapnq" / f"clapnq_dev_{kind}.jsonl", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if start <= i < stop:
                    row = json.loads(line)
                    hits = [Hit(f"{row['id']}-{j}", p["text"], 1.0, {"source": f"clapnq/{p.get('title', '')}", "title": p.get("title", "")})
                            for j, p in enumerate(row["passages"])]
                    out.append({"index": i, "answerable": kind == "answerable", "q": row["input"], "hits": hits})
    return out


def add_dense(data_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Give each row ``dense``: e5's highest cosine between its question and its first four passages (the ones the
    pipeline packs), as an e5 knowledge base's retrieval would carry it."""
    from knowledge.embedders import E5Embedder

    e5 = E5Embedder()
    files = {kind: (data_dir / "clapnq" / f"clapnq_dev_{kind}.jsonl").read_text(encoding="utf-8").splitlines() for kind in ("answerable", "unanswerable")}
    for r in rows:
        if r.get("dense") is None:
            item = json.loads(files["answerable" if r["answerable"] else "unanswerable"][r["index"]])
            passages = [p["text"] for p in item["passages"]][:4]
            r["dense"] = float((e5.embed_documents(passages) @ e5.embed_query(item["input"])).max())


def fit(data_dir: Path, calib_path: Path, held_path: Path, keep: float = 0.85) -> dict[str, Any]:
    """Fit the answerability regression on ``calib_path``'s rows, check it on ``held_path``'s (see the docstring)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    calib = [r for r in json.loads(calib_path.read_text())["rows"] if r["p_yes"] is not None]
    held = [r for r in json.loads(held_path.read_text())["rows"] if r["p_yes"] is not None]
    add_dense(data_dir, calib)
    add_dense(data_dir, held)
    out: dict[str, Any] = {"calibration": len(calib), "held_out": len(held), "models": []}
    for cols in (["p_yes"], ["coverage"], ["dense"], ["p_yes", "coverage"], ["p_yes", "coverage", "dense"]):
        xc, yc = np.array([[r[c] for c in cols] for r in calib]), np.array([r["answerable"] for r in calib])
        xh, yh = np.array([[r[c] for c in cols] for r in held]), np.array([r["answerable"] for r in held])
        model = LogisticRegression(C=1e4).fit(xc, yc)
        pc, ph = model.predict_proba(xc)[:, 1], model.predict_proba(xh)[:, 1]
        cut = float(np.sort(pc[yc == 1])[int((1 - keep) * (yc == 1).sum())])
        out["models"].append({
            "signals": cols, "weights": [round(float(w), 2) for w in model.coef_[0]] + [round(float(model.intercept_[0]), 2)],
            "auc_calibration": round(float(roc_auc_score(yc, pc)), 3), "auc_held_out": round(float(roc_auc_score(yh, ph)), 3),
            "cut": round(cut, 2),
            "calibration_refused": {"answerable": f"{int((pc[yc == 1] < cut).sum())}/{int((yc == 1).sum())}", "unanswerable": f"{int((pc[yc == 0] < cut).sum())}/{int((yc == 0).sum())}"},
            "held_out_refused": {"answerable": f"{int((ph[yh == 1] < cut).sum())}/{int((yh == 1).sum())}", "unanswerable": f"{int((ph[yh == 0] < cut).sum())}/{int((yh == 0).sum())}"},
        })
    return out


def thresholds(rows: Sequence[dict[str, Any]], key: str, cuts: Sequence[float]) -> list[dict[str, Any]]:
    """For each cut: answerable refused (signal < cut) and unanswerable refused."""
    ans = [r for r in rows if r["answerable"] and r[key] is not None]
    una = [r for r in rows if not r["answerable"] and r[key] is not None]
    return [{"cut": c, "answerable_refused": f"{sum(r[key] < c for r in ans)}/{len(ans)}",
             "unanswerable_refused": f"{sum(r[key] < c for r in una)}/{len(una)}"} for c in cuts]


def cross_lingual(data_dir: Path, book_kb: str) -> dict[str, Any]:
    """e5 cosines of unrelated cross-language pairs (maxima per question) and of the book's English questions to
    their Chinese answer chunks; the quantiles that a cross-lingual threshold is chosen from."""
    import numpy as np
    import yaml

    from core.rag import open_retriever
    from knowledge.embedders import E5Embedder

    e5 = E5Embedder()
    cmrc = json.loads((data_dir / "cmrc2018" / "cmrc2018_trial.json").read_text(encoding="utf-8"))["data"]
    zh_passages = [p["context"] for d in cmrc for p in d["paragraphs"]]
    zh_questions = [qa["question"] for d in cmrc for p in d["paragraphs"] for qa in p["qas"]][:300]
    en_rows = [json.loads(line) for line in (data_dir / "clapnq" / "clapnq_dev_answerable.jsonl").read_text(encoding="utf-8").splitlines()][:300]
    en_questions = [r["input"] for r in en_rows]
    en_passages = list(dict.fromkeys(p["text"] for r in en_rows for p in r["passages"]))
    zp, ep = e5.embed_documents(zh_passages), e5.embed_documents(en_passages)
    eq = np.stack([e5.embed_query(q) for q in en_questions])
    zq = np.stack([e5.embed_query(q) for q in zh_questions])
    en_on_zh = (eq @ zp.T).max(axis=1)
    zh_on_en = (zq @ ep.T).max(axis=1)
    negatives = np.concatenate([en_on_zh, zh_on_en])

    book = yaml.safe_load((ROOT / "benchmarks" / "rag_book.yaml").read_text(encoding="utf-8"))["questions"]
    retriever = open_retriever(book_kb, mode="dense")
    positives: list[dict[str, Any]] = []
    for q in book:
        if "en" not in q:
            continue
        hits = retriever.retrieve(q["en"], 8)
        holding = [h for h in hits if all(any(a.lower() in h.text.lower() for a in ([e] if isinstance(e, str) else e)) for e in q["expect"])]
        positives.append({"q": q["en"], "dense_score": round(float(holding[0].meta.get("dense_score", 0.0)), 4) if holding else None,
                          "top_dense_score": round(float(hits[0].meta.get("dense_score", 0.0)), 4) if hits else None})

    def quantiles(a: Any) -> dict[str, float]:
        return {f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 90, 95, 99, 100)}

    return {"en_questions_on_zh_passages": quantiles(en_on_zh), "zh_questions_on_en_passages": quantiles(zh_on_en),
            "all_unrelated_maxima": quantiles(negatives), "book_en_positives": positives,
            "pairs": {"en_questions": len(en_questions), "zh_passages": len(zh_passages), "zh_questions": len(zh_questions), "en_passages": len(en_passages)}}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("RAGENT_DATA") or ROOT.parent / "shared" / "data"))
    parser.add_argument("--start", type=int, default=100)
    parser.add_argument("--stop", type=int, default=300)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cross-lingual", action="store_true", help="calibrate the gate's cross-lingual e5 threshold instead")
    parser.add_argument("--book-kb", default="happy-llm-book-e5d")
    parser.add_argument("--fit", type=Path, nargs=2, metavar=("CALIB", "HELDOUT"), help="fit the answerability weights on two result files")
    args = parser.parse_args(argv)
    if args.fit:
        fitted = fit(args.data_dir, *args.fit)
        print(json.dumps(fitted, indent=1))
        if args.out:
            args.out.write_text(json.dumps(fitted, indent=1))
        return 0
    if args.cross_lingual:
        result = cross_lingual(args.data_dir, args.book_kb)
        print(json.dumps(result, indent=1, ensure_ascii=False))
        if args.out:
            args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
        return 0

    from knowledge.tokenizer import default_tokenizer
    from llm_backend.client import OpenAIChatClient
    from llm_backend.settings import Settings

    settings = Settings.load(base_url=args.base_url)
    client = OpenAIChatClient(settings)
    tok = default_tokenizer(settings.models_dir)

    def one(item: dict[str, Any]) -> dict[str, Any]:
        hits = item["hits"][:4]
        relevant = [h for h in hits if is_relevant(item["q"], h)]
        packed = pack_context(hits, 1000, tok)
        sources = [to_citation(i + 1, h, t) for i, (h, t) in enumerate(packed)]
        j = judge(client, item["q"], sources, "en")
        return {"index": item["index"], "answerable": item["answerable"], "q": item["q"], "gate": bool(relevant),
                "coverage": max((term_coverage(item["q"], h.text) for h in hits), default=0.0), "p_yes": j.p_yes, "seconds": round(j.seconds, 2)}

    todo = items(args.data_dir, args.start, args.stop)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        rows = list(pool.map(one, todo))
    wall = time.perf_counter() - t0
    secs = sorted(r["seconds"] for r in rows)
    summary = {
        "questions": len(rows), "wall_s": round(wall, 1), "median_judge_s": secs[len(secs) // 2] if secs else None,
        "no_logprobs": sum(r["p_yes"] is None for r in rows),
        "gate_refused": {"answerable": sum(not r["gate"] for r in rows if r["answerable"]), "unanswerable": sum(not r["gate"] for r in rows if not r["answerable"])},
        "p_yes": thresholds(rows, "p_yes", [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
        "coverage": thresholds(rows, "coverage", [0.2, 0.33, 0.4, 0.5, 0.6]),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                        "load_average": os.getloadavg(), "summary": summary, "rows": rows}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
