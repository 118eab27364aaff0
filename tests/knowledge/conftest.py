"""Helpers for knowledge-layer tests: small files of every kind, built in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.knowledge.hostile import assemble_pdf


def _pdf_bytes(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF with Helvetica text (pypdf cannot write text itself)."""
    text_ops = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({ln}) Tj T*" for ln in lines) + " ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text_ops) + text_ops.encode() + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return assemble_pdf(objects)


@pytest.fixture
def make_pdf():
    """``make_pdf(path, lines, password=None)`` writes a text PDF, encrypted when a password is given."""

    def make(path: Path, lines: list[str], password: str | None = None) -> Path:
        path.write_bytes(_pdf_bytes(lines))
        if password:
            from pypdf import PdfReader, PdfWriter

            writer = PdfWriter(clone_from=PdfReader(str(path)))
            writer.encrypt(user_password=password, owner_password=password + "-owner")
            with open(path, "wb") as fh:
                writer.write(fh)
        return path

    return make


@pytest.fixture
def make_docx():
    """``make_docx(path, title, paragraphs)`` writes a Word file with a heading and paragraphs."""

    def make(path: Path, heading: str, paragraphs: list[str]) -> Path:
        import docx

        document = docx.Document()
        document.add_heading(heading, level=1)
        for p in paragraphs:
            document.add_paragraph(p)
        document.save(str(path))
        return path

    return make
