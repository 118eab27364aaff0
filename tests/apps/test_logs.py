"""Logging of the programs a user runs: library lines go through our handler at the level the user chose."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from apps.logs import LIBRARIES, configure_logging, resolve_level


@pytest.fixture
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, {n: logging.getLogger(n).level for n in LIBRARIES})
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.fault
@pytest.mark.usefixtures("clean_logging")
def test_library_warnings_stay_quiet_by_default_and_show_with_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGENT_LOG_LEVEL", raising=False)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging(None)
    logging.getLogger("chromadb.segment").warning("raw chroma line")
    logging.getLogger("httpx").info("HTTP Request: POST ...")
    logging.getLogger("knowledge.ingest").warning("our own warning")
    out = stream.getvalue()
    assert "raw chroma line" not in out and "HTTP Request" not in out
    assert "WARNING knowledge.ingest: our own warning" in out

    configure_logging("debug")  # ragent -v: every library line, once, in our format
    logging.getLogger("chromadb.segment").warning("chroma line in our format")
    out = stream.getvalue()
    assert out.count("chroma line in our format") == 1 and "WARNING chromadb.segment: chroma line in our format" in out


def test_level_names_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGENT_LOG_LEVEL", "info")
    assert resolve_level(None) == logging.INFO
    assert resolve_level("debug") == logging.DEBUG
    assert resolve_level("nonsense") == logging.WARNING


def test_streamlit_logs_at_the_chosen_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.cli.ui import streamlit_command

    monkeypatch.delenv("RAGENT_LOG_LEVEL", raising=False)
    argv = streamlit_command("127.0.0.1", 8765)
    assert argv[argv.index("--logger.level") + 1] == "error"
    monkeypatch.setenv("RAGENT_LOG_LEVEL", "debug")
    argv = streamlit_command("127.0.0.1", 8765)
    assert argv[argv.index("--logger.level") + 1] == "debug"
