"""Read files into :class:`~knowledge.types.Document` s: markdown, text, pdf, docx, html.

Every loader keeps ``source`` (the file path), ``title`` and ``format`` in ``meta``; pdf pages add ``page``
(1-based); docx and html headings become markdown headings so the splitter can keep the heading path. Text
encodings are detected (UTF-8 with or without BOM, GBK/GB18030, then whatever ``charset-normalizer`` finds).

A file that cannot be read raises :class:`LoadError` with a reason a person understands ("encrypted: ...", "binary
data, not text", ...); ingestion reports it and goes on with the other files. Every file is read under
:class:`~knowledge.limits.LoadLimits` (size, pdf pages, unpacked size, line length, html depth, time: settings), and
what the pdf library logs about a file is folded into that file's reason or logged once at debug level under this
module's name, never printed raw beside it. Which files a folder holds is :func:`knowledge.walk.iter_files`.

Example::

    docs = load_file(Path("报告 2024.pdf"))     # one Document per page
    docs[0].meta                                # {'source': '...', 'title': ..., 'page': 1, 'format': 'pdf'}
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from knowledge.limits import FileGuard, LoadError, LoadLimits, current_limits
from knowledge.types import Document
from knowledge.walk import iter_files
from llm_backend.errors import RagentError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_BYTES", "LOADERS", "LoadError", "decode_text", "is_supported", "iter_files", "load_file", "looks_binary"]

DEFAULT_MAX_BYTES = LoadLimits.max_bytes
"""The default size limit (``RAGENT_MAX_FILE_MB``): a knowledge base is not a place for a 1 GB log file."""


# -- what libraries log while a file is read ---------------------------------------------------------------------------
class _LibraryLog(logging.Handler):
    """Takes the records of a library logger (pypdf) instead of the root logger: while this thread loads a file they
    are collected for that file's reason; at any other time they are passed on at debug level under our name."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        caught: list[str] | None = getattr(self.local, "caught", None)
        message = record.getMessage()
        if caught is not None:
            if message not in caught:
                caught.append(message)
        else:
            log.debug("%s: %s", record.name, message)


_LIBRARY_LOG = _LibraryLog()
for _name in ("pypdf",):
    _logger = logging.getLogger(_name)
    _logger.addHandler(_LIBRARY_LOG)
    _logger.propagate = False
    _logger.setLevel(logging.WARNING)  # its warnings always reach the handler; our level decides what shows


@contextmanager
def _catching_library_logs(path: Path) -> Iterator[list[str]]:
    caught: list[str] = []
    _LIBRARY_LOG.local.caught = caught
    try:
        yield caught
    except LoadError as exc:
        # The file's reason says it once: what the library logged joins the reason instead of a raw log line.
        extra = [m for m in caught if m not in exc.reason]
        if extra:
            exc.reason = f"{exc.reason}; pypdf: {'; '.join(extra[:3])}"
            exc.args = (f"cannot load {exc.path}: {exc.reason}",)
        raise
    else:
        for message in caught:
            log.debug("%s: pypdf: %s", path, message)
    finally:
        _LIBRARY_LOG.local.caught = None


# -- text decoding ---------------------------------------------------------------------------------------------------
def _cjk_ratio(text: str) -> float:
    non_ascii = [c for c in text if ord(c) > 127]
    if not non_ascii:
        return 1.0
    cjk = sum(1 for c in non_ascii if "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef")
    return cjk / len(non_ascii)


def looks_binary(data: bytes) -> bool:
    """True for data that is clearly not text: NUL bytes or many control characters in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        # UTF-16 text has NULs too, but it starts with a BOM.
        return not head.startswith((b"\xff\xfe", b"\xfe\xff"))
    if not head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls / len(head) > 0.05


def decode_text(data: bytes, path: Path | str = "<bytes>") -> tuple[str, str]:
    """Decode bytes to text, returning ``(text, encoding)``. Raises :class:`LoadError` for binary data."""
    if looks_binary(data):
        raise LoadError(path, "binary data, not text (is the file extension right?)")
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(enc), enc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Chinese files that are not UTF-8 are almost always GBK; GB18030 is its superset. Accept it only when the
    # non-ASCII characters it yields are mostly CJK, so Latin-1 text is not mistaken for Chinese.
    try:
        text = data.decode("gb18030")
        if _cjk_ratio(text) >= 0.9:
            return text, "gb18030"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or best.encoding is None:
        raise LoadError(path, "unknown text encoding (not UTF-8 or GBK, and charset detection failed)")
    return str(best), best.encoding


def read_text(path: Path, guard: FileGuard | None = None) -> tuple[str, str]:
    """Read and decode a text file; with a ``guard``, refuse lines over its ``max_line_chars``."""
    text, enc = decode_text(path.read_bytes(), path)
    if guard is not None:
        guard.check_lines(text)
    return text, enc


# -- loaders ---------------------------------------------------------------------------------------------------------
def _first_heading(text: str) -> str | None:
    m = re.search(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", text, flags=re.MULTILINE)
    return m.group(1).strip() if m else None


def load_markdown(path: Path, guard: FileGuard) -> list[Document]:
    """A markdown file as one document; its sections are found by the splitter."""
    text, enc = read_text(path, guard)
    title = _first_heading(text) or path.stem
    return [Document(str(path), text, {"source": str(path), "title": title, "format": "md", "encoding": enc})]


def load_text(path: Path, guard: FileGuard) -> list[Document]:
    """A plain text file as one document."""
    text, enc = read_text(path, guard)
    return [Document(str(path), text, {"source": str(path), "title": path.stem, "format": "txt", "encoding": enc})]


def load_pdf(path: Path, guard: FileGuard) -> list[Document]:
    """One document per pdf page that has text. An encrypted pdf opens when its user password is empty (it only
    restricts printing or copying); else it is refused as ``encrypted: ...``."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PdfStreamError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (DependencyError, NotImplementedError) as exc:
                raise LoadError(path, f"encrypted: cannot decrypt this pdf ({exc})") from exc
            if not ok:
                raise LoadError(path, "encrypted: a password is required to open this pdf; decrypt it first, e.g. `qpdf --decrypt --password=... in.pdf out.pdf`")
        trailer: Any = reader.trailer
        declared = trailer["/Root"]["/Pages"].get("/Count", 0)
        guard.check_pages(int(declared) if isinstance(declared, int) else 0)  # cheap: before walking the page tree
        pages = reader.pages
        guard.check_pages(len(pages))
        title = path.stem
        meta_title = getattr(reader.metadata, "title", None) if reader.metadata else None
        if meta_title and str(meta_title).strip():
            title = str(meta_title).strip()
        docs = []
        for i, page in enumerate(pages):
            guard.check_time()
            text = page.extract_text() or ""
            if text.strip():
                docs.append(Document(str(path), text, {"source": str(path), "title": title, "page": i + 1, "format": "pdf"}))
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(path, "encrypted: a password is required to open this pdf") from exc
    except RecursionError as exc:
        raise LoadError(path, "pdf object tree nested too deeply to read") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise LoadError(path, f"corrupt or unreadable pdf ({type(exc).__name__}: {exc})") from exc
    if not docs:
        raise LoadError(path, "pdf has no extractable text (scanned images need OCR, which is not supported)")
    return docs


def load_docx(path: Path, guard: FileGuard) -> list[Document]:
    """A Word file as one markdown-like document: headings become ``#`` lines, tables become ``|`` rows. A file
    that would unpack to more than the limit (a zip bomb) is refused before it is unpacked."""
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError as exc:  # pragma: no cover - pinned dependency
        from llm_backend.errors import MissingDependencyError

        raise MissingDependencyError("docx", "Reading .docx files", "python-docx") from exc
    guard.check_zip()
    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise LoadError(path, f"corrupt or unreadable docx ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # zipfile.BadZipFile, lxml errors
        raise LoadError(path, f"corrupt or unreadable docx ({type(exc).__name__}: {exc})") from exc
    lines: list[str] = []
    first_heading: str | None = None
    body = document.element.body
    for child in body.iterchildren():
        guard.check_time()
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            text = para.text.strip()
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            m = re.match(r"(?:Heading|标题)\s*(\d)", style)
            if style == "Title" or m:
                level = int(m.group(1)) if m else 1
                lines.append(f"\n{'#' * min(level, 6)} {text}\n")
                first_heading = first_heading or text
            else:
                lines.append(text + "\n")
        elif tag == "tbl":
            table = Table(child, document)
            for row in table.rows:
                lines.append("| " + " | ".join(cell.text.strip() for cell in row.cells) + " |\n")
            lines.append("\n")
    text = "\n".join(lines).strip() + "\n"
    if not text.strip():
        raise LoadError(path, "docx has no text")
    title = (document.core_properties.title or "").strip() or first_heading or path.stem
    return [Document(str(path), text, {"source": str(path), "title": title, "format": "docx"})]


def load_html(path: Path, guard: FileGuard) -> list[Document]:
    """An html page as one markdown-like document: ``<h1>``-``<h6>`` become headings; scripts, styles and
    navigation are dropped. Pages nested deeper than the limit are refused before parsing."""
    from bs4 import BeautifulSoup

    data = path.read_bytes()
    if looks_binary(data):
        raise LoadError(path, "binary data, not html")
    guard.check_html_depth(data)
    try:
        soup = BeautifulSoup(data, "lxml")
    except Exception as exc:
        raise LoadError(path, f"unreadable html ({type(exc).__name__}: {exc})") from exc
    guard.check_time()
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "template", "svg"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(["p", "div", "li", "tr", "pre", "blockquote", "section", "article", "table"]):
        block.insert_after("\n")
    guard.check_time()
    raw = soup.get_text()
    text = re.sub(r"[ \t]+\n", "\n", raw)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    if not text.strip():
        raise LoadError(path, "html page has no text")
    title = title or _first_heading(text) or path.stem
    return [Document(str(path), text, {"source": str(path), "title": title, "format": "html"})]


LOADERS: dict[str, Callable[[Path, FileGuard], list[Document]]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".txt": load_text,
    ".text": load_text,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".html": load_html,
    ".htm": load_html,
}
"""File suffix -> loader."""


def is_supported(path: Path) -> bool:
    """True when a loader exists for the file's suffix."""
    return path.suffix.lower() in LOADERS


def load_file(path: Path, *, max_bytes: int | None = None, limits: LoadLimits | None = None) -> list[Document]:
    """Load one file with the loader for its suffix, under ``limits`` (default: the settings in effect;
    ``max_bytes`` overrides their size limit). Raises :class:`LoadError` with the reason when it cannot."""
    path = Path(path)
    limits = limits or current_limits()
    if max_bytes is not None:
        limits = dataclasses.replace(limits, max_bytes=max_bytes)
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(path, f"unsupported file type {path.suffix or '(none)'!r}; supported: {', '.join(sorted(LOADERS))}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if not path.is_file():
        raise LoadError(path, "not a regular file")
    if size == 0:
        raise LoadError(path, "empty file")
    if size > limits.max_bytes:
        raise LoadError(
            path, f"file too large ({size / 2**20:,.1f} MiB, more than the limit of {limits.max_bytes / 2**20:g} MiB: RAGENT_MAX_FILE_MB)"
        )
    guard = FileGuard(path, limits)
    with _catching_library_logs(path):
        try:
            docs = loader(path, guard)
        except RagentError:  # LoadError and a missing optional dependency
            raise
        except RecursionError as exc:
            raise LoadError(path, "nested too deeply to read") from exc
        except MemoryError as exc:
            raise LoadError(path, "needs more memory than is free to read") from exc
        except (OSError, UnicodeError) as exc:
            raise LoadError(path, f"cannot read file ({type(exc).__name__}: {exc})") from exc
        guard.check_time()
    if not any(d.text.strip() for d in docs):
        raise LoadError(path, "no text in file")
    return docs
