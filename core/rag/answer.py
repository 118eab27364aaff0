"""The answer: retrieve -> rerank -> keep what is relevant -> prompt within a token budget -> stream -> cite.

One readable function, :func:`answer`. Prompt processing is the slow part on a CPU (a 1,500-token prompt costs
seconds before the first token), so the context is packed into a small budget (``context_tokens``, default 1,000,
counted with the chat model's tokenizer). When no retrieved passage is relevant the answer says so without calling
the model, so it cannot invent one. Follow-up questions are first rewritten into stand-alone queries
(:func:`rewrite_query`) from the conversation.

Example::

    retriever = open_retriever("book")
    result = answer("什么是注意力机制？", retriever=retriever, client=OpenAIChatClient(),
                    on_delta=lambda d: print(d, end="", flush=True))
    for c in result.citations:
        print(c.number, c.source, c.section)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

from core.rag.filters import Filters
from core.rag.lang import detect_language
from core.rag.prompts import load_template
from core.rag.rerankers import Reranker
from knowledge.lexical import tokenize
from knowledge.splitter import context_text
from knowledge.tokenizer import TokenCounter, default_tokenizer
from knowledge.types import Chunk, FilterableRetriever, Hit, Retriever
from llm_backend.client import ChatClient
from llm_backend.types import Message, Usage

log = logging.getLogger(__name__)

DENSE_RELEVANCE: dict[str, float] = {"e5": 0.86, "minilm": 0.40, "minilm-int8": 0.40, "hash": 0.6}
"""Cosine similarity above which a dense hit counts as relevant even without shared words (per embedder)."""
MIN_TERM_COVERAGE = 0.33
"""Share of the query's words (stop words excluded) a passage must contain to count as relevant."""

REFUSALS = ("没有找到答案", "没有找到相关", "do not contain the answer", "does not contain the answer")
"""Phrases of the templates' "not in the passages" reply: such an answer gets no inferred citations."""

_SENTENCE_END = re.compile(r"(?<=[。！？])|(?<=[.!?])(?=\s)|(?<=\S)(?=\n\s*\n)")
_LIST_NUMBER = re.compile(r"(?:.*[:：]\s*|\s*)\d{1,2}\.", re.DOTALL)
_CITE = re.compile(r"[\[【]\s*(\d+(?:\s*[,，、]\s*\d+)*)\s*[\]】]")
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


@dataclass(frozen=True)
class Answer:
    """A finished answer. ``citations`` are the passages the text cites (in order of first citation);
    ``sources`` every passage that was in the prompt; ``found`` is False when nothing relevant was retrieved."""

    text: str
    citations: tuple[Citation, ...] = ()
    usage: Usage = field(default_factory=Usage)
    question: str = ""
    query: str = ""
    sources: tuple[Citation, ...] = ()
    found: bool = True
    language: str = "en"
    fallback: str = ""
    """How the text was made when the model's first reply held no words (only ``[n]`` markers): ``""`` (the
    model's first reply), ``"retry"`` (a second request with a stricter instruction answered) or ``"extract"``
    (both replies were markers only; the text quotes the top passage's most relevant sentence, and says so)."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens}
        return data


# -- relevance ---------------------------------------------------------------------------------------------------
QUESTION_WORDS = frozenset(
    [
        "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "do", "does", "did", "can",
        "could", "should", "would", "may", "might", "must", "shall", "i", "me", "my", "you", "your", "we", "our",
        "us", "need", "want", "tell", "explain", "describe",
    ]
)
"""English words that frame a question rather than say what it is about. The BM25 stop words (bm25s's English
list) keep them, so "What is the capital of Australia?" matched a third of its words ("what") in any passage that
said "what" and passed as relevant; they do not count for relevance. (The Chinese stop words already hold
什么, 怎么, 如何, 哪些, ...)"""


def term_coverage(query: str, text: str) -> float:
    """Share of the query's index terms, question words aside, that occur in ``text`` (1.0 for a query without
    terms)."""
    q = set(tokenize(query))
    q = (q - QUESTION_WORDS) or q
    if not q:
        return 1.0
    return len(q & set(tokenize(text))) / len(q)


def is_relevant(query: str, hit: Hit, *, min_coverage: float = MIN_TERM_COVERAGE) -> bool:
    """A hit is relevant when it shares enough of the query's words, or its dense similarity is high for its
    embedder. Rank-fusion scores say nothing absolute, so they are not used here."""
    dense = hit.meta.get("dense_score")
    threshold = DENSE_RELEVANCE.get(str(hit.meta.get("dense_model", "")))
    if dense is not None and threshold is not None and float(dense) >= threshold:
        return True
    return term_coverage(query, context_text(Chunk(hit.chunk_id, hit.text, hit.meta))) >= min_coverage


# -- prompt --------------------------------------------------------------------------------------------------------
def _clean(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text.strip())


def _truncate(text: str, budget: int, tokenizer: TokenCounter) -> str:
    offsets = tokenizer.offsets(text)
    if len(offsets) <= budget:
        return text
    return text[: offsets[max(budget - 2, 1)][0]].rstrip() + " …"  # room for the ellipsis


def pack_context(hits: Sequence[Hit], budget: int, tokenizer: TokenCounter) -> list[tuple[Hit, str]]:
    """Hits (best first) with their prompt text, as many as fit in ``budget`` tokens. The first one is cut to the
    budget if it alone is too long; later ones that do not fit are skipped."""
    out: list[tuple[Hit, str]] = []
    used = 0
    for hit in hits:
        text = _clean(hit.text)
        n = tokenizer.count(text) + 12  # the "[n] (label)" line
        if used + n > budget:
            if not out:
                text = _truncate(text, max(budget - 12, 16), tokenizer)
                out.append((hit, text))
                break
            continue
        out.append((hit, text))
        used += n
    return out


SCORE_PARTS = (("dense_score", "dense"), ("bm25_score", "bm25"), ("rerank_score", "rerank"))
"""Hit meta keys of the retrievers' and rerankers' own scores, and their names in :attr:`Citation.scores`."""


def _citation(number: int, hit: Hit, text: str) -> Citation:
    meta = hit.meta
    page = meta.get("page")
    parts = {name: float(meta[key]) for key, name in SCORE_PARTS if isinstance(meta.get(key), int | float)}
    return Citation(
        number=number,
        chunk_id=hit.chunk_id,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        page=int(page) if isinstance(page, int | float) else None,
        text=text,
        score=float(hit.score),
        scores=parts,
    )


def build_messages(question: str, sources: Sequence[Citation], language: str, *, template: str = "answer") -> list[Message]:
    """The chat messages for a cited answer (pure function: test it by comparing dicts)."""
    tpl = load_template(template)
    passages = [{"number": c.number, "label": c.short_label, "text": c.text} for c in sources]
    return [
        {"role": "system", "content": tpl.render(language, "system")},
        {"role": "user", "content": tpl.render(language, "user", question=question, passages=passages)},
    ]


def parse_citations(text: str, sources: Sequence[Citation]) -> tuple[Citation, ...]:
    """The sources cited as ``[n]`` (also ``[1, 2]``, ``【1】``) in ``text``, in order of first citation; numbers
    that match no source are ignored."""
    by_number = {c.number: c for c in sources}
    seen: list[int] = []
    for m in _CITE.finditer(text):
        for part in re.split(r"[,，、]", m.group(1)):
            n = int(part.strip())
            if n in by_number and n not in seen:
                seen.append(n)
    return tuple(by_number[n] for n in seen)


def attribute(text: str, sources: Sequence[Citation], *, min_coverage: float = 0.3) -> tuple[str, tuple[Citation, ...]]:
    """Post-hoc citations for an answer in which the model wrote none (the answer prompt, v4, lets the model answer in
    words and leaves the numbering to this function, see prompts/answer.yaml): each sentence
    gets the number of the passage that contains most of its words, if that passage covers at least
    ``min_coverage`` of them. Citations found this way have ``inferred=True``.

    A sentence ends at ``。！？``, at ``.!?`` followed by a space or line break (not in ``.md`` or ``3.5``, nor after
    a list item's number), or at a blank line; a single line break does not end one (small models copy the
    hard-wrapped lines of the passages)."""
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(text):
        if sentences and _LIST_NUMBER.fullmatch(sentences[-1]):  # "1." opens a list item; it does not end a sentence
            sentences[-1] += piece
        elif piece:
            sentences.append(piece)
    out: list[str] = []
    cited: list[Citation] = []
    passage_terms = [set(tokenize(c.text + " " + c.section)) for c in sources]
    for sentence in sentences:
        terms = set(tokenize(sentence))
        best, best_cov = None, 0.0
        if terms:
            for c, pterms in zip(sources, passage_terms, strict=True):
                cov = len(terms & pterms) / len(terms)
                if cov > best_cov:
                    best, best_cov = c, cov
        if best is not None and best_cov >= min_coverage:
            body = sentence.rstrip()
            end = body[-1] if body and body[-1] in "。！？.!?" else ""
            core_text = body[:-1] if end else body
            out.append(f"{core_text} [{best.number}]{end}" + sentence[len(body):])
            if all(c.number != best.number for c in cited):
                cited.append(best)
        else:
            out.append(sentence)
    return "".join(out), tuple(replace(c, inferred=True) for c in cited)


# -- answers without words ------------------------------------------------------------------------------------------
def marker_only(text: str) -> bool:
    """True when ``text`` holds no words: empty, or only citation markers, punctuation and spaces (``"[2]."``,
    ``"[1] [2] [3]"``), which small models write when they copy the prompt's citation example.

    >>> marker_only("[1] [2]."), marker_only("It runs on a CPU [1].")
    (True, False)
    """
    return not any(ch.isalnum() for ch in _CITE.sub("", text))


def _may_be_marker_only(text: str) -> bool:
    """Whether a reply streamed so far could still turn out to be only markers (``"[1"`` may become ``"[1]"``)."""
    return not any(ch.isalnum() for ch in _OPEN_MARKER.sub("", _CITE.sub("", text)))


def best_sentence(query: str, text: str, *, max_chars: int = 400) -> str:
    """The sentence of ``text`` that holds most of the query's words (the first one on a tie), cut to ``max_chars``.

    Markdown headings are skipped (a FAQ heading repeats the question and answers nothing) and a paragraph's hard
    line breaks are joined, so a sentence wrapped over two lines is one sentence."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    paragraphs = [" ".join(part.split()) for part in re.split(r"\n\s*\n", body)]
    sentences = [s.strip() for para in paragraphs for s in re.split(r"(?<=[。！？!?])|(?<=\.)\s+", para) if s.strip()]
    sentences = sentences or [text.strip()]
    q = set(tokenize(query))
    best, best_n = sentences[0], -1
    for sentence in sentences:
        n = len(q & set(tokenize(sentence)))
        if n > best_n:
            best, best_n = sentence, n
    return best if len(best) <= max_chars else best[:max_chars].rstrip() + " …"


def _generate(
    client: ChatClient, messages: list[Message], on_delta: Callable[[str], None] | None, *, hold: bool = True, **params: Any
) -> tuple[str, Usage]:
    """Stream one reply. With ``hold``, deltas reach ``on_delta`` only once the reply holds a word, so a reply of
    nothing but citation markers is never shown (the caller retries or falls back); a real answer streams with at
    most the delay of a leading marker."""
    parts: list[str] = []
    usage = Usage()
    shown = 0  # how many parts on_delta has seen
    for chunk in client.stream(messages, **params):
        if chunk.delta:
            parts.append(chunk.delta)
            if on_delta is not None and (shown or not hold or not _may_be_marker_only("".join(parts))):
                for part in parts[shown:]:
                    on_delta(part)
                shown = len(parts)
        if chunk.usage is not None:
            usage = chunk.usage
    return "".join(parts).strip(), usage


# -- follow-up questions --------------------------------------------------------------------------------------------
def rewrite_query(question: str, history: Sequence[Message], client: ChatClient, *, max_turns: int = 3, language: str | None = None) -> str:
    """A stand-alone version of ``question`` given the conversation ``history`` (the question itself when there
    is no history or the model's rewrite is unusable)."""
    turns = [m for m in history if m.get("role") in ("user", "assistant") and m.get("content")]
    if not turns:
        return question
    turns = turns[-2 * max_turns :]
    lang = language or detect_language(question + " " + " ".join(str(m["content"]) for m in turns))
    tpl = load_template("rewrite")
    short = [{"role": m["role"], "content": " ".join(str(m["content"]).split())[:300]} for m in turns]
    messages: list[Message] = [
        {"role": "system", "content": tpl.render(lang, "system")},
        {"role": "user", "content": tpl.render(lang, "user", history=short, question=question)},
    ]
    result = client.chat(messages, temperature=0.0, max_tokens=80)
    text = result.text.strip().splitlines()[0].strip() if result.text.strip() else ""
    text = re.sub(r"^(改写后的问题|问题|Rewritten question|Question)\s*[:：]\s*", "", text, flags=re.IGNORECASE).strip().strip("\"'“”")
    if not text or len(text) > 3 * len(question) + 200:
        log.info("query rewrite unusable (%r); using the question as it is", result.text[:200])
        return question
    return text


# -- the answer ------------------------------------------------------------------------------------------------------
def answer(
    question: str,
    *,
    retriever: Retriever,
    client: ChatClient,
    history: Sequence[Message] = (),
    reranker: Reranker | None = None,
    k: int = 4,
    candidates: int = 12,
    context_tokens: int = 1000,
    tokenizer: TokenCounter | None = None,
    filters: Filters | None = None,
    language: str | None = None,
    on_delta: Callable[[str], None] | None = None,
    max_tokens: int = 384,
    temperature: float = 0.0,
    template: str = "answer",
    min_coverage: float = MIN_TERM_COVERAGE,
    recover: bool = True,
) -> Answer:
    """Answer ``question`` from ``retriever`` with numbered citations, streaming text to ``on_delta``.

    A reply with no words, only citation markers such as ``"[1] [2]."`` (small models copy the prompt's
    citation example), is never shown: with ``recover`` (default) the model is asked once more with a stricter
    instruction, and if that reply holds no words either, the answer quotes the top passage's most relevant
    sentence with its citation, marked as a quotation (``Answer.fallback`` says which happened). Without
    ``recover`` the text is the model's reply as it is."""
    query = rewrite_query(question, history, client) if history else question
    lang = language or detect_language(question)

    # 1. retrieve (more candidates when a reranker will choose among them)
    n = max(k, candidates) if reranker is not None else k
    hits = cast(FilterableRetriever, retriever).retrieve(query, n, filters=filters) if filters else retriever.retrieve(query, n)
    # 2. rerank
    if reranker is not None and hits:
        hits = reranker.rerank(query, hits, k)
    # 3. keep what is relevant; say so when nothing is
    relevant = [h for h in hits[:k] if is_relevant(query, h, min_coverage=min_coverage)]
    if not relevant:
        text = load_template(template).render(lang, "no_answer", question=question)
        if on_delta is not None:
            on_delta(text)
        return Answer(text=text, question=question, query=query, found=False, language=lang)
    # 4. prompt within the token budget
    tok = tokenizer or default_tokenizer()
    packed = pack_context(relevant, context_tokens, tok)
    sources = tuple(_citation(i + 1, hit, text) for i, (hit, text) in enumerate(packed))
    messages = build_messages(query, sources, lang, template=template)
    # 5. stream (a reply of only citation markers is held back)
    text, usage = _generate(client, messages, on_delta, hold=recover, temperature=temperature, max_tokens=max_tokens)
    fallback = ""
    if recover and marker_only(text):
        tpl = load_template(template)
        log.info("answer held no words (%r); asking again with a stricter instruction", text[:80])
        retry = [messages[0], {"role": "user", "content": messages[1]["content"] + "\n" + tpl.render(lang, "retry", question=query)}]
        text, more = _generate(client, retry, on_delta, temperature=temperature, max_tokens=max_tokens)
        usage = usage + more
        fallback = "retry"
        if marker_only(text):
            top = sources[0]
            text = tpl.render(lang, "extract", sentence=best_sentence(query, top.text), number=top.number)
            log.info("retry held no words either; quoting passage [%d]", top.number)
            fallback = "extract"
            if on_delta is not None:
                on_delta(text)
    # 6. cite: the model's own [n] markers; if it wrote none, attribute sentences to passages afterwards
    citations = parse_citations(text, sources)
    if not citations and text and not any(p in text for p in REFUSALS):
        text, citations = attribute(text, sources)
    return Answer(
        text=text,
        citations=citations,
        usage=usage,
        question=question,
        query=query,
        sources=sources,
        found=True,
        language=lang,
        fallback=fallback,
    )
