"""Hostile files, generated on the spot (never committed): zip bombs, huge pdfs, sparse giants, endless lines, deep
html, encrypted pdfs, links leading out of a folder. Used by the fault tests and by ``benchmarks/faults.py``."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

MiB = 1024 * 1024


def pdf_bytes(page_texts: list[str], *, extra_catalog: bytes = b"") -> bytes:
    """A valid pdf with one Helvetica text line per page (pages share nothing but the font)."""
    n = len(page_texts)
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R " + extra_catalog + b" >>"]
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n))
    objects.append(b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n)
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(page_texts):
        ops = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"\nendstream")
    return assemble_pdf(objects)


def assemble_pdf(objects: list[bytes]) -> bytes:
    """A pdf file of ``objects`` (numbered from 1, the first one the catalog) with its cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def write_many_pages_pdf(path: Path, pages: int) -> Path:
    """A pdf of ``pages`` pages, each with a line of text."""
    path.write_bytes(pdf_bytes([f"Page {i} of a very long manual." for i in range(1, pages + 1)]))
    return path


def write_deep_pdf(path: Path, depth: int = 50_000) -> Path:
    """A pdf whose catalog holds an array nested ``depth`` deep (a parser that recurses runs out of stack)."""
    path.write_bytes(pdf_bytes(["A page."], extra_catalog=b"/Deep " + b"[" * depth + b"]" * depth))
    return path


def write_encrypted_pdf(path: Path, user_password: str, text: str = "Encrypted but readable text.") -> Path:
    """A pdf encrypted with ``user_password`` (empty: anyone may open it) and a different owner password."""
    from pypdf import PdfReader, PdfWriter

    path.write_bytes(pdf_bytes([text]))
    writer = PdfWriter(clone_from=PdfReader(str(path)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def write_zip_bomb_docx(path: Path, unpacked_bytes: int) -> Path:
    """A real docx with an extra member of ``unpacked_bytes`` zeros: a few KiB per 10 MiB on disk."""
    import docx

    document = docx.Document()
    document.add_paragraph("An innocent looking report.")
    document.save(str(path))
    block = bytes(MiB)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf, zf.open("word/media/bomb.bin", "w", force_zip64=True) as fh:
        left = unpacked_bytes
        while left > 0:
            fh.write(block[: min(left, MiB)])
            left -= MiB
    return path


def write_sparse(path: Path, size: int) -> Path:
    """A file that claims ``size`` bytes without using the disk (a hole)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def write_long_line(path: Path, chars: int) -> Path:
    """A text file that is one line of ``chars`` characters (words, no newline)."""
    words = "lorem ipsum dolor sit amet "
    path.write_text((words * (chars // len(words) + 1))[:chars], encoding="utf-8")
    return path


def write_deep_html(path: Path, depth: int) -> Path:
    """An html page of ``depth`` nested ``<div>`` s around one word."""
    path.write_text("<html><body>" + "<div>" * depth + "deep" + "</div>" * depth + "</body></html>", encoding="utf-8")
    return path


def make_link_trap(root: Path) -> dict[str, Path]:
    """A folder ``root/folder`` to ingest, with a secret file outside it and links of every kind:
    ``link.txt`` -> the secret (outside), ``etc`` -> the folder holding the secret (outside), ``inside.md`` -> a file
    in the folder, ``sub/loop`` -> the folder itself (a loop), ``broken.md`` -> nothing. Returns the named paths."""
    outside = root / "outside"
    outside.mkdir(parents=True)
    secret = outside / "passwd.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash secret-token-4711\n", encoding="utf-8")
    folder = root / "folder"
    (folder / "sub").mkdir(parents=True)
    good = folder / "notes.md"
    good.write_text("# Notes\n\nChroma stores the vectors; BM25 finds the words.\n", encoding="utf-8")
    os.symlink(secret, folder / "link.txt")
    os.symlink(outside, folder / "etc", target_is_directory=True)
    os.symlink(os.path.relpath(good, folder), folder / "inside.md")
    os.symlink("..", folder / "sub" / "loop", target_is_directory=True)
    os.symlink(folder / "missing.md", folder / "broken.md")
    return {"folder": folder, "secret": secret, "good": good, "outside": outside}
