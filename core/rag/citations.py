"""Citations: the numbered passages of a prompt, the ``[n]`` markers in an answer, and sentences matched to passages.

A :class:`Citation` is one passage given to the model; ``[n]`` in the answer text refers to it. The model may write
the markers itself (:func:`parse_citations`) or answer in words and leave the numbering to :func:`attribute`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from knowledge.lexical import tokenize

SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])(?=\s)|(?<=\S)(?=\n\s*\n)")
"""Where a sentence ends: after ``。！？``, after ``.!?`` followed by white space, or before a blank line."""
_LIST_NUMBER = re.compile(r"(?:.*[:：]\s*|\s*)\d{1,2}\.", re.DOTALL)
CITE = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")
"""A citation marker: ``[1]``, ``[1, 2]``, ``【1】``."""
_OPEN_MARKER = re.compile(r"[\[【][\d\s,，、]*$")


@dataclass(frozen=True)
class Citation:
    """A numbered passage given to the model; ``[number]`` in the answer text refers to it."""

    number: int
    chunk_id: str
    source: str
    title: str = ""
    section: str = ""
    page: int | None = None
    text: str = ""
    inferred: bool = False
    score: float | None = None
    """The score of the cited hit as retrieval returned it: the fused rank score for hybrid retrieval, the cosine
    similarity for dense, the BM25 score for BM25, the reranker's score after a reranker."""
    scores: dict[str, float] = field(default_factory=dict, compare=False)
    """The parts behind ``score`` that the hit recorded: ``dense``, ``bm25``, ``rerank``."""

    @property
    def short_label(self) -> str:
        """File name (or title) and the innermost heading: enough context for the model, few tokens."""
        name = self.source.rsplit("/", 1)[-1] if self.source else self.title
        inner = self.section.rsplit(" > ", 1)[-1] if self.section else ""
        return " · ".join(p for p in (name, inner) if p)

    @property
    def label(self) -> str:
        """Short human label: file name (or title), section, page."""
        name = self.source.rsplit("/", 1)[-1] if self.source else self.title
        parts = [name]
        if self.section:
            parts.append(self.section)
        if self.page is not None:
            parts.append(f"p. {self.page}")
        return " · ".join(p for p in parts if p)


def parse_citations(text: str, sources: Sequence[Citation]) -> tuple[Citation, ...]:
    """The sources cited as ``[n]`` (also ``[1, 2]``, ``【1】``) in ``text``, in order of first citation; numbers
    that match no source are ignored."""
    by_number = {c.number: c for c in sources}
    seen: list[int] = []
    for m in CITE.finditer(text):
        for part in re.split(r"[,，、]", m.group(1)):
            n = int(part.strip())
            if n in by_number and n not in seen:
                seen.append(n)
    return tuple(by_number[n] for n in seen)


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences, white space kept so that ``"".join`` gives ``text`` back.

    A sentence ends at ``。！？``, at ``.!?`` followed by a space or line break (not in ``.md`` or ``3.5``, nor after
    a list item's number), or at a blank line; a single line break does not end one (small models copy the
    hard-wrapped lines of the passages)."""
    sentences: list[str] = []
    for piece in SENTENCE_END.split(text):
        if sentences and _LIST_NUMBER.fullmatch(sentences[-1]):  # "1." opens a list item; it does not end a sentence
            sentences[-1] += piece
        elif piece:
            sentences.append(piece)
    return sentences


def word_coverage(sentence: str, passage_terms: set[str]) -> float:
    """Share of the sentence's index terms that the passage holds (0.0 for a sentence without terms)."""
    terms = set(tokenize(sentence))
    return len(terms & passage_terms) / len(terms) if terms else 0.0


def cite_sentence(sentence: str, number: int) -> str:
    """``sentence`` with `` [number]`` before its final punctuation (trailing white space kept)."""
    body = sentence.rstrip()
    end = body[-1] if body and body[-1] in "。！？.!?" else ""
    core_text = body[:-1] if end else body
    return f"{core_text} [{number}]{end}" + sentence[len(body):]


def attribute(text: str, sources: Sequence[Citation], *, min_coverage: float = 0.3) -> tuple[str, tuple[Citation, ...]]:
    """Post-hoc citations for an answer in which the model wrote none: each sentence gets the number of the passage
    that contains most of its words, if that passage covers at least ``min_coverage`` of them. Citations found this
    way have ``inferred=True``. (:func:`core.rag.grounding.check_sentence` does this per sentence while streaming,
    with the sentence's numbers and names deciding first.)"""
    out: list[str] = []
    cited: list[Citation] = []
    passage_terms = [set(tokenize(c.text + " " + c.section)) for c in sources]
    for sentence in split_sentences(text):
        best, best_cov = None, 0.0
        for c, pterms in zip(sources, passage_terms, strict=True):
            cov = word_coverage(sentence, pterms)
            if cov > best_cov:
                best, best_cov = c, cov
        if best is not None and best_cov >= min_coverage:
            out.append(cite_sentence(sentence, best.number))
            if all(c.number != best.number for c in cited):
                cited.append(best)
        else:
            out.append(sentence)
    return "".join(out), tuple(replace(c, inferred=True) for c in cited)


def marker_only(text: str) -> bool:
    """True when ``text`` holds no words: empty, or only citation markers, punctuation and spaces (``"[2]."``,
    ``"[1] [2] [3]"``), which small models write when they copy the prompt's citation example.

    >>> marker_only("[1] [2]."), marker_only("It runs on a CPU [1].")
    (True, False)
    """
    return not any(ch.isalnum() for ch in CITE.sub("", text))


def may_be_marker_only(text: str) -> bool:
    """Whether a reply streamed so far could still turn out to be only markers (``"[1"`` may become ``"[1]"``)."""
    return not any(ch.isalnum() for ch in _OPEN_MARKER.sub("", CITE.sub("", text)))


def passage_sentences(text: str) -> list[str]:
    """The sentences of a passage: markdown headings skipped (a FAQ heading repeats the question and answers
    nothing) and a paragraph's hard line breaks joined, so a sentence wrapped over two lines is one sentence."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    paragraphs = [" ".join(part.split()) for part in re.split(r"\n\s*\n", body)]
    return [s.strip() for para in paragraphs for s in re.split(r"(?<=[。！？!?])|(?<=\.)\s+", para) if s.strip()]


def best_sentence(query: str, text: str, *, max_chars: int = 400) -> str:
    """The sentence of ``text`` that holds most of the query's words (the first one on a tie), cut to
    ``max_chars``."""
    sentences = passage_sentences(text) or [text.strip()]
    q = set(tokenize(query))
    best, best_n = sentences[0], -1
    for sentence in sentences:
        n = len(q & set(tokenize(sentence)))
        if n > best_n:
            best, best_n = sentence, n
    return best if len(best) <= max_chars else best[:max_chars].rstrip() + " …"
