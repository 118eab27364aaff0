"""``read_file`` and ``list_files``: read-only access to one allowed folder, with no way out of it (``..``,
absolute paths and symbolic links that point outside are refused)."""

from __future__ import annotations

from pathlib import Path

from core.tools.base import Tool, ToolError


def resolve_inside(root: Path, path: str) -> Path:
    """``root / path`` with every link resolved, or :class:`ToolError` when the result is outside ``root``."""
    base = root.resolve()
    target = (base / path).resolve()
    if target != base and not target.is_relative_to(base):
        raise ToolError(f"{path!r} is outside the allowed folder; use paths relative to it (see list_files)")
    return target


def make_file_tools(root: str | Path, *, max_chars: int = 20_000) -> list[Tool]:
    """``read_file(path, start_line, max_lines)`` and ``list_files(folder)`` restricted to ``root``."""
    base = Path(root).expanduser()
    if not base.is_dir():
        from llm_backend.errors import ConfigError

        raise ConfigError(f"the folder for the file tools does not exist: {base}. Pass an existing folder with --files.")

    def read_file(path: str, start_line: int = 1, max_lines: int = 200) -> str:
        """Read a text file from the allowed folder.

        Args:
            path: the file's path relative to the allowed folder.
            start_line: the first line to return (1-based).
            max_lines: how many lines to return at most.
        """
        target = resolve_inside(base, path)
        if not target.is_file():
            raise ToolError(f"no file {path!r} in the allowed folder; call list_files to see what is there")
        with target.open(encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
        first = max(start_line, 1) - 1
        chunk = lines[first : first + max(max_lines, 1)]
        text = "\n".join(chunk)[:max_chars]
        more = len(lines) - first - len(chunk)
        return text + (f"\n[... {more} more lines; call again with start_line={first + len(chunk) + 1}]" if more > 0 else "")

    def list_files(folder: str = ".") -> str:
        """List the files and folders in a folder of the allowed folder.

        Args:
            folder: a folder relative to the allowed folder ("." for its top).
        """
        target = resolve_inside(base, folder)
        if not target.is_dir():
            raise ToolError(f"no folder {folder!r} in the allowed folder")
        entries = sorted(target.iterdir(), key=lambda p: (not p.is_dir(), p.name))
        shown = [f"{p.relative_to(base.resolve())}{'/' if p.is_dir() else ''}" for p in entries[:500]]
        return "\n".join(shown) if shown else "(empty folder)"

    return [Tool.from_function(read_file), Tool.from_function(list_files)]
