"""The upload job shows the ingestion's progress: files done of total, and the chunks / rate / time-left status."""

from __future__ import annotations

from pathlib import Path

from apps.ui.jobs import Job
from apps.ui.uploads import make_ingest_work
from knowledge.registry import KnowledgeBaseRegistry


class RecordingJob(Job):
    def update(self, *, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        super().update(done=done, total=total, message=message)
        self.seen.append((self.done, self.total, self.message))


def test_upload_job_reports_files_and_status(tmp_path: Path) -> None:
    registry = KnowledgeBaseRegistry(tmp_path / "home")
    registry.create("up", embedder="hash", chunk_tokens=32, overlap_tokens=4)
    paths = []
    for i in range(3):
        path = tmp_path / f"f{i}.md"
        path.write_text(f"# File {i}\n\n" + "Some words about retrieval. " * 40, encoding="utf-8")
        paths.append(path)
    job = RecordingJob(id="1", kind="ingest", title="Adding 3 files")
    job.seen = []  # type: ignore[attr-defined]
    report = make_ingest_work(registry, "up", paths)(job)
    assert len(report.added) == 3
    seen = job.seen  # type: ignore[attr-defined]
    assert any(m.startswith("scanning ") for _, _, m in seen)
    assert any(total == 3 and "chunks" in m for _, total, m in seen)
    assert all(total == 3 for _, total, _ in seen)  # never "0 of 0" while the files are being scanned
    assert seen[-1][:2] == (3, 3) and "3 added" in seen[-1][2]
