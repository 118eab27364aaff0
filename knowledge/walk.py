"""Which files a folder holds, for ingestion: nothing outside the folder gets in.

The rule, for a folder given to ``ragent kb ingest`` (or the app):

- a **symbolic link** (to a file or a folder) whose target resolves *outside* the folder is skipped and reported
  (``skipped: link.txt -> outside the folder``): anyone who can drop a link into a shared or unpacked folder must not
  be able to read ``/etc/passwd`` through search;
- a symbolic link whose target is *inside* the folder is followed, and every real folder is walked once, so links
  that form a loop end (a file reached under two names is read once: ingestion keys files by their real path);
- a link that points nowhere is reported as a broken link;
- **hard links** are ordinary files: a hard link has no "target", it *is* the file, and nothing tells it apart from
  the other names of the same file. The kernel's ``fs.protected_hardlinks`` (on by default on Linux) stops a user
  from hard-linking a file they do not own and cannot write, so this does not open a way around the link rule;
- **mount points** inside the folder are followed: mounting needs administrator rights, so a mount inside the folder
  is something its owner made part of it (a data disk, a network share), not a way for a writer of the folder to
  escape it;
- hidden files and folders (names starting with ``.``) are skipped.

A file or folder named directly (not found in a folder) is read as given, links included: the person who typed the
path chose it.

Example::

    skipped = []
    for path, explicit in iter_files([Path("docs")], on_skip=lambda p, why: skipped.append((p, why))):
        ...
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SkipCallback = Callable[[Path, str], None]
"""``on_skip(path, reason)`` for a path found in a folder and not read (a link leading outside, a broken link)."""


def _inside(target: Path, root: Path) -> bool:
    return target == root or target.is_relative_to(root)


def iter_files(paths: Iterable[Path | str], *, on_skip: SkipCallback | None = None) -> Iterator[tuple[Path, bool]]:
    """Files under the given paths as ``(path, explicit)``: ``explicit`` is True for a path named directly (its
    problems are reported), False for one found in a folder (unsupported types are skipped). Files of a folder come
    sorted by path. Links leading outside their folder and broken links are passed to ``on_skip`` (logged at
    warning level when there is no callback) and not yielded. See the module docstring for the whole rule."""

    def skip(path: Path, reason: str) -> None:
        if on_skip is not None:
            on_skip(path, reason)
        else:
            log.warning("%s: %s", path, reason)

    for given in paths:
        given = Path(given)
        if given.is_dir():
            yield from ((p, False) for p in sorted(_walk(given, skip)))
        else:
            yield given, True


def _walk(root: Path, skip: Callable[[Path, str], None]) -> Iterator[Path]:
    real_root = root.resolve()
    seen_dirs = {real_root}
    stack: list[tuple[Path, Path]] = [(root, real_root)]  # (path as the user sees it, its real path)
    while stack:
        folder, _ = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            skip(folder, f"skipped: cannot list folder ({exc.strerror or exc})")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            if entry.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (OSError, RuntimeError):  # RuntimeError: a link loop on older Pythons
                    skip(path, f"skipped: {entry.name} -> broken link")
                    continue
                if not _inside(target, real_root):
                    skip(path, f"skipped: {entry.name} -> outside the folder")
                    continue
                if target.is_dir():
                    if target not in seen_dirs:
                        seen_dirs.add(target)
                        stack.append((path, target))
                elif target.is_file():
                    yield path
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    real = Path(entry.path).resolve()
                    if real not in seen_dirs:
                        seen_dirs.add(real)
                        stack.append((path, real))
                elif entry.is_file(follow_symlinks=False):
                    yield path
            except OSError as exc:
                skip(path, f"skipped: cannot read ({exc.strerror or exc})")
