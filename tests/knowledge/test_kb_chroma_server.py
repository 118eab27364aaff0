"""A knowledge base on a real Chroma server (`chroma run`), the multi-process / multi-machine configuration."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.rag.retrievers import HybridRetriever
from knowledge.ingest import ingest
from knowledge.registry import KnowledgeBaseRegistry


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    exe = Path(sys.executable).with_name("chroma")
    if not exe.exists():
        exe_found = shutil.which("chroma")
        if exe_found is None:
            pytest.skip("the chroma CLI is not installed")
        exe = Path(exe_found)
    port = _free_port()
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail("chroma run exited early")
            time.sleep(0.2)
        else:
            pytest.fail("chroma server did not start within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_knowledge_base_on_a_chroma_server(tmp_path: Path, chroma_server: str) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# 向量库\n\nChroma 可以作为服务器运行，多个进程共享同一个库。\n", encoding="utf-8")
    (docs / "b.md").write_text("# 分词\n\njieba 为 BM25 切分中文。\n", encoding="utf-8")
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    kb = registry.create("shared", embedder="hash", chroma_url=chroma_server)
    assert not ingest(kb, [docs]).failed
    # a second process (here: a second registry object) sees the same chunks through the server
    other = KnowledgeBaseRegistry(tmp_path / "home").open("shared")
    assert other.store.count() == kb.manifest.n_chunks() > 0
    hits = HybridRetriever.for_kb(other).retrieve("Chroma 服务器", 1)
    assert Path(str(hits[0].meta["source"])).name == "a.md"
    registry.delete("shared")
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=int(chroma_server.rsplit(":", 1)[1]))
    assert "ragent-shared" not in [c.name for c in client.list_collections()]
