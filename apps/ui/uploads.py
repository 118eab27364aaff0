"""Files uploaded in the browser: check them, keep them on disk, ingest them into a knowledge base.

Uploaded files are saved under ``<data home>/uploads/<knowledge base>/`` (the knowledge base records file paths and
re-ingests a file only when its content changes). Unsupported or empty files, and names that are paths (absolute, or
with ``..``), are refused at once, each with its reason; the others are ingested by a background :class:`~apps.ui.jobs.Job` that reports progress per file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from knowledge.loaders import LOADERS, is_supported

if TYPE_CHECKING:
    from apps.ui.jobs import Job
    from knowledge.ingest import IngestReport
    from knowledge.progress import IngestProgress
    from knowledge.registry import KnowledgeBaseRegistry

log = logging.getLogger(__name__)

SUPPORTED = tuple(sorted(LOADERS))
"""File suffixes the knowledge bases can read."""


@dataclass(frozen=True)
class Refused:
    """An uploaded file that was not accepted, and why (a sentence for a person)."""

    name: str
    reason: str


@dataclass
class SavedUploads:
    """The files written to disk, and the ones refused."""

    paths: list[Path] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)


def supported_types_text() -> str:
    """``md, markdown, txt, ...`` for messages."""
    return ", ".join(s.lstrip(".") for s in SUPPORTED)


def safe_filename(name: str) -> str:
    """The file name without folders or characters that are awkward on disk (letters of any script are kept)."""
    base = Path(name.replace("\\", "/")).name.strip()
    base = re.sub(r"[\x00-\x1f/:*?\"<>|]+", "_", base)
    return base.lstrip(".") or "upload"


def unsafe_name_reason(name: str) -> str | None:
    """Why an uploaded file's name is refused, or None: an absolute path or a ``..`` step would put the file
    outside the knowledge base's upload folder (browsers send bare names; anything else is a crafted request)."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return "an absolute path is not a file name; upload the file itself."
    if ".." in unified.split("/"):
        return "a name with '..' would leave the upload folder; upload the file itself."
    return None


def upload_dir(home: Path, kb_name: str) -> Path:
    """Where the uploads of one knowledge base are kept."""
    return Path(home) / "uploads" / kb_name


def save_uploads(files: Iterable[tuple[str, bytes]], folder: Path) -> SavedUploads:
    """Write ``(name, content)`` pairs into ``folder``; refuse unsupported types and empty files with a reason."""
    out = SavedUploads()
    for name, data in files:
        unsafe = unsafe_name_reason(name)
        if unsafe is not None:
            out.refused.append(Refused(name, unsafe))
            continue
        filename = safe_filename(name)
        path = folder / filename
        if not is_supported(path):
            suffix = path.suffix or "(no extension)"
            out.refused.append(Refused(name, f"{suffix} files are not supported; upload one of: {supported_types_text()}."))
            continue
        if not data:
            out.refused.append(Refused(name, "the file is empty."))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.resolve().parent != folder.resolve():
            # Never write through a link someone left in the upload folder.
            out.refused.append(Refused(name, "a link of that name is in the upload folder; it is not overwritten."))
            continue
        path.write_bytes(data)
        out.paths.append(path)
    return out


def make_ingest_work(registry: KnowledgeBaseRegistry, kb_name: str, paths: list[Path]) -> _IngestWork:
    """A callable for :meth:`JobRunner.submit` that ingests ``paths`` into ``kb_name`` with per-file progress and
    one note per file that failed."""
    return _IngestWork(registry, kb_name, list(paths))


class _IngestWork:
    def __init__(self, registry: KnowledgeBaseRegistry, kb_name: str, paths: list[Path]) -> None:
        self.registry = registry
        self.kb_name = kb_name
        self.paths = paths

    def __call__(self, job: Job) -> IngestReport:
        job.update(done=0, total=len(self.paths), message="opening the knowledge base")
        from knowledge.ingest import ingest

        kb = self.registry.open(self.kb_name)

        said = {"text": ""}  # a phase's message comes once; keep showing it until the next

        def progress(p: IngestProgress) -> None:
            if p.message or p.phase not in ("scanning", "loading"):
                said["text"] = p.status()
            job.update(done=p.files_done, total=p.files_total or None, message=said["text"])

        report = ingest(kb, self.paths, progress=progress)
        for failed in report.failed:
            job.note(f"{Path(failed.path).name}: {failed.reason}")
        job.update(done=len(self.paths), total=len(self.paths), message=report.summary())
        log.info("upload into %s: %s", self.kb_name, report.summary())
        return report
