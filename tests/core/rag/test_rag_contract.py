"""Contract tests through the real openai client against the fake server: server embeddings and rerank."""

from __future__ import annotations

from pathlib import Path

from core.rag.rerankers import ServerReranker
from core.rag.retrievers import DenseRetriever
from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry
from knowledge.types import Hit
from llm_backend.client import OpenAIChatClient
from llm_backend.settings import Settings
from llm_backend.testing import FakeOpenAIServer


def test_server_embedder_builds_and_queries_a_knowledge_base(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Chroma\n\nChroma stores vectors.\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# Jieba\n\nJieba segments Chinese text.\n", encoding="utf-8")
    with FakeOpenAIServer(models=["fake-embed"]) as server:
        client = OpenAIChatClient(Settings.load(base_url=server.url, max_retries=0))
        kb = KnowledgeBaseRegistry(tmp_path / "home", client=client).create("srv", embedder="server:fake-embed")
        assert not ingest(kb, [tmp_path / "a.md", tmp_path / "b.md"]).failed
        hits = DenseRetriever.for_kb(kb).retrieve("Jieba segments Chinese text", 1)
        assert Path(str(hits[0].meta["source"])).name == "b.md"
        embed_calls = [body for path, body in server.requests if path.endswith("/embeddings")]
        assert embed_calls and all(body["model"] == "fake-embed" for body in embed_calls)


def test_server_reranker() -> None:
    hits = [Hit("a", "cats purr", 1.0, {}), Hit("b", "vector databases store embeddings", 0.5, {})]
    with FakeOpenAIServer() as server:
        client = OpenAIChatClient(Settings.load(base_url=server.url, max_retries=0))
        out = ServerReranker(client).rerank("vector databases", hits, 2)
    assert [h.chunk_id for h in out] == ["b", "a"] and out[0].meta["rerank_score"] > out[1].meta["rerank_score"]
