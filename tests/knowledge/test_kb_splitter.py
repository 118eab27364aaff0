"""Reference tests for the token-budget splitter: round trip, budget, character safety, boundaries."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from knowledge.splitter import TokenSplitter, markdown_sections, reassemble
from knowledge.tokenizer import HFTokenizer, default_tokenizer, load_tokenizer
from knowledge.types import Document
from llm_backend.settings import default_home

# Read at import time, before the autouse fixture points RAGENT_HOME at a temporary folder.
REAL_QWEN_TOKENIZER = default_home() / "models" / "hf" / "qwen2.5-coder-0.5b-instruct" / "tokenizer.json"

ZH = (
    "自然语言处理是人工智能的一个分支。它研究计算机如何理解、解释和生成人类语言！"
    "深度学习的发展让这一领域取得了显著进步？然而，歧义、隐喻和讽刺仍然是挑战；研究人员正在努力……"
)
EN = (
    "Retrieval-augmented generation combines a retriever with a generator. The retriever finds passages; "
    "the generator writes an answer from them. It reduces hallucination, but only when the passages are relevant! "
)
MD = """前言文字。

# 第一章 NLP 基础

{zh}

## 1.1 什么是 NLP

{zh}{en}

```python
# not a heading inside a code fence
print("你好")
```

### 1.1.1 历史

{zh}

# Chapter 2 English

{en}{en}
"""


def _tokenizers() -> list[HFTokenizer]:
    toks = [default_tokenizer()]  # the packaged MiniLM WordPiece tokenizer: always there
    if REAL_QWEN_TOKENIZER.is_file():  # the chat model's byte-level BPE, when converted on this machine
        toks.append(load_tokenizer(str(REAL_QWEN_TOKENIZER)))
    return toks


@pytest.fixture(params=_tokenizers(), ids=lambda t: t.name)
def tokenizer(request: pytest.FixtureRequest) -> HFTokenizer:
    return request.param


@pytest.mark.parametrize("budget,overlap", [(32, 0), (48, 8), (128, 32)])
@pytest.mark.parametrize("kind", ["zh", "en", "mixed", "md", "no-punctuation", "rare-chars"])
def test_round_trip_and_budget(tokenizer: HFTokenizer, kind: str, budget: int, overlap: int) -> None:
    text = {
        "zh": ZH * 6,
        "en": EN * 6,
        "mixed": (ZH + EN) * 4,
        "md": MD.format(zh=ZH * 2, en=EN),
        "no-punctuation": "机器学习" * 200,
        "rare-chars": "𠮷野家🙂龘靐齉爩 " * 40 + ZH,
    }[kind]
    splitter = TokenSplitter(tokenizer, chunk_tokens=budget, overlap_tokens=overlap)
    doc = Document("x.md", text, {"source": "x.md", "format": "md" if kind == "md" else "txt"})
    chunks = splitter.split_document(doc)
    assert len(chunks) > 1
    for c in chunks:
        assert tokenizer.count(c.text) <= budget, c.text
        # exact slice of the text: no character was cut or invented
        assert text[c.meta["start"] : c.meta["end"]] == c.text
    # joined without the overlaps, the chunks give back the text (whitespace-only gaps aside)
    spans = [(c.meta["start"], c.meta["end"]) for c in chunks]
    assert reassemble(spans, text).strip() == text.strip()
    # overlap is bounded in tokens
    for a, b in itertools.pairwise(spans):
        if b[0] < a[1]:
            assert tokenizer.count(text[b[0] : a[1]]) <= overlap + 2


def test_utf8_never_corrupted(tokenizer: HFTokenizer) -> None:
    """TinyRAG's splitter could cut a multi-byte character (book PR #217); ours works on characters."""
    text = "𠮷" * 100 + "。" + "🙂" * 50
    for c in TokenSplitter(tokenizer, chunk_tokens=16, overlap_tokens=4).split_document(Document("e", text, {"source": "e"})):
        c.text.encode("utf-8")  # would raise on a lone surrogate
        assert "\ufffd" not in c.text


def test_sentence_and_heading_boundaries() -> None:
    tok = default_tokenizer()
    text = MD.format(zh=ZH * 2, en=EN)
    chunks = TokenSplitter(tok, chunk_tokens=64, overlap_tokens=0).split_document(Document("b.md", text, {"source": "b.md", "format": "md"}))
    sections = {c.meta["section"] for c in chunks}
    assert "第一章 NLP 基础 > 1.1 什么是 NLP > 1.1.1 历史" in sections
    assert "Chapter 2 English" in sections
    # a heading always starts a chunk, and no chunk spans two sections
    for c in chunks:
        body = c.text.strip()
        for heading in ("\n# 第一章", "\n## 1.1", "\n### 1.1.1", "\n# Chapter 2"):
            assert heading not in body
    # chunk ends fall on sentence ends or line ends far more often than not
    good = sum(1 for c in chunks if c.text.rstrip()[-1:] in "。！？；…!?.\n" or c.text.endswith("\n"))
    assert good >= 0.7 * len(chunks)


def test_code_fence_hash_is_not_a_heading() -> None:
    secs = markdown_sections("# A\n\n```\n# comment\n```\n\n## B\ntext\n")
    assert [s.path for s in secs] == [("A",), ("A", "B")]


def test_ids_are_stable_and_depend_on_content() -> None:
    tok = default_tokenizer()
    splitter = TokenSplitter(tok, chunk_tokens=32, overlap_tokens=4)
    a = splitter.split_document(Document("a", ZH * 3, {"source": "a"}))
    b = splitter.split_document(Document("a", ZH * 3, {"source": "a"}))
    c = splitter.split_document(Document("a", ZH * 3 + "新的一句。", {"source": "a"}))
    assert [x.id for x in a] == [x.id for x in b]
    assert [x.id for x in c] != [x.id for x in a]
    assert len({x.id for x in a}) == len(a)


def test_bad_settings_are_refused() -> None:
    from llm_backend.errors import ConfigError

    with pytest.raises(ConfigError):
        TokenSplitter(default_tokenizer(), chunk_tokens=64, overlap_tokens=40)


def test_qwen_tokenizer_is_preferred_when_present(tmp_path: Path) -> None:
    if not REAL_QWEN_TOKENIZER.is_file():
        pytest.skip("the converted chat model is not on this machine")
    models = tmp_path / "models" / "hf" / "qwen2.5-coder-0.5b-instruct"
    models.mkdir(parents=True)
    (models / "tokenizer.json").write_bytes(REAL_QWEN_TOKENIZER.read_bytes())
    assert default_tokenizer(tmp_path / "models").name == "qwen2.5-coder-0.5b-instruct"
    assert default_tokenizer(tmp_path / "nothing").name == "minilm"
