"""`ragent kb create | ingest | list | delete | search | ask` through typer's runner (fake server for ask)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.cli.main import app
from llm_backend.testing import FakeOpenAIServer

runner = CliRunner()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "文档 docs"
    root.mkdir()
    (root / "lora.md").write_text("# LoRA\n\nLoRA 冻结预训练权重，只训练低秩分解矩阵。\n", encoding="utf-8")
    (root / "rag.md").write_text("# RAG\n\nRetrieval-augmented generation answers from retrieved passages.\n", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    return root


def _ok(args: list[str]) -> str:
    """stdout of a successful command (progress lines go to stderr, as in a terminal)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_kb_lifecycle(corpus: Path) -> None:
    assert "created knowledge base 'notes'" in _ok(["kb", "create", "notes", "--embedder", "hash"])
    out = _ok(["kb", "ingest", "notes", str(corpus), "--json"])
    report = json.loads(out)
    assert len(report["added"]) == 2 and report["failed"][0]["reason"] == "empty file"
    listed = json.loads(_ok(["kb", "list", "--json"]))
    assert listed[0]["name"] == "notes" and listed[0]["files"] == 2 and listed[0]["embedder"] == "hash"
    hits = json.loads(_ok(["kb", "search", "notes", "低秩矩阵", "--json", "-k", "1"]))
    assert hits[0]["meta"]["source"].endswith("lora.md")
    filtered = json.loads(_ok(["kb", "search", "notes", "LoRA RAG", "--json", "--filter", f"source={corpus.resolve() / 'rag.md'}"]))
    assert filtered and all(h["meta"]["source"].endswith("rag.md") for h in filtered)
    assert "[1]" in _ok(["kb", "search", "notes", "LoRA"])
    again = json.loads(_ok(["kb", "ingest", "notes", str(corpus), "--json"]))
    assert len(again["unchanged"]) == 2 and again["chunks_written"] == 0
    _ok(["kb", "delete", "notes", "--yes"])
    assert json.loads(_ok(["kb", "list", "--json"])) == []


def test_clear_errors() -> None:
    result = runner.invoke(app, ["kb", "search", "missing", "q"])
    assert result.exit_code == 1 and "no knowledge base named 'missing'" in result.output
    _ok(["kb", "create", "e", "--embedder", "hash"])
    result = runner.invoke(app, ["kb", "search", "e", "q", "--embedder", "none"])
    assert result.exit_code == 1 and "built with the embedder 'hash'" in result.output
    result = runner.invoke(app, ["kb", "create", "bad", "--embedder", "bert"])
    assert result.exit_code == 1 and "unknown embedder" in result.output


def test_ask_streams_a_cited_answer(corpus: Path) -> None:
    _ok(["kb", "create", "ask", "--embedder", "none"])
    _ok(["kb", "ingest", "ask", str(corpus)])
    with FakeOpenAIServer(["LoRA 只训练低秩分解矩阵 [1]。"]) as server:
        out = _ok(["kb", "ask", "ask", "LoRA 训练什么矩阵？", "--base-url", server.url, "--json"])
        body = server.chat_requests()[-1]
    answer = json.loads(out)
    assert answer["found"] and answer["citations"][0]["number"] == 1
    assert answer["citations"][0]["source"].endswith("lora.md")
    assert body["stream"] is True and "低秩分解矩阵" in body["messages"][1]["content"]
    with FakeOpenAIServer(["LoRA 只训练低秩分解矩阵 [1]。"]) as server:
        text = _ok(["kb", "ask", "ask", "LoRA 训练什么矩阵？", "--base-url", server.url])
    assert "低秩分解矩阵 [1]" in text and "Sources:" in text and "lora.md" in text
    assert text.count("低秩分解矩阵") == 1  # the answer is printed once (it used to be repeated with its sources)


def test_ask_refuses_a_question_whose_figure_no_passage_states_unless_told_not_to(corpus: Path) -> None:
    _ok(["kb", "create", "en", "--embedder", "none"])
    _ok(["kb", "ingest", "en", str(corpus)])
    question = "What did retrieval-augmented generation answer from in 2019?"
    with FakeOpenAIServer(["It answered from retrieved passages [1]."]) as server:
        refused = json.loads(_ok(["kb", "ask", "en", question, "--base-url", server.url, "--json"]))
        assert not server.chat_requests()  # refused before the model was asked
    assert refused["text"].startswith("No passage mentions 2019, so the passages do not contain the answer.")
    assert "retrieved passages" in refused["segments"][-1]["text"] and refused["segments"][-1]["kind"] == "quote"
    with FakeOpenAIServer(["It answered from retrieved passages [1]."]) as server:
        asked = json.loads(_ok(["kb", "ask", "en", question, "--base-url", server.url, "--json", "--no-refuse"]))
        assert len(server.chat_requests()) == 1
    assert asked["text"] == "It answered from retrieved passages [1]." and asked["answerability"] is None
