"""Bounds on the work one file may cost while it is loaded: size, pdf pages, unpacked size, line length, html
nesting and time. A file over a bound is refused with a reason that names the limit and the setting that raises it;
the rest of the batch goes on.

The bounds are settings (``RAGENT_MAX_FILE_MB``, ``RAGENT_MAX_PDF_PAGES``, ``RAGENT_MAX_UNZIPPED_MB``,
``RAGENT_MAX_LINE_CHARS``, ``RAGENT_MAX_HTML_DEPTH``, ``RAGENT_LOAD_TIMEOUT`` or the same names in lower case in the
config file). The time limit is checked between the steps of a load (pdf pages, docx paragraphs, html stages): a
single step is bounded by the other limits, not interrupted.

Example::

    limits = current_limits()                   # from the settings in effect, cached
    guard = FileGuard(Path("big.pdf"), limits)
    guard.check_time()                          # raises LoadError once the file has taken longer than allowed
"""

from __future__ import annotations

import os
import re
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llm_backend.errors import RagentError

if TYPE_CHECKING:
    from llm_backend.settings import Settings

MiB = 1024 * 1024


class LoadError(RagentError):
    """A file could not be turned into text. ``reason`` is short and meant for a report."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load {self.path}: {reason}")


@dataclass(frozen=True)
class LoadLimits:
    """The bounds one file is loaded under. The defaults leave room for real documents (a 2,000-page manual, a
    64 MiB text file) and refuse what is built to hurt (zip bombs, 10 MB lines, html nested 100,000 deep)."""

    max_bytes: int = 64 * MiB
    max_pdf_pages: int = 2000
    max_unzipped_bytes: int = 256 * MiB
    max_line_chars: int = 1_000_000
    max_html_depth: int = 512
    max_seconds: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadLimits:
        """The limits from a :class:`~llm_backend.settings.Settings` object."""
        return cls(
            max_bytes=int(settings.max_file_mb * MiB),
            max_pdf_pages=int(settings.max_pdf_pages),
            max_unzipped_bytes=int(settings.max_unzipped_mb * MiB),
            max_line_chars=int(settings.max_line_chars),
            max_html_depth=int(settings.max_html_depth),
            max_seconds=float(settings.load_timeout),
        )


_ENV = ("RAGENT_MAX_FILE_MB", "RAGENT_MAX_PDF_PAGES", "RAGENT_MAX_UNZIPPED_MB", "RAGENT_MAX_LINE_CHARS",
        "RAGENT_MAX_HTML_DEPTH", "RAGENT_LOAD_TIMEOUT", "RAGENT_CONFIG", "RAGENT_HOME")
_cache: dict[tuple[object, ...], LoadLimits] = {}
_cache_lock = threading.Lock()


def current_limits() -> LoadLimits:
    """The limits from the settings in effect (environment and config file), cached until either changes."""
    from llm_backend.settings import Settings, config_file

    path = config_file()
    stamp = path.stat().st_mtime_ns if path is not None else None
    key = (tuple(os.environ.get(name) for name in _ENV), str(path), stamp)
    with _cache_lock:
        if key not in _cache:
            _cache.clear()
            _cache[key] = LoadLimits.from_settings(Settings.load())
        return _cache[key]


class FileGuard:
    """The limits applied to one file, with the clock started when the file's load began."""

    def __init__(self, path: Path, limits: LoadLimits) -> None:
        self.path = path
        self.limits = limits
        self.started = time.monotonic()

    def check_time(self) -> None:
        """Raise :class:`LoadError` when the file has taken longer than ``max_seconds``."""
        spent = time.monotonic() - self.started
        if spent > self.limits.max_seconds:
            raise LoadError(
                self.path, f"took longer than {self.limits.max_seconds:g} s to read (limit RAGENT_LOAD_TIMEOUT); skipped"
            )

    def check_pages(self, pages: int) -> None:
        """Raise when a pdf has more pages than ``max_pdf_pages``."""
        if pages > self.limits.max_pdf_pages:
            raise LoadError(
                self.path, f"pdf has {pages} pages, more than the limit of {self.limits.max_pdf_pages} (RAGENT_MAX_PDF_PAGES)"
            )

    def check_zip(self, kind: str = "docx") -> None:
        """Refuse a zip container (docx) that would unpack to more than ``max_unzipped_bytes``: a zip bomb.

        The sizes come from the zip's directory; :mod:`zipfile` never reads past a member's declared size (a member
        that lies fails its CRC check), so the declared total bounds what unpacking can cost."""
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise LoadError(self.path, f"corrupt or unreadable {kind} ({type(exc).__name__}: {exc})") from exc
        total = sum(i.file_size for i in infos)
        if total > self.limits.max_unzipped_bytes:
            packed = max(1, sum(i.compress_size for i in infos))
            raise LoadError(
                self.path,
                f"unpacks to {total / MiB:,.0f} MiB from {packed / MiB:,.1f} MiB (ratio {total / packed:,.0f}:1), more than "
                f"the limit of {self.limits.max_unzipped_bytes / MiB:g} MiB (RAGENT_MAX_UNZIPPED_MB): a zip bomb?",
            )

    def check_lines(self, text: str) -> None:
        """Refuse text with a line longer than ``max_line_chars`` (minified data or a dump, not prose)."""
        limit = self.limits.max_line_chars
        if len(text) <= limit or max(map(len, text.split("\n"))) <= limit:
            return
        raise LoadError(
            self.path,
            f"has a line of more than {limit:,} characters (limit RAGENT_MAX_LINE_CHARS): minified data or a dump, "
            "not text to search; split it into lines or raise the limit",
        )

    def check_html_depth(self, data: bytes) -> None:
        """Refuse html nested deeper than ``max_html_depth`` before parsing it (parsing and flattening a tree
        100,000 levels deep takes minutes). Tags that close themselves implicitly (p, li, td, ...) and void
        elements (br, img, ...) do not count, so sloppy but ordinary pages are not refused."""
        limit = self.limits.max_html_depth
        depth = deepest = 0
        for m in _TAG.finditer(data):
            name = m.group(2).lower()
            if name in _NO_DEPTH or m.group(3):
                continue
            if m.group(1):
                depth = max(0, depth - 1)
            else:
                depth += 1
                if depth > deepest:
                    deepest = depth
                    if deepest > limit:
                        raise LoadError(
                            self.path,
                            f"html is nested more than {limit} tags deep (limit RAGENT_MAX_HTML_DEPTH); not a page to read",
                        )


_TAG = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
_VOID = (b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta", b"param", b"source", b"track", b"wbr")
_IMPLICITLY_CLOSED = (b"p", b"li", b"dt", b"dd", b"td", b"th", b"tr", b"tbody", b"thead", b"tfoot", b"option", b"optgroup", b"colgroup", b"caption", b"rt", b"rp")
_NO_DEPTH = frozenset(_VOID + _IMPLICITLY_CLOSED)
