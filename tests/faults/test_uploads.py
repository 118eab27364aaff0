"""The link rule for uploads in the app: a name that is a path is refused, and nothing is written through a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.ui.uploads import save_uploads

pytestmark = pytest.mark.fault


@pytest.mark.parametrize("name", ["/etc/cron.d/evil.md", "../../home/user/.bashrc.md", "..\\..\\evil.md", "C:\\Windows\\evil.md", "a/../../b.md"])
def test_names_that_are_paths_are_refused(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "uploads" / "kb"
    saved = save_uploads([(name, b"# x")], folder)
    assert saved.paths == [] and saved.refused[0].name == name
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # nothing written anywhere


def test_an_upload_is_not_written_through_a_link(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    target = tmp_path / "precious.md"
    target.write_text("keep me")
    os.symlink(target, folder / "notes.md")
    saved = save_uploads([("notes.md", b"# overwritten?")], folder)
    assert saved.paths == [] and "link" in saved.refused[0].reason
    assert target.read_text() == "keep me"
