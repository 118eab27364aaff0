"""Retrievers: BM25 with Chinese segmentation, dense, weighted fusion, filters, the LangChain adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.rag import open_retriever
from core.rag.filters import matches, parse_filter_args
from core.rag.lang import detect_language
from core.rag.retrievers import BM25Retriever, DenseRetriever, HybridRetriever
from knowledge.base import KnowledgeBase
from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry
from knowledge.types import Hit
from llm_backend.errors import ConfigError

DOCS = {
    "attention.md": "# 注意力机制\n\n注意力机制让模型在处理序列时关注最相关的词。自注意力计算查询和键的相似度。\n",
    "lora.md": "# LoRA 微调\n\nLoRA 冻结预训练权重，只训练低秩分解矩阵，显著减少可训练参数。\n",
    "rag.md": "# Retrieval\n\nRetrieval-augmented generation retrieves passages and lets the model answer from them.\n",
    "bm25.md": "# BM25\n\nBM25 is a lexical ranking function based on term frequency and inverse document frequency.\n",
}


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("t", embedder="hash")
    assert not ingest(kb, [corpus]).failed
    return kb


def _names(hits: list[Hit]) -> list[str]:
    return [Path(str(h.meta["source"])).name for h in hits]


def test_bm25_segments_chinese(kb: KnowledgeBase) -> None:
    bm25 = BM25Retriever.for_kb(kb)
    assert _names(bm25.retrieve("什么是注意力机制", 2))[0] == "attention.md"
    assert _names(bm25.retrieve("低秩矩阵", 2))[0] == "lora.md"
    assert _names(bm25.retrieve("inverse document frequency", 2))[0] == "bm25.md"
    assert bm25.retrieve("完全无关的天气预报", 3) == []  # no shared term, no hit
    assert all("bm25_score" in h.meta for h in bm25.retrieve("LoRA", 3))


def test_dense_scores_and_model(kb: KnowledgeBase) -> None:
    dense = DenseRetriever.for_kb(kb)
    hits = dense.retrieve("Retrieval-augmented generation retrieves passages", 2)
    assert _names(hits)[0] == "rag.md"
    assert hits[0].meta["dense_model"] == "hash" and -1.0 <= hits[0].meta["dense_score"] <= 1.0


def test_filters_apply_to_every_retriever(kb: KnowledgeBase) -> None:
    lora = next(k for k in kb.manifest.files if k.endswith("lora.md"))
    for retriever in (BM25Retriever.for_kb(kb), DenseRetriever.for_kb(kb), HybridRetriever.for_kb(kb)):
        hits = retriever.retrieve("注意力机制 LoRA", 5, filters={"source": lora})
        assert hits and set(_names(hits)) == {"lora.md"}, type(retriever).__name__


def test_filter_syntax() -> None:
    meta = {"source": "a.md", "page": 3, "format": "pdf"}
    assert matches(meta, {"page": {"$gte": 3}, "format": {"$in": ["pdf", "md"]}})
    assert not matches(meta, {"page": {"$lt": 3}})
    assert parse_filter_args(["page=3", "source=a.md"]) == {"page": 3, "source": "a.md"}
    with pytest.raises(ConfigError):
        parse_filter_args(["page"])
    with pytest.raises(ConfigError):
        BM25Retriever.retrieve(None, "q", 1, filters={"page": {"$regex": "x"}})  # type: ignore[arg-type]


class _Fixed:
    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return [Hit(i, i, 1.0 / (n + 1), {}) for n, i in enumerate(self.ids[:k])]


def test_weighted_fusion_follows_language() -> None:
    dense = _Fixed(["d1", "d2", "shared"])
    bm25 = _Fixed(["b1", "b2", "shared"])
    weights = {"zh": (0.0, 1.0), "en": (1.0, 0.25)}
    hybrid = HybridRetriever(dense, bm25, weights=weights)
    # Chinese: dense weight 0 -> BM25 order exactly (a weak retriever cannot pull the best one down)
    assert [h.chunk_id for h in hybrid.retrieve("注意力机制是什么", 3)] == ["b1", "b2", "shared"]
    # English: dense leads, BM25 only breaks ties: 1/61 (d1) < 1/63 + 0.25/63 (shared, found by both)
    assert [h.chunk_id for h in hybrid.retrieve("what is attention", 5)] == ["shared", "d1", "d2", "b1", "b2"]
    scores = [h.score for h in hybrid.retrieve("what is attention", 5)]
    assert scores[0] == pytest.approx(1.25 / 63) and scores[1] == pytest.approx(1 / 61)


def test_detect_language() -> None:
    assert detect_language("RoPE 位置编码是怎么工作的") == "zh"
    assert detect_language("How does RoPE work?") == "en"


def test_open_retriever_by_name(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_backend.settings import Settings

    settings = Settings.load(home=kb.path.parent.parent)
    retriever = open_retriever("t", settings=settings)
    assert _names(retriever.retrieve("LoRA 微调", 1)) == ["lora.md"]
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        open_retriever("t", mode="sparse", settings=settings)


def test_bm25_only_knowledge_base(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(DOCS["lora.md"], encoding="utf-8")
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("b", embedder="none")
    ingest(kb, [tmp_path / "a.md"])
    hybrid = HybridRetriever.for_kb(kb)
    assert hybrid.dense is None and _names(hybrid.retrieve("LoRA", 1)) == ["a.md"]
    with pytest.raises(ConfigError, match="no dense embedder"):
        DenseRetriever.for_kb(kb)


def test_langchain_adapter(kb: KnowledgeBase) -> None:
    from core.rag.langchain import LangChainRetriever

    lc = LangChainRetriever(retriever=BM25Retriever.for_kb(kb), k=2)
    docs = lc.invoke("低秩分解")
    assert docs and docs[0].metadata["source"].endswith("lora.md")
    assert "chunk_id" in docs[0].metadata and docs[0].page_content.startswith("# LoRA")
