"""Calibrate the answerability assessment on ClapNQ dev questions, and check it on questions the fit never saw.

For each ClapNQ dev question (answerable: its gold passages; unanswerable: the related passages that do not answer
it) the passages are packed as ``ragent kb ask`` packs them (k 4, 1,000 tokens) and :func:`core.rag.answerable.assess`
records e5's closeness of the question to the closest passage, the share of its words the best passage holds, and
the question's specific figures and names that no passage states. No model server is needed.

``--fit`` fits the weights of :func:`core.rag.answerable.answerability` (logistic regression, scikit-learn) on
questions ``--holdout``..299 of each kind, with 5-fold cross-validation there, and checks them on questions
0..``--holdout`` (which hold the ones ``benchmarks/rag_answers.py`` scores). Per cut it reports how many answerable
and unanswerable questions would be refused (a missing figure or name refuses too), and the cut that keeps 85% of the
answerable ones in cross-validation. With ``--kb`` (default ``ragent-docs-e5``) it also counts how many of the user
guide's English questions (``rag_answers.yaml``) the fitted weights would refuse: the check on another kind of text::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rag_answerable.py --fit --out /tmp/fit.json

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.rag.answerable import assess, shared_e5  # noqa: E402
from core.rag.context import pack_context  # noqa: E402
from knowledge.types import Hit  # noqa: E402

CUTS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


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


def assessed(question: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """The assessment of ``hits`` for ``question``, packed as ``ragent kb ask`` packs them."""
    from knowledge.tokenizer import default_tokenizer

    texts = [t for _, t in pack_context(list(hits)[:4], 1000, default_tokenizer())]
    a = assess(question, texts, shared_e5())
    return {"closeness": round(a.closeness, 5), "coverage": round(a.coverage, 4), "missing": list(a.missing)}


def refused(scores: Any, missing: Any, cut: float) -> Any:
    """Which questions are refused at ``cut`` (a missing figure or name refuses at any cut)."""
    return (scores < cut) | missing


def fit(data_dir: Path, holdout: int, kb: str | None, keep: float = 0.85) -> dict[str, Any]:
    """Fit on questions ``holdout``..299, check on 0..``holdout`` and on the guide (see the docstring)."""
    import numpy as np
    import yaml
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rows = [dict(it, **assessed(it["q"], it["hits"])) for it in items(data_dir, 0, 300)]
    for r in rows:
        del r["hits"]
    x = np.array([[r["closeness"], r["coverage"]] for r in rows])
    y = np.array([r["answerable"] for r in rows])
    miss = np.array([bool(r["missing"]) for r in rows])
    train = np.array([r["index"] >= holdout for r in rows])
    test = ~train
    model = LogisticRegression(C=1e4)
    cv = cross_val_predict(model, x[train], y[train], cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")[:, 1]
    model.fit(x[train], y[train])
    held = model.predict_proba(x[test])[:, 1]

    def table(p: Any, yy: Any, mm: Any) -> list[dict[str, Any]]:
        return [{"cut": c, "answerable_refused": f"{int(refused(p, mm, c)[yy].sum())}/{int(yy.sum())}",
                 "unanswerable_refused": f"{int(refused(p, mm, c)[~yy].sum())}/{int((~yy).sum())}"} for c in CUTS]

    kept = [c for c in CUTS if 1 - refused(cv, miss[train], c)[y[train]].mean() >= keep]
    out: dict[str, Any] = {
        "fitted_on": f"ClapNQ dev {holdout}-299 ({int(train.sum())} questions)", "held_out": f"ClapNQ dev 0-{holdout - 1} ({int(test.sum())} questions)",
        "weights": [round(float(w), 2) for w in model.coef_[0]] + [round(float(model.intercept_[0]), 2)],
        "auc": {"cross_validated": round(float(roc_auc_score(y[train], cv)), 3), "held_out": round(float(roc_auc_score(y[test], held)), 3),
                "closeness_alone": round(float(roc_auc_score(y[train], x[train, 0])), 3), "coverage_alone": round(float(roc_auc_score(y[train], x[train, 1])), 3)},
        "missing_specifics": {"answerable": int(miss[y].sum()), "unanswerable": int(miss[~y].sum())},
        "cut_keeping_85pct": max(kept) if kept else None,
        "cross_validated": table(cv, y[train], miss[train]),
        "held_out_table": table(held, y[test], miss[test]),
    }
    scored = [{"index": r["index"], "answerable": r["answerable"], "q": r["q"], "score": round(float(p), 3), "missing": r["missing"]}
              for r, p in zip([r for r, t in zip(rows, test, strict=True) if t], held, strict=True) if r["index"] < 10]
    out["scored_by_rag_answers"] = scored
    if kb:
        from core.rag import open_retriever

        retriever = open_retriever(kb)
        guide = yaml.safe_load((ROOT / "benchmarks" / "rag_answers.yaml").read_text(encoding="utf-8"))["ragent_docs"]["en"]
        g = [dict(q=q["q"], answerable=q.get("answerable", True), **assessed(q["q"], retriever.retrieve(q["q"], 4))) for q in guide]
        gp = model.predict_proba(np.array([[r["closeness"], r["coverage"]] for r in g]))[:, 1]
        gm = np.array([bool(r["missing"]) for r in g])
        gy = np.array([r["answerable"] for r in g])
        out["guide"] = {"kb": kb, "table": table(gp, gy, gm), "questions": [dict(r, score=round(float(p), 3)) for r, p in zip(g, gp, strict=True)]}
    return out


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
    parser.add_argument("--fit", action="store_true", help="fit and check the answerability weights")
    parser.add_argument("--holdout", type=int, default=30, help="questions 0..N-1 of each kind are held out of the fit")
    parser.add_argument("--kb", default="ragent-docs-e5", help="knowledge base of the user guide for the cross-domain check ('' to skip)")
    parser.add_argument("--cross-lingual", action="store_true", help="calibrate the gate's cross-lingual e5 threshold instead")
    parser.add_argument("--book-kb", default="happy-llm-book-e5d")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.fit or args.cross_lingual):
        parser.error("say what to do: --fit or --cross-lingual")
    result = fit(args.data_dir, args.holdout, args.kb or None) if args.fit else cross_lingual(args.data_dir, args.book_kb)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
