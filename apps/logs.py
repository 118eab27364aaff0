"""Logging for the programs a user runs (the CLI, the Streamlit app): one handler, one format, one level.

Libraries (pypdf, chromadb, httpx, openai, transformers, sentence-transformers, streamlit, ...) log through the same
handler, never their own: at the default level only their errors show, so a line such as pypdf's ``EOF marker not
found`` does not print beside the reason we give for that file (the loaders fold such records into the reason); with
``-v`` (or ``RAGENT_LOG_LEVEL=debug``) everything shows, in our format. Python warnings go through logging too.

Example::

    configure_logging("debug")          # ragent -v ...
    configure_logging(None)             # RAGENT_LOG_LEVEL, else warnings and errors of ours, errors of libraries
"""

from __future__ import annotations

import logging
import os
import sys

LEVEL_ENV = "RAGENT_LOG_LEVEL"
"""Environment variable with the level (debug, info, warning, error); ``ragent -v`` sets debug and passes it on to
the processes it starts (the Streamlit app)."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LIBRARIES = (
    "docx", "bs4", "chromadb", "httpx", "httpx2", "httpcore", "openai", "urllib3", "transformers",
    "sentence_transformers", "huggingface_hub", "torch", "onnxruntime", "streamlit", "tornado", "watchdog", "jieba",
    "bm25s", "posthog", "uvicorn", "fastapi", "mcp", "filelock", "asyncio", "py.warnings",
)
"""Loggers of other packages, held at ``ERROR`` unless the user asks for debug output. (pypdf is not here: the loaders
take its records and fold them into the reason of the file they concern, see :mod:`knowledge.loaders`.)"""

_HANDLER_MARK = "_ragent_handler"


def resolve_level(level: str | int | None) -> int:
    """``level`` (a name or a number), else ``$RAGENT_LOG_LEVEL``, else ``WARNING``; an unknown name is ``WARNING``."""
    if level is None:
        level = os.environ.get(LEVEL_ENV) or "warning"
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    return value if isinstance(value, int) else logging.WARNING


def configure_logging(level: str | int | None = None) -> int:
    """Route every log record of this process through one stderr handler at the chosen level (see the module
    docstring); returns the level. Safe to call again (the handler is replaced, not added twice)."""
    chosen = resolve_level(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(chosen)
    library_level = chosen if chosen <= logging.DEBUG else max(chosen, logging.ERROR)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(True)
    # transformers installs its own stderr handler when imported; its level is all we can set before that.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "debug" if chosen <= logging.DEBUG else "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    return chosen
