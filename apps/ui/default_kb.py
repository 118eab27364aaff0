"""The default knowledge base of ``make run``: the project's own user guide (``docs/guide``, English and Chinese).

Building it is incremental: the first time every page is read, later only changed pages are (a few seconds in all).
The default embedder is ``e5`` (multilingual-e5-small, bf16 on torch or fp32 on ONNX Runtime) with hybrid retrieval (dense + BM25), so a
question in one language finds a page written in the other; on a CPU with bf16 matrix units (AMX, AVX512-BF16) it
runs on torch at once; elsewhere the first build in a data home exports the ONNX graph once (about a minute). ``--kb-embedder none`` builds a BM25-only base in seconds.

Example::

    report = ensure_default_kb(KnowledgeBaseRegistry(settings.home))
    print(report.summary())
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from llm_backend.errors import ConfigError

if TYPE_CHECKING:
    from knowledge.ingest import IngestReport
    from knowledge.progress import ProgressCallback
    from knowledge.registry import KnowledgeBaseRegistry

log = logging.getLogger(__name__)

DEFAULT_KB = "ragent-docs"
"""Name of the default knowledge base."""
DEFAULT_KB_EMBEDDER = "e5"
"""Multilingual dense + BM25: see the module docstring."""
REPO_ROOT = Path(__file__).resolve().parents[2]


def guide_dir() -> Path:
    """``docs/guide`` of this checkout."""
    return REPO_ROOT / "docs" / "guide"


def ensure_default_kb(
    registry: KnowledgeBaseRegistry,
    *,
    docs: Path | None = None,
    name: str = DEFAULT_KB,
    embedder: str = DEFAULT_KB_EMBEDDER,
    progress: bool | ProgressCallback = False,
) -> IngestReport:
    """Create the knowledge base ``name`` if needed and bring it up to date with the guide in ``docs``.

    A base of that name built with another embedder is rebuilt (it only ever holds the guide). ``progress``: a
    callback for :class:`~knowledge.progress.IngestProgress` snapshots, or True for the CLI's progress display."""
    folder = Path(docs) if docs is not None else guide_dir()
    if not folder.is_dir() or not any(folder.rglob("*.md")):
        raise ConfigError(
            f"the user guide is not at {folder}: run `ragent app --with-default-kb` from a checkout of the repository "
            "(it reads docs/guide), or pass --docs FOLDER."
        )
    if registry.exists(name):
        kb = registry.open(name)
        if kb.manifest.embedder != embedder:
            log.warning("knowledge base %s was built with embedder %s; rebuilding it with %s", name, kb.manifest.embedder, embedder)
            registry.delete(name)
    if not registry.exists(name):
        kb = registry.create(name, embedder=embedder, description="The ragent user guide (docs/guide), English and Chinese.")
    else:
        kb = registry.open(name)
    from knowledge.ingest import ingest

    if progress is True:
        from apps.cli.progress import ingest_view

        with ingest_view() as view:
            report = ingest(kb, [folder], progress=view)
    else:
        report = ingest(kb, [folder], progress=progress if callable(progress) else None)
    log.info("default knowledge base %s: %s", name, report.summary())
    return report
