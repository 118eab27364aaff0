"""Ingestion throughput of an earlier commit's ``knowledge/ingest.py`` against today's, same process, same embedder.

Both run on the same files with the same embedder object (loaded and warmed once), into fresh knowledge bases
without the embedding cache, alternating ``--repeats`` times, after one untimed run that loads what loads on first use. The earlier ingestion is loaded from ``git show
COMMIT:knowledge/ingest.py`` against today's other modules, so it works for commits whose ingest API still fits.

Example (docs/benchmarks.md, "Ingestion you can watch and stop")::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ingest_before_after.py --before 5d2d753 --embedder minilm \\
        ../shared/data/happy-llm-book/README.md "../shared/data/happy-llm-book/chapter1__第一章 NLP基础概念.md"
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from knowledge.embedders import make_embedder  # noqa: E402
from knowledge.ingest import ingest as ingest_now  # noqa: E402
from knowledge.registry import KnowledgeBaseRegistry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--before", required=True, help="commit whose knowledge/ingest.py is 'before'")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ingest-ab-"))
    old_file = work / "old_ingest.py"
    old_file.write_text(subprocess.run(["git", "show", f"{args.before}:knowledge/ingest.py"], cwd=REPO, check=True, capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location("old_ingest", old_file)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_ingest"] = old
    spec.loader.exec_module(old)

    embedder = make_embedder(args.embedder)
    warm_up = getattr(embedder, "warm_up", None)
    if callable(warm_up):
        warm_up()
    if embedder is not None:
        embedder.embed_documents(["warm up"])
    # One untimed run first: chromadb, the tokenizer and jieba load on first use in the process.
    kb = KnowledgeBaseRegistry(work / "home-warm").create("ab", embedder=args.embedder)
    kb._embedder, kb._embedder_loaded = embedder, True
    ingest_now(kb, list(args.paths)[:1])
    for rep in range(args.repeats):
        for label, run in ((f"before ({args.before})", old.ingest), ("after", ingest_now)):
            kb = KnowledgeBaseRegistry(work / f"home-{rep}-{label[:5]}").create("ab", embedder=args.embedder)
            kb._embedder, kb._embedder_loaded = embedder, True
            t0 = time.perf_counter()
            report = run(kb, list(args.paths))
            seconds = time.perf_counter() - t0
            print(f"{label}: {report.chunks_written} chunks in {seconds:.1f} s = {report.chunks_written / seconds:.2f} chunks/s", flush=True)


if __name__ == "__main__":
    main()
