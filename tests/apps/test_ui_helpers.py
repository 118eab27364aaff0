"""Unit tests of the app's Streamlit-free helpers: background jobs, uploads, chat turns, the default knowledge base,
and the `ragent app` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from apps.ui.chat import ask, format_scores, history_messages
from apps.ui.default_kb import DEFAULT_KB, ensure_default_kb, guide_dir
from apps.ui.jobs import Job, JobRunner
from apps.ui.uploads import safe_filename, save_uploads
from knowledge.registry import KnowledgeBaseRegistry
from knowledge.types import Hit
from llm_backend.errors import ConfigError
from llm_backend.testing import ScriptedChatClient
from tests.apps.conftest import REPO, home


# -- jobs ------------------------------------------------------------------------------------------------------------
def test_job_result_progress_and_notes() -> None:
    runner = JobRunner()

    def work(job: Job) -> int:
        for i in range(3):
            job.update(done=i + 1, total=3, message=f"item {i}")
        job.note("item 1: skipped")
        return 42

    job = runner.submit("test", "three items", work)
    assert job.wait(10)
    assert (job.status, job.result, job.done, job.fraction, job.notes) == ("done", 42, 3, 1.0, ["item 1: skipped"])
    assert runner.get(job.id) is job and not runner.running()


def test_job_errors_become_messages() -> None:
    runner = JobRunner()

    def ours(job: Job) -> None:
        raise ConfigError("the data folder is missing: set RAGENT_DATA")

    def bug(job: Job) -> None:
        raise KeyError("oops")

    a, b = runner.submit("t", "ours", ours), runner.submit("t", "bug", bug)
    assert runner.wait_all(10)
    assert (a.status, a.error) == ("failed", "the data folder is missing: set RAGENT_DATA")
    assert b.status == "failed" and b.error is not None and "unexpected error (KeyError" in b.error


def test_job_runner_keeps_a_bounded_history() -> None:
    runner = JobRunner(keep=2)
    jobs = [runner.submit("t", str(i), lambda job: None) for i in range(4)]
    for job in jobs:
        job.wait(10)
    runner.submit("t", "last", lambda job: None).wait(10)
    assert runner.get(jobs[0].id) is None


# -- uploads ---------------------------------------------------------------------------------------------------------
def test_save_uploads_refuses_unsupported_and_empty_files(tmp_path: Path) -> None:
    saved = save_uploads([("a.md", b"# A"), ("b.EXE", b"MZ"), ("c.txt", b""), ("noext", b"x"), ("../../etc/d.html", b"<p>d</p>")], tmp_path)
    assert [p.name for p in saved.paths] == ["a.md"]
    assert all(p.parent == tmp_path for p in saved.paths)  # no path traversal
    reasons = {r.name: r.reason for r in saved.refused}
    assert "'..'" in reasons["../../etc/d.html"]  # a name that is a path is refused, not silently renamed
    assert ".EXE files are not supported" in reasons["b.EXE"] and "md" in reasons["b.EXE"]
    assert reasons["c.txt"] == "the file is empty."
    assert "(no extension)" in reasons["noext"]


@pytest.mark.parametrize(("name", "safe"), [("报告 2024.pdf", "报告 2024.pdf"), ("a/b\\c.md", "c.md"), (".hidden.md", "hidden.md"), ("x:y?.md", "x_y_.md")])
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


# -- chat ------------------------------------------------------------------------------------------------------------
class ListRetriever:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


def test_ask_returns_cited_turn_with_scores_and_streams() -> None:
    hits = [
        Hit("c1", "Run ragent serve to start the model server.", 0.03, {"source": "/docs/serving.md", "section": "Serving > Start", "bm25_score": 4.2}),
        Hit("c2", "The model server log is in the run folder.", 0.02, {"source": "/docs/book.pdf", "page": 7, "bm25_score": 1.0}),
    ]
    client = ScriptedChatClient(["Start the model server with ragent serve [1]. Its log is in the run folder [2]."])
    deltas: list[str] = []
    turn = ask("How do I start the model server?", retriever=ListRetriever(hits), client=client, k=2, on_delta=deltas.append)
    assert "".join(deltas).strip() == turn["content"] == "Start the model server with ragent serve [1]. Its log is in the run folder [2]."
    first, second = turn["sources"]
    assert (first["number"], first["file_name"], first["where"]) == (1, "serving.md", "Serving > Start")
    assert first["scores"] == {"score": 0.03, "bm25": 4.2}
    assert "ragent serve" in first["snippet"] and not first["inferred"]
    assert (second["number"], second["file_name"], second["where"]) == (2, "book.pdf", "page 7")
    assert turn["found"] is True and turn["role"] == "assistant" and turn["inferred"] is False
    # the passages were in the prompt, and the request streamed
    prompt = client.calls[0]["messages"][-1]["content"]
    assert "Run ragent serve" in prompt and "run folder" in prompt


def test_format_scores() -> None:
    assert format_scores({"score": 0.0325, "bm25": 4.123, "dense": 0.61}) == "score 0.0325 (bm25 4.123, dense 0.61)"
    assert format_scores({}) == "score: not recorded"


def test_history_messages_leave_out_failed_turns() -> None:
    turns: list[dict[str, Any]] = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1", "sources": []},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "", "error": "server down"},
    ]
    assert history_messages(turns) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]


# -- default knowledge base ------------------------------------------------------------------------------------------
def test_the_guide_exists_in_both_languages() -> None:
    en = sorted(p.name for p in (guide_dir() / "en").glob("*.md"))
    zh = sorted(p.name for p in (guide_dir() / "zh").glob("*.md"))
    assert en == zh and {"index.md", "install.md", "serving.md", "rag.md", "agents.md", "troubleshooting.md"} <= set(en)


def test_default_kb_is_built_once_then_refreshed_incrementally(tmp_path: Path) -> None:
    docs = tmp_path / "guide"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nStart the model server with ragent serve.\n")
    (docs / "b.md").write_text("# B\n\n知识库支持 PDF 文件。\n")
    registry = KnowledgeBaseRegistry(home())
    first = ensure_default_kb(registry, docs=docs, embedder="hash")  # the default (e5) is tested on the real guide
    assert len(first.added) == 2 and first.ok
    second = ensure_default_kb(registry, docs=docs, embedder="hash")
    assert (len(second.added), len(second.unchanged)) == (0, 2)
    (docs / "b.md").write_text("# B\n\n知识库支持 PDF 和 Word 文件。\n")
    third = ensure_default_kb(registry, docs=docs, embedder="hash")
    assert (len(third.updated), len(third.unchanged)) == (1, 1)
    assert registry.open(DEFAULT_KB).manifest.embedder == "hash"


def test_default_kb_built_with_another_embedder_is_rebuilt(tmp_path: Path) -> None:
    docs = tmp_path / "guide"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nStart the model server with ragent serve.\n")
    # An earlier `ragent app --with-default-kb --kb-embedder none` (another process) built it BM25-only.
    code = (
        "from pathlib import Path; from apps.ui.default_kb import ensure_default_kb; "
        "from knowledge.registry import KnowledgeBaseRegistry; from llm_backend.settings import Settings; "
        f"ensure_default_kb(KnowledgeBaseRegistry(Settings.load().home), docs=Path({str(docs)!r}), embedder='none')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "RAGENT_HOME": str(home())})
    registry = KnowledgeBaseRegistry(home())
    assert registry.open(DEFAULT_KB).manifest.embedder == "none"
    report = ensure_default_kb(registry, docs=docs, embedder="hash")
    assert len(report.added) == 1 and registry.open(DEFAULT_KB).manifest.embedder == "hash"


def test_default_kb_without_the_guide_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="user guide is not at"):
        ensure_default_kb(KnowledgeBaseRegistry(home()), docs=tmp_path / "missing")


# -- the `ragent app` command ----------------------------------------------------------------------------------------
def test_streamlit_command_is_headless_and_bound() -> None:
    from apps.cli.ui import streamlit_command

    argv = streamlit_command("127.0.0.1", 8765)
    joined = " ".join(argv)
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("apps/ui/app.py")
    assert "--server.headless true" in joined and "--server.address 127.0.0.1" in joined and "--server.port 8765" in joined
    assert "--browser.gatherUsageStats false" in joined


def test_app_command_help_and_busy_port() -> None:
    from apps.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["app", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--with-default-kb" in result.output and "--port" in result.output and "--host" in result.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = runner.invoke(app, ["app", "--port", str(port)])
    assert result.exit_code == 1
    assert f"port {port} is already in use" in result.output


def test_answer_markdown_shows_quotations_as_block_quotes() -> None:
    from apps.ui.chat import answer_markdown

    turn = {
        "content": "模型的话 [1]。资料 [2] 原文：“词表大小为 6144。” [2]",
        "segments": [{"text": "模型的话 [1]。", "kind": "model"}, {"text": "资料 [2] 原文：“词表大小为 6144。” [2]", "kind": "quote"}],
    }
    assert answer_markdown(turn) == "模型的话 [1]。\n\n> 资料 [2] 原文：“词表大小为 6144。” [2]"
    assert answer_markdown({"content": "plain [1].", "segments": [{"text": "plain [1].", "kind": "model"}]}) == "plain [1]."
    assert answer_markdown({"content": "old turn"}) == "old turn"
