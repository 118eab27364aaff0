"""Integration: build a knowledge base from the Happy-LLM book (Chinese) and ask the real model server through
`ragent kb ask`; the answer must be right and cite the right chapter.

The whole book is ingested BM25-only (about 10 s here; with the e5 embedder it would take minutes on a CPU, too
slow for CI), chunked with the chat model's own tokenizer when it has been converted on this machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.cli.main import app
from llm_backend.client import OpenAIChatClient
from llm_backend.settings import default_home

REPO = Path(__file__).resolve().parents[3]
DATA = Path(os.environ.get("RAGENT_DATA") or REPO.parent / "shared" / "data")
BOOK = DATA / "happy-llm-book"
# Read at import time, before the autouse fixture points RAGENT_HOME at a temporary folder.
QWEN_TOKENIZER = default_home() / "models" / "hf" / "qwen2.5-coder-0.5b-instruct" / "tokenizer.json"

runner = CliRunner()


@pytest.mark.integration
def test_ask_the_book_answers_with_a_correct_citation(real_client: OpenAIChatClient, real_server_url: str) -> None:
    if not BOOK.is_dir():
        pytest.skip(f"book not found at {BOOK} (set RAGENT_DATA)")
    create = ["kb", "create", "happy-llm", "--embedder", "none"]
    if QWEN_TOKENIZER.is_file():
        create += ["--tokenizer", str(QWEN_TOKENIZER)]
    result = runner.invoke(app, create)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["kb", "ingest", "happy-llm", str(BOOK), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert len(report["added"]) >= 10 and not report["failed"]

    question = "BERT 的两个预训练任务是什么？"
    result = runner.invoke(
        app,
        ["kb", "ask", "happy-llm", question, "--base-url", real_server_url, "--json", "-k", "3", "--context-tokens", "800", "--max-tokens", "120"],
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["found"], answer
    text = answer["text"].upper()
    assert "MLM" in text or "NSP" in text or "掩码" in text, answer["text"]
    assert answer["citations"], answer
    cited = answer["citations"]
    # The book explains BERT's MLM + NSP pre-training in chapter 3; the cited passage must be that one.
    assert any("chapter3" in c["source"] and ("NSP" in c["text"] or "MLM" in c["text"]) for c in cited), cited


BOOK_QUESTIONS = [
    ("BERT 的 MLM 训练时随机选择多少比例的 token 用于遮蔽？", "15%"),
    ("LLaMA-3 的词表大小是多少？", "128K"),
    ("RoBERTa 预训练一共使用了多少数据？", "160GB"),
]


@pytest.mark.integration
def test_book_answers_hold_the_figures_and_every_figure_is_in_a_cited_passage(real_client: OpenAIChatClient) -> None:
    """Three factual questions on the book: the answer holds the book's figure, and every number and name it states
    is in a passage it cites (grounding by construction, core/rag/grounding.py)."""
    if not BOOK.is_dir():
        pytest.skip(f"book not found at {BOOK} (set RAGENT_DATA)")
    from core.rag import answer, open_retriever
    from core.rag.grounding import unsupported
    from knowledge.registry import KnowledgeBaseRegistry
    from knowledge.tokenizer import default_tokenizer
    from llm_backend.settings import Settings

    settings = Settings.load()
    registry = KnowledgeBaseRegistry(settings.home)
    kb = registry.create("book", embedder="none", tokenizer=str(QWEN_TOKENIZER) if QWEN_TOKENIZER.is_file() else None)
    from knowledge.ingest import ingest

    ingest(kb, [BOOK])
    retriever = open_retriever("book", settings=settings)
    for question, figure in BOOK_QUESTIONS:
        result = answer(question, retriever=retriever, client=real_client, k=4, max_tokens=160, tokenizer=default_tokenizer())
        assert result.found and figure.lower() in result.text.lower().replace(" ", ""), (question, result.text)
        assert result.citations, (question, result.text)
        assert unsupported(result.text, [c.text for c in result.citations]) == [], (question, result.text, result.citations)
