"""What an ingestion run did (:class:`IngestReport`), file by file; :func:`knowledge.ingest.ingest` returns it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class FileError:
    """A file that was not ingested, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingestion run did. ``stopped`` is True when the run was asked to stop; ``pending`` then lists the
    files it did not finish (running the same ingestion again does them)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[FileError] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    repaired_orphans: int = 0
    repaired_files: int = 0
    stopped: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed"] = [asdict(f) for f in self.failed]
        return data

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.updated)} updated",
            f"{len(self.removed)} removed",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.failed)} failed",
        ]
        if self.stopped:
            parts.append(f"{len(self.pending)} not done (stopped)")
        text = ", ".join(parts) + f"; {self.chunks_written} chunks written in {self.seconds:.1f} s"
        if self.repaired_orphans or self.repaired_files:
            text += f" (repaired an interrupted run: {self.repaired_orphans} stray chunks, {self.repaired_files} files redone)"
        return text
