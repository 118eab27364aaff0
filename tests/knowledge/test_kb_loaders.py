"""Loaders, encodings and the bad-file corpus: every good file is ingested, every bad one reported."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from knowledge.ingest import ingest
from knowledge.limits import LoadLimits
from knowledge.loaders import LoadError, decode_text, iter_files, load_file
from knowledge.registry import KnowledgeBaseRegistry

from .hostile import (
    MiB,
    make_link_trap,
    write_deep_html,
    write_deep_pdf,
    write_encrypted_pdf,
    write_long_line,
    write_many_pages_pdf,
    write_sparse,
    write_zip_bomb_docx,
)


def test_encodings_are_detected() -> None:
    text = "机器学习是人工智能的一个分支，研究计算机如何从数据中学习。"
    for enc in ("utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"):
        decoded, _ = decode_text(text.encode(enc))
        assert decoded == text, enc
    latin = "Café crème brûlée, naïve façade - déjà vu.".encode("latin-1")
    decoded, _ = decode_text(latin)
    assert "Caf" in decoded and "\x00" not in decoded


def test_binary_is_refused() -> None:
    with pytest.raises(LoadError, match="binary"):
        decode_text(bytes(range(256)) * 10)


def test_pdf_pages_and_metadata(tmp_path: Path, make_pdf) -> None:
    pdf = make_pdf(tmp_path / "paper one.pdf", ["Attention is all you need.", "Transformers use self-attention."])
    docs = load_file(pdf)
    assert docs[0].meta["page"] == 1 and docs[0].meta["format"] == "pdf"
    assert "self-attention" in docs[0].text


def test_encrypted_pdf_reason(tmp_path: Path, make_pdf) -> None:
    pdf = make_pdf(tmp_path / "secret.pdf", ["Top secret"], password="pw")
    with pytest.raises(LoadError, match="encrypted"):
        load_file(pdf)


def test_docx_headings_become_sections(tmp_path: Path, make_docx) -> None:
    path = make_docx(tmp_path / "报告 2024.docx", "年度总结", ["今年我们完成了知识库。", "明年继续。"])
    docs = load_file(path)
    assert docs[0].meta["title"] == "年度总结"
    assert docs[0].text.lstrip().startswith("# 年度总结")


def test_html_text_title_and_headings(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>RAG 指南</title><script>var x=1;</script></head><body><nav>menu</nav>"
        "<h1>检索增强</h1><p>RAG 先检索再生成。</p><h2>Hybrid</h2><p>BM25 plus dense.</p></body></html>",
        encoding="utf-8",
    )
    doc = load_file(page)[0]
    assert doc.meta["title"] == "RAG 指南"
    assert "# 检索增强" in doc.text and "## Hybrid" in doc.text
    assert "var x" not in doc.text and "menu" not in doc.text


def test_bad_file_corpus(tmp_path: Path, make_pdf, make_docx) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "子目录 with space").mkdir(parents=True)
    good = {
        corpus / "notes.md": "# Notes\n\nChroma stores the vectors. BM25 finds the words.\n",
        corpus / "子目录 with space" / "中文 文件名.md": "# 中文标题\n\n注意力机制让模型关注重要的词。\n",
        corpus / "plain.txt": "A plain text file about retrieval.\n",
    }
    for path, text in good.items():
        path.write_text(text, encoding="utf-8")
    gbk = corpus / "gbk 编码.txt"
    gbk.write_bytes("这是一个用GBK编码保存的中文文件，讲的是分词。".encode("gbk"))
    make_pdf(corpus / "good paper.pdf", ["Retrieval augmented generation paper."])
    make_docx(corpus / "word file.docx", "Word heading", ["Word body text about rerankers."])
    big = corpus / "very large.txt"
    big.write_text(("大文件的一句话，内容重复用来测试很大的文件。" * 40 + "\n\n") * 300, encoding="utf-8")  # ~0.8 MB
    bad = {
        corpus / "empty.md": b"",
        corpus / "corrupt.pdf": b"%PDF-1.4\n this is not really a pdf \x00\x01\x02",
        corpus / "binary.md": bytes(range(256)) * 20,
        corpus / "fake.docx": b"PK\x03\x04 not a zip",
    }
    for path, data in bad.items():
        path.write_bytes(data)
    make_pdf(corpus / "encrypted.pdf", ["secret text"], password="pw")
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n")  # unsupported type inside a folder: ignored, not an error

    kb = KnowledgeBaseRegistry(tmp_path / "home").create("bad", embedder="none")
    report = ingest(kb, [corpus])

    ingested = set(report.added)
    expected_good = {str(p.resolve()) for p in [*good, gbk, corpus / "good paper.pdf", corpus / "word file.docx", big]}
    assert ingested == expected_good
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert set(reasons) == {"empty.md", "corrupt.pdf", "binary.md", "fake.docx", "encrypted.pdf"}
    assert "empty" in reasons["empty.md"]
    assert "pdf" in reasons["corrupt.pdf"]
    assert "binary" in reasons["binary.md"]
    assert "docx" in reasons["fake.docx"]
    assert "encrypted" in reasons["encrypted.pdf"]
    assert [Path(p).name for p in report.ignored] == ["image.png"]
    # the GBK file was decoded, and the big file fully chunked
    hits = kb.bm25_index().search("GBK 分词", 3)
    assert hits and "GBK" in kb.bm25_index().chunks[hits[0][0]].text
    big_rec = kb.manifest.files[str(big.resolve())]
    assert len(big_rec.chunk_ids) > 100


def test_file_over_the_size_limit_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_text("x " * 5000)
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("lim", embedder="none")
    report = ingest(kb, [path], max_bytes=1000)
    assert report.failed and "too large" in report.failed[0].reason


def test_a_file_over_the_size_limit_is_refused_without_being_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import knowledge.ingest as ingest_module

    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("a small note about tokenizers.")
    big.write_text("x " * 5000)
    hashed: list[str] = []
    real = ingest_module.sha256_file
    monkeypatch.setattr(ingest_module, "sha256_file", lambda p, stop=None: hashed.append(Path(p).name) or real(p, stop))
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("lim2", embedder="none")
    report = ingest(kb, [tmp_path], max_bytes=1000)
    assert hashed == ["small.txt"]
    assert [Path(f.path).name for f in report.failed] == ["big.txt"] and "too large" in report.failed[0].reason
    assert [Path(p).name for p in report.added] == ["small.txt"]
    # shrunk under the limit, it is read on the next run
    big.write_text("now a short file about attention.")
    again = ingest(kb, [tmp_path], max_bytes=1000)
    assert [Path(p).name for p in again.added] == ["big.txt"] and not again.failed


# -- the fault suite: nothing outside the folder, bounded work on hostile files ---------------------------------------
@pytest.mark.fault
def test_links_leading_outside_the_folder_are_skipped_and_reported(tmp_path: Path) -> None:
    trap = make_link_trap(tmp_path)
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("links", embedder="none")
    report = ingest(kb, [trap["folder"]])
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert reasons == {
        "link.txt": "skipped: link.txt -> outside the folder",
        "etc": "skipped: etc -> outside the folder",
        "broken.md": "skipped: broken.md -> broken link",
    }
    # the link inside is followed; the file it names is read once (keyed by its real path); the loop ends
    assert report.added == [str(trap["good"].resolve())]
    assert kb.bm25_index().search("secret-token-4711 root", 5) == []
    assert all("secret-token" not in c.text for c in kb.bm25_index().chunks)


@pytest.mark.fault
def test_a_secret_read_through_a_link_before_is_dropped_when_the_folder_is_ingested(tmp_path: Path) -> None:
    trap = make_link_trap(tmp_path)
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("old", embedder="none")
    # as a base built before the rule would hold it (a link named directly is still read as given)
    assert ingest(kb, [trap["folder"] / "link.txt"]).added == [str(trap["secret"].resolve())]
    report = ingest(kb, [trap["folder"]])
    assert report.removed == [str(trap["secret"].resolve())]
    assert kb.bm25_index().search("secret-token-4711", 5) == []


@pytest.mark.fault
def test_iter_files_follows_inside_links_once_and_names_what_it_skips(tmp_path: Path) -> None:
    trap = make_link_trap(tmp_path)
    skipped: list[tuple[str, str]] = []
    found = list(iter_files([trap["folder"]], on_skip=lambda p, why: skipped.append((p.name, why))))
    assert [p.relative_to(trap["folder"]).as_posix() for p, _ in found] == ["inside.md", "notes.md"]
    assert sorted(n for n, _ in skipped) == ["broken.md", "etc", "link.txt"]
    # a file named directly is read as given: the person who typed the path chose it
    assert list(iter_files([trap["folder"] / "link.txt"])) == [(trap["folder"] / "link.txt", True)]


@pytest.mark.fault
def test_hostile_files_each_get_a_limit_and_the_batch_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    # Limits are settings; lowered here so the files stay small (the benchmark runs them at full size).
    monkeypatch.setenv("RAGENT_MAX_UNZIPPED_MB", "8")
    monkeypatch.setenv("RAGENT_MAX_PDF_PAGES", "50")
    write_zip_bomb_docx(folder / "bomb.docx", 40 * MiB)
    write_many_pages_pdf(folder / "manual.pdf", 60)
    write_deep_pdf(folder / "deep.pdf")
    write_sparse(folder / "giant.txt", 1024 * MiB)  # 1 GiB by its size, nothing on disk
    write_long_line(folder / "one line.txt", 10 * MiB)
    write_deep_html(folder / "deep.html", 100_000)
    (folder / "zz good.md").write_text("# Good\n\nThe rest of the batch goes on.\n", encoding="utf-8")
    kb = KnowledgeBaseRegistry(tmp_path / "home").create("hostile", embedder="none")
    report = ingest(kb, [folder])
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert [Path(p).name for p in report.added] == ["zz good.md"]
    assert "zip bomb" in reasons["bomb.docx"] and "RAGENT_MAX_UNZIPPED_MB" in reasons["bomb.docx"]
    assert "60 pages" in reasons["manual.pdf"] and "RAGENT_MAX_PDF_PAGES" in reasons["manual.pdf"]
    assert "pdf" in reasons["deep.pdf"]
    assert "too large" in reasons["giant.txt"] and "1,024.0 MiB" in reasons["giant.txt"]
    assert "RAGENT_MAX_LINE_CHARS" in reasons["one line.txt"]
    assert "RAGENT_MAX_HTML_DEPTH" in reasons["deep.html"]
    assert len(reasons) == 6


@pytest.mark.fault
def test_time_limit_is_checked_between_pages(tmp_path: Path) -> None:
    pdf = write_many_pages_pdf(tmp_path / "slow.pdf", 5)
    with pytest.raises(LoadError, match="took longer than .* RAGENT_LOAD_TIMEOUT"):
        load_file(pdf, limits=LoadLimits(max_seconds=1e-9))
    assert len(load_file(pdf, limits=LoadLimits())) == 5


@pytest.mark.fault
def test_ordinary_sloppy_html_is_not_mistaken_for_a_deep_one(tmp_path: Path) -> None:
    page = tmp_path / "sloppy.html"
    page.write_text("<html><body><ul>" + "<li><p>item <b>bold</b><br>" * 2000 + "</ul></body></html>", encoding="utf-8")
    assert "item" in load_file(page, limits=LoadLimits(max_html_depth=64))[0].text


@pytest.mark.fault
def test_encrypted_pdf_with_an_empty_user_password_opens(tmp_path: Path) -> None:
    open_pdf = write_encrypted_pdf(tmp_path / "restricted.pdf", user_password="")
    assert "Encrypted but readable" in load_file(open_pdf)[0].text
    locked = write_encrypted_pdf(tmp_path / "locked.pdf", user_password="pw")
    with pytest.raises(LoadError) as info:
        load_file(locked)
    assert info.value.reason.startswith("encrypted: ") and "password" in info.value.reason


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.fault
def test_pdf_library_lines_join_the_reason_and_never_reach_the_root_logger(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.pdf"
    bad.write_bytes(b"%PDF-1.4\n this is not really a pdf")
    # (caplog is no use here: pytest 9 attaches its handler to non-propagating loggers too.)
    root = logging.getLogger()
    seen, old_level = _ListHandler(), root.level
    root.addHandler(seen)
    root.setLevel(logging.DEBUG)
    try:
        with pytest.raises(LoadError) as info:
            load_file(bad)
    finally:
        root.removeHandler(seen)
        root.setLevel(old_level)
    assert info.value.reason.count("EOF marker not found") == 1
    assert not [r for r in seen.records if r.name.startswith("pypdf")]
