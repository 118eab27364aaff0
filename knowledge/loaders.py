"""Read files into :class:`~knowledge.types.Document` s: markdown, text, pdf, docx, html.

Every loader keeps ``source`` (the file path), ``title`` and ``format`` in ``meta``; pdf pages add ``page``
(1-based); docx and html headings become markdown headings so the splitter can keep the heading path. Text
encodings are detected (UTF-8 with or without BOM, GBK/GB18030, then whatever ``charset-normalizer`` finds).

A file that cannot be read raises :class:`LoadError` with a reason a person understands ("encrypted pdf", "binary
data, not text", ...); ingestion reports it and goes on with the other files.

Example::

    docs = load_file(Path("报告 2024.pdf"))     # one Document per page
    docs[0].meta                                # {'source': '...', 'title': ..., 'page': 1, 'format': 'pdf'}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from knowledge.types import Document
from llm_backend.errors import RagentError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Files larger than this are refused (a knowledge base is not a place for a 1 GB log file)."""


class LoadError(RagentError):
    """A file could not be turned into text. ``reason`` is short and meant for a report."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot load {self.path}: {reason}")


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


def read_text(path: Path) -> tuple[str, str]:
    """Read and decode a text file."""
    return decode_text(path.read_bytes(), path)


# -- loaders ---------------------------------------------------------------------------------------------------------
def _first_heading(text: str) -> str | None:
    m = re.search(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", text, flags=re.MULTILINE)
    return m.group(1).strip() if m else None


def load_markdown(path: Path) -> list[Document]:
    """A markdown file as one document; its sections are found by the splitter."""
    text, enc = read_text(path)
    title = _first_heading(text) or path.stem
    return [Document(str(path), text, {"source": str(path), "title": title, "format": "md", "encoding": enc})]


def load_text(path: Path) -> list[Document]:
    """A plain text file as one document."""
    text, enc = read_text(path)
    return [Document(str(path), text, {"source": str(path), "title": path.stem, "format": "txt", "encoding": enc})]


def load_pdf(path: Path) -> list[Document]:
    """One document per pdf page that has text. Encrypted pdfs open only without a password."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception as exc:
                raise LoadError(path, f"encrypted pdf that cannot be opened ({exc})") from exc
            if not ok:
                raise LoadError(path, "encrypted pdf (a password is required); decrypt it first, e.g. with `qpdf --decrypt`")
        title = path.stem
        meta_title = getattr(reader.metadata, "title", None) if reader.metadata else None
        if meta_title and str(meta_title).strip():
            title = str(meta_title).strip()
        docs = []
        for i, page in enumerate(reader.pages):
            text = page.extract_text() or ""
            if text.strip():
                docs.append(Document(str(path), text, {"source": str(path), "title": title, "page": i + 1, "format": "pdf"}))
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(path, "encrypted pdf (a password is required)") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, OSError) as exc:
        raise LoadError(path, f"corrupt or unreadable pdf ({type(exc).__name__}: {exc})") from exc
    if not docs:
        raise LoadError(path, "pdf has no extractable text (scanned images need OCR, which is not supported)")
    return docs


def load_docx(path: Path) -> list[Document]:
    """A Word file as one markdown-like document: headings become ``#`` lines, tables become ``|`` rows."""
    try:
        import docx
        from docx.opc.exceptions import PackageNotFoundError
        from docx.table import Table
        from docx.text.paragraph import Paragraph
    except ImportError as exc:  # pragma: no cover - pinned dependency
        from llm_backend.errors import MissingDependencyError

        raise MissingDependencyError("docx", "Reading .docx files", "python-docx") from exc
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


def load_html(path: Path) -> list[Document]:
    """An html page as one markdown-like document: ``<h1>``-``<h6>`` become headings; scripts, styles and
    navigation are dropped."""
    from bs4 import BeautifulSoup

    data = path.read_bytes()
    if looks_binary(data):
        raise LoadError(path, "binary data, not html")
    try:
        soup = BeautifulSoup(data, "lxml")
    except Exception as exc:
        raise LoadError(path, f"unreadable html ({type(exc).__name__}: {exc})") from exc
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
    raw = soup.get_text()
    text = re.sub(r"[ \t]+\n", "\n", raw)
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    if not text.strip():
        raise LoadError(path, "html page has no text")
    title = title or _first_heading(text) or path.stem
    return [Document(str(path), text, {"source": str(path), "title": title, "format": "html"})]


LOADERS: dict[str, Callable[[Path], list[Document]]] = {
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


def load_file(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Document]:
    """Load one file with the loader for its suffix. Raises :class:`LoadError` with the reason when it cannot."""
    path = Path(path)
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
    if size > max_bytes:
        raise LoadError(path, f"file too large ({size / 2**20:.1f} MiB > {max_bytes / 2**20:.0f} MiB limit)")
    try:
        docs = loader(path)
    except LoadError:
        raise
    except RagentError:
        raise
    except (OSError, UnicodeError) as exc:
        raise LoadError(path, f"cannot read file ({type(exc).__name__}: {exc})") from exc
    if not any(d.text.strip() for d in docs):
        raise LoadError(path, "no text in file")
    return docs


def iter_files(paths: Iterable[Path]) -> Iterator[tuple[Path, bool]]:
    """Files under the given paths, sorted, as ``(path, explicit)``: ``explicit`` is True for a path named
    directly (its problems are reported), False for one found in a folder (unsupported types are skipped).
    Hidden files and folders are skipped."""
    for root in paths:
        root = Path(root)
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if p.is_file():
                    yield p, False
        else:
            yield root, True
