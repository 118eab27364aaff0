"""The manifest file: what is saved is what ``dataclasses.asdict`` would give, and it loads back equal."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from knowledge.errors import KnowledgeBaseError
from knowledge.manifest import MANIFEST_VERSION, FileRecord, Manifest


def _manifest() -> Manifest:
    files = {f"docs/f{i}.md": FileRecord(f"docs/f{i}.md", f"{i:064x}", 100 + i, [f"c{i}-{j}" for j in range(3)], title=f"F {i}", ingested_at=1.5) for i in range(4)}
    files["docs/f2.md"].complete = False
    return Manifest("kb", "minilm", {"tokenizer": "minilm", "chunk_tokens": 256}, {"kind": "embedded", "path": "store"}, description="d", files=files)


def test_saved_like_asdict_and_loaded_back_equal(tmp_path: Path) -> None:
    m = _manifest()
    assert json.dumps(m.to_dict(), sort_keys=True) == json.dumps(asdict(m), sort_keys=True)
    path = tmp_path / "kb" / "manifest.json"
    m.save(path)
    again = Manifest.load(path)
    assert again == m and again.n_chunks() == 12 and again.chunk_ids() == m.chunk_ids()
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # no temporary file left behind


def test_damaged_or_newer_manifests_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    with pytest.raises(KnowledgeBaseError, match="missing"):
        Manifest.load(path)
    path.write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="not valid JSON.*create it again"):
        Manifest.load(path)
    path.write_text(json.dumps({**_manifest().to_dict(), "version": MANIFEST_VERSION + 1}))
    with pytest.raises(KnowledgeBaseError, match="upgrade ragent"):
        Manifest.load(path)


def test_a_failed_write_is_a_clear_error_and_keeps_the_old_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kb" / "manifest.json"
    m = _manifest()
    m.save(path)
    before = path.read_bytes()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("knowledge.manifest.os.fsync", full)
    m.description = "changed"
    with pytest.raises(KnowledgeBaseError, match=r"No space left on device.*intact.*run the same command again"):
        m.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]  # the temporary file is gone
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(KnowledgeBaseError, match="cannot write the manifest"):
        m.save(blocked / "manifest.json")
