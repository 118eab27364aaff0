"""The BM25 index of a knowledge base (``bm25s``), with ``jieba`` word segmentation for Chinese.

Text is cut into runs of CJK characters (segmented by jieba) and runs of other letters and digits (lower-cased
words); stop words of both languages and punctuation are dropped. The index is rebuilt from the chunk store after
each ingestion (bm25s has no incremental update; 10k chunks take a few seconds) and saved next to the manifest with
the fingerprint of the chunk ids it holds, so a stale or half-written index is detected and rebuilt.

Example::

    index = BM25Index.build(chunks)
    index.search("注意力机制是什么", k=5)      # [(row, score), ...]
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.types import Chunk

log = logging.getLogger(__name__)

_RUNS = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|([^\W_]+)", re.UNICODE)

_ZH_STOP = (
    "的 了 是 在 和 与 及 或 也 就 都 而 并 被 把 将 对 从 到 由 为 以 于 之 其 这 那 这个 那个 这些 那些 一个 一种 我们 你们 他们 "
    "它们 我 你 他 她 它 吗 呢 吧 啊 么 什么 怎么 怎样 如何 哪 哪些 哪个 哪里 为什么 多少 几 是否 有 没有 不 很 还 又 但 但是 "
    "因为 所以 如果 可以 能 会 要 等 等等 中 上 下 时 后 前 里 个 些 给 让 向 着 过 地 得 所 该 此 各 每 即 则 且 如 若 请 问"
)
ZH_STOPWORDS = frozenset(_ZH_STOP.split())


def _bm25s() -> Any:
    """The ``bm25s`` module, its logger made to follow the application's logging: bm25s sets its own logger to
    DEBUG on import, which printed "Building index from tokens" on every CLI ingest."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.NOTSET)
    return bm25s


def _en_stopwords() -> frozenset[str]:
    try:
        _bm25s()
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN)
    except ImportError:  # pragma: no cover
        words = "a an and are as at be by for from has he in is it its of on that the to was were will with"
        return frozenset(words.split())


EN_STOPWORDS = _en_stopwords()
_jieba_ready = False


def _jieba() -> Any:
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba_ready = True
    return jieba


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``: jieba words for Chinese, lower-cased words for the rest, no stop words."""
    out: list[str] = []
    jieba = None
    for m in _RUNS.finditer(text):
        cjk, word = m.group(1), m.group(2)
        if cjk:
            if jieba is None:
                jieba = _jieba()
            out.extend(w for w in jieba.lcut(cjk) if w not in ZH_STOPWORDS)
        elif word:
            w = word.lower()
            if w not in EN_STOPWORDS:
                out.append(w)
    return out


def fingerprint(ids: Iterable[str]) -> str:
    """Order-independent digest of a set of chunk ids."""
    h = hashlib.sha256()
    for cid in sorted(ids):
        h.update(cid.encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


class BM25Index:
    """A bm25s index over chunks, with the chunks themselves (ids, texts, metadata) in the same order."""

    def __init__(self, chunks: Sequence[Chunk], model: Any | None, fp: str, tokens: Sequence[list[str]] | None = None) -> None:
        self.chunks = list(chunks)
        self.model = model  # None when there are no chunks
        self.fingerprint = fp
        # Index terms per chunk, kept so the next rebuild re-segments only new chunks (jieba is the slow part).
        self.tokens = list(tokens) if tokens is not None else []
        self._row = {c.id: i for i, c in enumerate(self.chunks)}

    def __len__(self) -> int:
        return len(self.chunks)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], *, texts: Sequence[str] | None = None, known: dict[str, list[str]] | None = None) -> BM25Index:
        """Index ``chunks``; ``texts`` (default: the chunk texts with their heading path) are what gets tokenized.
        ``known`` maps chunk ids to terms from an earlier index, reused instead of segmenting again."""
        from knowledge.splitter import context_text

        bm25s = _bm25s()

        chunks = list(chunks)
        fp = fingerprint(c.id for c in chunks)
        if not chunks:
            return cls([], None, fp)
        known = known or {}
        corpus = []
        for i, c in enumerate(chunks):
            terms = known.get(c.id)
            if terms is None:
                terms = tokenize(texts[i] if texts is not None else context_text(c))
            corpus.append(terms)
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
        return cls(chunks, model, fp, corpus)

    def known_tokens(self) -> dict[str, list[str]]:
        """Chunk id -> index terms, for :meth:`build` to reuse."""
        return {c.id: t for c, t in zip(self.chunks, self.tokens, strict=False)}

    def search(self, query: str, k: int, *, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Top ``k`` rows with a positive score as ``(row, score)``, best first; ``mask`` (0/1 per row) filters."""
        if self.model is None or k <= 0:
            return []
        terms = tokenize(query)
        ids = self.model.get_tokens_ids(terms)
        if not ids:
            return []
        scores = self.model.get_scores_from_ids(ids)
        if mask is not None:
            scores = scores * mask
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]

    def row(self, chunk_id: str) -> int | None:
        return self._row.get(chunk_id)

    # -- persistence ----------------------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write to a temporary folder, then swap it in: a crash never leaves a half index that looks whole. On a full
        disk the old index stays as it was and this one is only kept in memory (a warning says so): searching goes
        on, and a later run saves it."""
        try:
            self._save(directory)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.warning("no space left to save the keyword index at %s; it is used from memory until a later run saves it", directory)

    def _save(self, directory: Path) -> None:
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=directory.parent))
        try:
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as fh:
                for i, c in enumerate(self.chunks):
                    row = {"id": c.id, "text": c.text, "meta": c.meta, "terms": self.tokens[i] if i < len(self.tokens) else None}
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            if self.model is not None:
                self.model.save(str(tmp / "bm25"), show_progress=False)
            (tmp / "fingerprint").write_text(self.fingerprint)
            old = directory.with_name(directory.name + ".old")
            if old.exists():
                shutil.rmtree(old)
            if directory.exists():
                os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> BM25Index | None:
        """The saved index, or None when there is none (or it is unreadable)."""
        fp_file = directory / "fingerprint"
        if not fp_file.is_file():
            return None
        try:
            bm25s = _bm25s()
            chunks = []
            tokens: list[list[str]] | None = []
            with open(directory / "chunks.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    d = json.loads(line)
                    chunks.append(Chunk(d["id"], d["text"], d["meta"]))
                    if tokens is not None and d.get("terms") is not None:
                        tokens.append(d["terms"])
                    else:
                        tokens = None
            model = bm25s.BM25.load(str(directory / "bm25"), show_progress=False) if chunks else None
            return cls(chunks, model, fp_file.read_text().strip(), tokens)
        except Exception as exc:
            log.warning("BM25 index at %s is unreadable (%s); it will be rebuilt", directory, exc)
            return None
