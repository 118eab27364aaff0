"""Test helper, run as a script: the ``ragent`` CLI with the ``hash`` embedder slowed down to a fixed time per
text, so an ingestion lasts long enough to be interrupted at a chosen point (tests/knowledge/test_ingest_faults.py).

Usage: ``python tests/knowledge/slow_cli.py SECONDS_PER_TEXT kb ingest NAME PATH...``; ``$SLOW_BM25`` (seconds) also
slows the keyword-index rebuild at the end.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import knowledge.base as base
from knowledge.embedders import HashEmbedder, make_embedder


class SlowHashEmbedder(HashEmbedder):
    """The ``hash`` embedder (same vectors, same name), taking ``delay`` seconds per text."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay * len(texts))
        return super().embed_documents(texts)


def main() -> None:
    delay = float(sys.argv[1])

    def patched(name: str, **kwargs: object) -> object:
        return SlowHashEmbedder(delay) if name == "hash" else make_embedder(name, **kwargs)  # type: ignore[arg-type]

    base.make_embedder = patched  # type: ignore[assignment]
    pause = float(os.environ.get("SLOW_BM25", "0"))
    if pause:
        rebuild = base.KnowledgeBase.rebuild_bm25

        def slow_rebuild(self: base.KnowledgeBase) -> object:
            time.sleep(pause)
            return rebuild(self)

        base.KnowledgeBase.rebuild_bm25 = slow_rebuild  # type: ignore[method-assign,assignment]
    from apps.cli.main import app

    app(args=sys.argv[2:], prog_name="ragent")


if __name__ == "__main__":
    main()
