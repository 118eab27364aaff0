"""A small bilingual corpus and the state of a knowledge base that a resumed run must reproduce exactly."""

from __future__ import annotations

from pathlib import Path

from knowledge.base import KnowledgeBase


def write_corpus(root: Path, n: int, paragraphs: int = 3) -> None:
    """``n`` markdown files of ``paragraphs`` short Chinese + English paragraphs each."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = "\n\n".join(f"第{i}号文件的第{j}段。检索增强生成把检索到的资料交给模型。Document {i} paragraph {j} about retrieval." for j in range(paragraphs))
        (root / f"doc {i:03d}.md").write_text(f"# 文档 {i}\n\n{body}\n", encoding="utf-8")


def kb_state(kb: KnowledgeBase) -> tuple[dict[str, list[str]], dict[str, str], int]:
    """What must be identical after a crash and a rerun: manifest files -> chunk ids, store id -> text, count."""
    files = {k: sorted(r.chunk_ids) for k, r in kb.manifest.files.items() if r.complete}
    stored = {c.id: c.text for c in kb.store.iter_chunks()}
    return files, stored, kb.store.count()
