"""The embedding cache: text embedded once is not embedded again, in another knowledge base or after a change; a
broken cache never stops ingestion. And the int8 MiniLM stays close to fp32."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from knowledge.embedcache import CachingEmbedder, EmbeddingCache, text_key
from knowledge.embedders import HashEmbedder
from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry


class CountingEmbedder:
    """Deterministic vectors (hashed bigrams) under a cacheable name; records every text it embeds."""

    name = "minilm"

    def __init__(self) -> None:
        self.inner = HashEmbedder()
        self.embedded: list[str] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


def test_caching_embedder_embeds_each_text_once(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cached = CachingEmbedder(inner, EmbeddingCache(tmp_path / "cache.sqlite3"))
    first = cached.embed_documents(["alpha text", "beta text", "alpha text"])
    assert inner.embedded == ["alpha text", "beta text"]  # the duplicate is embedded once
    again = cached.embed_documents(["beta text", "alpha text"])
    assert inner.embedded == ["alpha text", "beta text"]  # nothing new
    np.testing.assert_array_equal(again, first[[1, 0]])
    np.testing.assert_array_equal(first[0], inner.inner.embed_documents(["alpha text"])[0])
    assert (cached.hits, cached.misses) == (2, 3)
    # Another process (a new cache object on the same file) sees the vectors; another model name does not.
    other = EmbeddingCache(tmp_path / "cache.sqlite3")
    assert set(other.get_many("minilm", [text_key("alpha text"), text_key("gamma")])) == {text_key("alpha text")}
    assert other.get_many("e5", [text_key("alpha text")]) == {}
    assert other.count("minilm") == 2


def _corpus(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (root / f"doc{i}.md").write_text(f"# Doc {i}\n\nParagraph one of document {i} about retrieval.\n\nParagraph two of document {i}.\n", encoding="utf-8")


def test_reingesting_unchanged_text_into_another_base_never_reembeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = CountingEmbedder()
    monkeypatch.setattr("knowledge.base.make_embedder", lambda name, client=None: fake)
    corpus = tmp_path / "docs"
    _corpus(corpus)
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    a = registry.create("a", embedder="minilm")
    ingest(a, [corpus])
    n_first = len(fake.embedded)
    assert n_first == a.manifest.n_chunks() > 0
    b = registry.create("b", embedder="minilm")
    report = ingest(b, [corpus])
    assert len(report.added) == 3 and len(fake.embedded) == n_first  # every vector came from the cache
    assert b.store.count() == a.store.count()
    # The vectors in b are those a model call gives: a dense query finds the right document.
    from core.rag.retrievers import DenseRetriever

    hits = DenseRetriever.for_kb(b).retrieve("Paragraph one of document 2 about retrieval", 1)
    assert Path(str(hits[0].meta["source"])).name == "doc2.md"
    # A changed file: only its new text is embedded.
    (corpus / "doc1.md").write_text("# Doc 1\n\nA new paragraph nobody has seen.\n", encoding="utf-8")
    ingest(b, [corpus])
    assert len(fake.embedded) - n_first == len(b.manifest.files[str((corpus / "doc1.md").resolve())].chunk_ids)
    assert registry.embedding_cache.is_file()


def test_an_unusable_cache_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "cache.sqlite3"
    blocker.mkdir()  # a folder where the file should be
    inner = CountingEmbedder()
    cached = CachingEmbedder(inner, EmbeddingCache(blocker))
    with caplog.at_level(logging.WARNING, logger="knowledge.embedcache"):
        out = cached.embed_documents(["one", "two"])
        cached.embed_documents(["one"])
    assert out.shape == (2, 64) and inner.embedded == ["one", "two", "one"]
    assert sum("embedding without the cache" in r.getMessage() for r in caplog.records) == 1


def test_int8_minilm_stays_close_to_fp32() -> None:
    import torch

    from knowledge.embedders import MiniLMEmbedder, make_embedder

    q = make_embedder("minilm-int8")
    assert isinstance(q, MiniLMEmbedder) and q.name == "minilm-int8"
    texts = [
        "The app listens on port 8501 by default.",
        "Chunks are stored in Chroma with a BM25 index beside them.",
        "Mount Logan is the highest mountain in Canada.",
    ]
    a = MiniLMEmbedder().embed_documents(texts)
    b = q.embed_documents(texts)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.95, cos
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not any(type(m) is torch.nn.Linear for m in q._model.modules())  # every Linear was replaced
