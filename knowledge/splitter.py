"""Split documents into chunks that fit a token budget, in Chinese and in English.

TinyRAG's splitter (book chapter 7.2) counts tokens approximately, overshoots the budget on Chinese text and can
cut a multi-byte character in half. This one:

- counts tokens with a real tokenizer (:mod:`knowledge.tokenizer`) and re-checks every chunk, so the budget is never
  exceeded;
- cuts only at character positions that are token boundaries, never inside a character (a byte-level BPE can split
  one rare character into several tokens; those positions are not cut points);
- prefers strong boundaries: a markdown heading always starts a new chunk, then blank lines, then line ends and
  sentence ends (``。！？；…`` and ``. ! ?``), then clause marks (``，、：,;:``) and spaces, then any token boundary;
- keeps the heading path (``第二章 > 2.1 注意力机制``) in ``meta["section"]`` as context;
- overlaps consecutive chunks by at most ``overlap_tokens`` tokens, starting the overlap at the strongest boundary
  it can.

Chunk texts are exact slices of the document text (``meta["start"]``, ``meta["end"]``), so the chunks of a document
joined without their overlaps give back the document text.

Example::

    splitter = TokenSplitter(default_tokenizer(), chunk_tokens=256, overlap_tokens=32)
    chunks = splitter.split_documents(load_file(Path("notes.md")))
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from knowledge.tokenizer import TokenCounter
from knowledge.types import Chunk, Document
from llm_backend.errors import ConfigError

# Markdown ATX headings: up to three spaces, 1-6 '#', a space, the title.
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")

_SENTENCE_END = set("。！？；…!?;")
_CLOSERS = set("”’」』）)]》\"'")
_CLAUSE = set("，、：,:")

EDGE_SLACK = 8
"""Chunks whose whole-text token count is this far under the budget are not re-counted on their own."""

HEADING_FORMATS = frozenset({"md", "docx", "html"})
"""Document formats whose text uses markdown headings (loaders turn docx and html headings into them)."""


@dataclass(frozen=True)
class Section:
    """A span of a document under one heading path."""

    start: int
    end: int
    path: tuple[str, ...]


def markdown_sections(text: str) -> list[Section]:
    """Split markdown text at ATX headings outside code fences. Each section starts at its heading line; text
    before the first heading is a section with an empty path. Whitespace-only sections are merged into the next."""
    starts: list[tuple[int, tuple[str, ...]]] = [(0, ())]
    stack: list[tuple[int, str]] = []
    in_fence = False
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        if _FENCE.match(stripped):
            in_fence = not in_fence
        elif not in_fence:
            m = _HEADING.match(stripped)
            if m:
                level, title = len(m.group(1)), m.group(2).strip()
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, title))
                starts.append((pos, tuple(t for _, t in stack)))
        pos += len(line)
    sections: list[Section] = []
    for i, (start, path) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        if end > start:
            sections.append(Section(start, end, path))
    # Merge whitespace-only sections (e.g. blank lines before the first heading) into the following one.
    merged: list[Section] = []
    carry: int | None = None
    for sec in sections:
        if not text[sec.start : sec.end].strip():
            carry = sec.start if carry is None else carry
            continue
        merged.append(Section(carry if carry is not None else sec.start, sec.end, sec.path))
        carry = None
    if carry is not None:
        if merged:
            last = merged[-1]
            merged[-1] = Section(last.start, len(text), last.path)
        else:
            merged.append(Section(carry, len(text), ()))
    return merged


def _boundary_level(text: str, pos: int) -> int:
    """How good a cut is just before ``text[pos]``: 3 paragraph, 2 line/sentence end, 1 clause or space, 0 other."""
    if pos <= 0 or pos >= len(text):
        return 3
    prev = text[pos - 1]
    if prev == "\n":
        if text[pos] == "\n" or (pos >= 2 and text[pos - 2] == "\n") or (pos >= 3 and text[pos - 3 : pos - 1] == "\n\r"):
            return 3
        return 2
    # Skip closing quotes/brackets: '。”' ends a sentence too.
    i = pos - 1
    while i > 0 and text[i] in _CLOSERS:
        i -= 1
    ch = text[i]
    if ch in _SENTENCE_END:
        return 2
    if ch == "." and (text[pos].isspace() or "\u4e00" <= text[pos] <= "\u9fff"):
        return 2
    if ch in _CLAUSE or prev.isspace() or text[pos].isspace():
        return 1
    return 0


class _Levels:
    """``levels[i]`` is :func:`_boundary_level` of cut point ``i``, computed on first use."""

    def __init__(self, text: str, points: list[int]) -> None:
        self.text = text
        self.points = points
        self.cache: dict[int, int] = {}

    def __getitem__(self, i: int) -> int:
        level = self.cache.get(i)
        if level is None:
            level = self.cache[i] = _boundary_level(self.text, self.points[i])
        return level


def chunk_id(source: str, index: int, text: str) -> str:
    """Stable chunk id from the source, the chunk's position in it and its content."""
    return hashlib.sha1(f"{source}\x00{index}\x00{text}".encode()).hexdigest()[:24]


class TokenSplitter:
    """Token-budget splitter; see the module docstring. ``min_fill`` (0-1) is how full a chunk must be before
    the splitter may stop early at a stronger boundary."""

    def __init__(self, tokenizer: TokenCounter, *, chunk_tokens: int = 256, overlap_tokens: int = 32, min_fill: float = 0.6) -> None:
        if chunk_tokens < 16:
            raise ConfigError(f"chunk_tokens must be at least 16, got {chunk_tokens}")
        if not 0 <= overlap_tokens <= chunk_tokens // 2:
            raise ConfigError(f"overlap_tokens must be between 0 and chunk_tokens/2 ({chunk_tokens // 2}), got {overlap_tokens}")
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.min_fill = min_fill

    def settings(self) -> dict[str, object]:
        """What to record in a manifest: the same settings and tokenizer give the same chunks."""
        return {"tokenizer": self.tokenizer.name, "chunk_tokens": self.chunk_tokens, "overlap_tokens": self.overlap_tokens}

    # -- spans ----------------------------------------------------------------------------------------------------
    def _cut_points(self, text: str) -> tuple[list[int], list[int]]:
        """Safe cut positions in ``text`` (0 and len included) and, for each, the number of tokens before it."""
        offsets = self.tokenizer.offsets(text)
        points = [0]
        counts = [0]
        furthest = 0
        for i, (start, end) in enumerate(offsets):
            # A token that starts where an earlier one has not ended belongs to the same character: no cut there.
            if i > 0 and start >= furthest and start > points[-1]:
                points.append(start)
                counts.append(i)
            furthest = max(furthest, end)
        if points[-1] != len(text):
            points.append(len(text))
            counts.append(len(offsets))
        return points, counts

    def split_spans(self, text: str) -> list[tuple[int, int]]:
        """``(start, end)`` spans of the chunks of one heading-free piece of text."""
        if not text:
            return []
        budget, overlap = self.chunk_tokens, self.overlap_tokens
        points, counts = self._cut_points(text)
        levels = _Levels(text, points)  # computed on demand: most cut points are never looked at
        spans: list[tuple[int, int]] = []
        s = 0  # index into points
        last = len(points) - 1
        while s < last:
            # Furthest point within budget by the whole-text token count.
            limit = bisect.bisect_right(counts, counts[s] + budget) - 1
            limit = max(limit, s + 1)
            # From the start, the whole-text count is exact (same encoding); later, BPE may merge differently.
            if limit >= last and (s == 0 or self.tokenizer.count(text[points[s] :]) <= budget):
                spans.append((points[s], points[last]))
                break
            limit = min(limit, last)
            e = self._best_end(s, limit, counts, levels, budget)
            # Re-check with a real count when close to the budget: BPE merges at the edges of a slice can differ
            # from the whole-text count by a token or two (never by EDGE_SLACK).
            if counts[e] - counts[s] > budget - EDGE_SLACK:
                while e > s + 1 and self.tokenizer.count(text[points[s] : points[e]]) > budget:
                    e -= 1
            spans.append((points[s], points[e]))
            if e >= last:
                break
            s = self._overlap_start(s, e, counts, levels, overlap)
        return spans

    def _best_end(self, s: int, limit: int, counts: list[int], levels: _Levels, budget: int) -> int:
        floor = counts[s] + int(budget * self.min_fill)
        best, best_level = limit, levels[limit]
        for i in range(limit - 1, s, -1):
            if counts[i] < floor:
                break
            if levels[i] > best_level:
                best, best_level = i, levels[i]
                if best_level >= 3:
                    break
        return best

    def _overlap_start(self, s: int, e: int, counts: list[int], levels: _Levels, overlap: int) -> int:
        if overlap <= 0:
            return e
        best, best_level = e, -1
        for i in range(e - 1, s, -1):
            if counts[e] - counts[i] > overlap:
                break
            if levels[i] >= best_level:  # ties go to the earlier point: more overlap
                best, best_level = i, levels[i]
        return best

    # -- documents ------------------------------------------------------------------------------------------------
    def split_document(self, doc: Document, *, start_index: int = 0) -> list[Chunk]:
        """Chunks of one document, numbered from ``start_index`` (ids depend on the number)."""
        text = doc.text
        heading_aware = doc.meta.get("format") in HEADING_FORMATS
        sections = markdown_sections(text) if heading_aware else [Section(0, len(text), ())]
        base_path = tuple(p for p in str(doc.meta.get("section") or "").split(" > ") if p)
        source = str(doc.meta.get("source") or doc.path)
        chunks: list[Chunk] = []
        index = start_index
        for sec in sections:
            piece = text[sec.start : sec.end]
            path = base_path + sec.path
            for a, b in self.split_spans(piece):
                body = piece[a:b]
                if not body.strip():
                    continue
                meta = dict(doc.meta)
                meta.update(
                    source=source,
                    section=" > ".join(path),
                    chunk_index=index,
                    start=sec.start + a,
                    end=sec.start + b,
                )
                chunks.append(Chunk(id=chunk_id(source, index, body), text=body, meta=meta))
                index += 1
        return chunks

    def split_documents(self, docs: Iterable[Document]) -> list[Chunk]:
        """Chunks of several documents of one file (e.g. the pages of a pdf), numbered across them."""
        out: list[Chunk] = []
        for doc in docs:
            out.extend(self.split_document(doc, start_index=len(out)))
        return out


def context_text(chunk: Chunk | object) -> str:
    """The text to embed and to index for a chunk: its title and heading path, then its text, so that a chunk in
    the middle of a section still carries the words of its headings."""
    meta = getattr(chunk, "meta", {}) or {}
    text = str(getattr(chunk, "text", ""))
    head = " > ".join(p for p in (str(meta.get("title") or ""), str(meta.get("section") or "")) if p)
    if head and not text.lstrip().startswith("#"):
        return f"{head}\n{text}"
    return text


def reassemble(text_chunks: Sequence[tuple[int, int]], text: str) -> str:
    """Join chunk spans of ``text`` dropping the overlaps: the inverse of splitting (used by tests and checks)."""
    out: list[str] = []
    covered = 0
    for start, end in sorted(text_chunks):
        if end > covered:
            out.append(text[max(start, covered) : end])
            covered = end
    return "".join(out)
