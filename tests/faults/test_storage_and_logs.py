"""The fault suite: a full disk under the data home, and library log lines on the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import ragent
from .full_disk import run_isolated

pytestmark = pytest.mark.fault


def test_full_disk_is_a_clear_error_and_the_base_stays_readable(tmp_path: Path) -> None:
    result = run_isolated(tmp_path / "work")
    if result is None:
        pytest.skip("cannot mount a small tmpfs here (not root, and `unshare -rm` is not permitted): no real full disk to test on")
    stderr = str(result["full_stderr"])
    assert result["full_rc"] == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("error: the disk holding the knowledge base store") and "MiB free" in stderr
    assert result["search_rc"] == 0 and "Chroma stores vectors" in json.loads(str(result["search_stdout"]))[0]["text"]
    assert result["again_rc"] == 0, result["again_stderr"]
    assert result["chunks"] == result["clean_chunks"]  # nothing lost, nothing doubled


def test_cli_on_a_corrupt_pdf_prints_no_raw_library_line(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf")
    (docs / "ok.md").write_text("# Fine\n\nA good file.\n", encoding="utf-8")
    home = tmp_path / "home"
    assert ragent(["kb", "create", "k", "--embedder", "none"], home).returncode == 0
    done = ragent(["kb", "ingest", "k", str(docs), "--no-progress"], home)
    assert done.returncode == 0, done.stderr
    assert "pypdf" not in done.stderr.replace("pypdf: EOF", "")  # no "WARNING pypdf._reader: ..." line
    assert done.stderr.count("EOF marker not found") == 1  # said once, in the file's reason
    assert "corrupt.pdf: corrupt or unreadable pdf" in done.stderr
