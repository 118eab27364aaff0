"""The answer: retrieve -> rerank -> keep what is relevant -> prompt within a token budget -> stream, checked -> cite.

One readable function, :func:`answer`. The steps live beside it by job: :mod:`core.rag.context` (relevance and
the token budget), :mod:`core.rag.citations` (passages, ``[n]`` markers, sentences matched to passages) and
:mod:`core.rag.grounding` (no number or name reaches the user unless a cited passage holds it). When no retrieved
passage is relevant the answer says so without calling the model, so it cannot invent one. Follow-up questions are
first rewritten into stand-alone queries (:func:`rewrite_query`) from the conversation.

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
from functools import partial
from typing import Any, cast

from core.rag.answerable import JUDGED_LANGUAGES, QUOTE_ABOVE, REFUSE_BELOW, assess, e5_of
from core.rag.citations import Citation, attribute, best_sentence, marker_only, parse_citations
from core.rag.context import MIN_TERM_COVERAGE, QUESTION_WORDS, is_relevant, pack_context, term_coverage, to_citation
from core.rag.filters import Filters
from core.rag.grounding import REFUSAL_PHRASES, GroundedWriter, Segment, asks_for_figure, best_passage_sentence, placed
from core.rag.lang import detect_language
from core.rag.prompts import load_template
from core.rag.rerankers import Reranker
from knowledge.embedders import Embedder
from knowledge.tokenizer import TokenCounter, default_tokenizer
from knowledge.types import FilterableRetriever, Retriever
from llm_backend.client import ChatClient, OpenAIChatClient
from llm_backend.types import Message, Usage

log = logging.getLogger(__name__)

REFUSALS = REFUSAL_PHRASES
"""Phrases of the templates' "not in the passages" reply: such an answer gets no citations."""

__all__ = [
    "MIN_TERM_COVERAGE",
    "QUESTION_WORDS",
    "REFUSALS",
    "Answer",
    "Citation",
    "Segment",
    "answer",
    "attribute",
    "best_sentence",
    "build_messages",
    "marker_only",
    "pack_context",
    "parse_citations",
    "rewrite_query",
    "term_coverage",
]


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
    segments: tuple[Segment, ...] = ()
    """The text piece by piece: the model's checked sentences (``kind="model"``) and quotations (``"quote"``)."""
    dropped: tuple[str, ...] = ()
    """The model's sentences that stated a number or name no passage holds: never shown, replaced by a quotation."""
    answerability: float | None = None
    """The assessed probability that the passages answer the question (:func:`core.rag.answerable.assess`); None when
    there was no assessment (not asked for, or not an English question over English passages)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ragent kb ask --json``)."""
        data = asdict(self)
        data["usage"] = {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens}
        return data


def build_messages(question: str, sources: Sequence[Citation], language: str, *, template: str = "answer") -> list[Message]:
    """The chat messages for a cited answer (pure function: test it by comparing dicts)."""
    tpl = load_template(template)
    passages = [{"number": c.number, "label": c.short_label, "text": c.text} for c in sources]
    return [
        {"role": "system", "content": tpl.render(language, "system")},
        {"role": "user", "content": tpl.render(language, "user", question=question, passages=passages)},
    ]


def _stream(client: ChatClient, messages: list[Message], writer: GroundedWriter, **params: Any) -> Usage:
    """Stream one reply into ``writer`` (which shows only complete, checked sentences); the usage it reports."""
    usage = Usage()
    for chunk in client.stream(messages, **params):
        if chunk.delta:
            writer.feed(chunk.delta)
        if chunk.usage is not None:
            usage = chunk.usage
    return usage


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
    on_segment: Callable[[Segment], None] | None = None,
    max_tokens: int = 384,
    temperature: float = 0.0,
    template: str = "answer",
    min_coverage: float = MIN_TERM_COVERAGE,
    recover: bool = True,
    grounded: bool = True,
    rewrite_client: ChatClient | None = None,
    answerability: bool | None = None,
    embedder: Embedder | None = None,
    refuse_below: float = REFUSE_BELOW,
    quote_above: float = QUOTE_ABOVE,
) -> Answer:
    """Answer ``question`` from ``retriever`` with numbered citations, streaming checked sentences to ``on_delta``
    (their text) and ``on_segment`` (text and kind).

    With ``grounded`` (default) every sentence is shown only once complete and only if each number, date, version
    and name in it is in a passage, which it then cites; a sentence that fails is left out and the answer ends with
    a marked quotation of the passage sentence that best answers the question (:mod:`core.rag.grounding`). The
    same quotation ends an answer to a question that asks for a number (多少, how many) when the model's words state
    none (the 0.5B model often repeats the question as its answer).
    A reply with no words, only citation markers such as ``"[1] [2]."``, is never shown: with ``recover``
    (default) the model is asked once more with a stricter instruction, and if that reply holds no words either,
    the answer quotes the top passage's most relevant sentence (``Answer.fallback`` says which happened). Without
    ``recover`` and ``grounded`` the text is the model's reply as it is, numbered by :func:`attribute`.
    ``rewrite_client`` rewrites follow-up questions (default ``client``; a small model is enough).

    With ``answerability`` (and ``grounded``) the passages are first assessed (:func:`core.rag.answerable.assess`:
    e5's closeness of the question to the closest passage and the share of its words the best passage holds, fitted
    on ClapNQ; and the question's specific figures and names that no passage states). For English questions over
    English passages (the calibrated case), a score under ``refuse_below`` or a missing figure or name gives a refusal that says so
    and quotes the closest passage sentence, without asking the model; from ``quote_above``, a reply in which the
    model refuses anyway is replaced by a marked quotation of the passage sentence that best answers the question
    ("when unsure, quote the source"). ``embedder`` is the e5 embedder to assess with (default: the retriever's own,
    else one loaded once per process). ``None`` (default) assesses when ``client`` talks to a server
    (:class:`~llm_backend.client.OpenAIChatClient`), not for in-process fakes, so unit tests need no e5 model."""
    query = rewrite_query(question, history, rewrite_client or client) if history else question
    lang = language or detect_language(question)
    tpl = load_template(template)

    def emit(segment: Segment) -> None:
        if on_delta is not None:
            on_delta(segment.text)
        if on_segment is not None:
            on_segment(segment)

    # 1. retrieve (more candidates when a reranker will choose among them)
    n = max(k, candidates) if reranker is not None else k
    hits = cast(FilterableRetriever, retriever).retrieve(query, n, filters=filters) if filters else retriever.retrieve(query, n)
    # 2. rerank
    if reranker is not None and hits:
        hits = reranker.rerank(query, hits, k)
    # 3. keep what is relevant; say so when nothing is
    relevant = [h for h in hits[:k] if is_relevant(query, h, min_coverage=min_coverage)]
    if not relevant:
        text = tpl.render(lang, "no_answer", question=question)
        emit(Segment(text, "model"))
        return Answer(text=text, question=question, query=query, found=False, language=lang, segments=(Segment(text, "model"),))
    # 4. prompt within the token budget
    packed = pack_context(relevant, context_tokens, tokenizer or default_tokenizer())
    sources = tuple(to_citation(i + 1, hit, text) for i, (hit, text) in enumerate(packed))
    messages = build_messages(query, sources, lang, template=template)
    if not grounded:
        return _ungrounded(question, query, lang, sources, messages, client, emit, temperature=temperature, max_tokens=max_tokens)

    def quote(dropped: list[str]) -> Segment | None:
        found = best_passage_sentence(query, sources, hint=" ".join(dropped))
        if found is None:
            return None
        cited, sentence = found
        log.info("left out %d sentence(s) with figures no passage holds (%r), or no figure stated; quoting passage [%d]", len(dropped), dropped[:2], cited.number)
        return Segment(tpl.render(lang, "quote", sentence=sentence, number=cited.number), "quote", (cited.number,))

    # 5. does a passage answer it? (calibrated on English questions over English passages)
    judged = isinstance(client, OpenAIChatClient) if answerability is None else answerability
    monolingual = all(detect_language(c.text) == lang for c in sources)
    assessed = assess(query, [c.text for c in sources], embedder or e5_of(retriever)) if judged and monolingual and lang in JUDGED_LANGUAGES else None
    score = assessed.score if assessed is not None else None
    if assessed is not None and assessed.refuses(refuse_below):
        log.info("the passages were judged not to answer the question (answerability %.2f, refuse below %.2f; figures and names no passage states: %s)",
                 assessed.score, refuse_below, ", ".join(assessed.missing) or "none")
        # The assessment is wrong for some answerable questions (docs/benchmarks.md): the refusal shows the closest
        # passage sentence, marked as a quotation, so the user can see for themselves ("when unsure, quote").
        closest = quote([])
        said = tpl.render(lang, "not_answered", missing=", ".join(assessed.missing))
        segments: tuple[Segment, ...] = (Segment(said, "model"),)
        if closest is not None:
            segments += (placed(closest, after_text=True),)
        for segment in segments:
            emit(segment)
        shown = tuple(replace(c, inferred=False) for c in sources if closest is not None and c.number in closest.citations)
        return Answer(
            text="".join(s.text for s in segments), citations=shown, question=question, query=query, sources=sources, language=lang,
            segments=segments, answerability=score,
        )
    # not assessed (another language, passages in several languages): the gate vouched for the passages, so a
    # refusal of the model becomes a quotation; assessed: only from quote_above
    confident = score is None or score >= quote_above
    close = partial(GroundedWriter.close, quote=quote, need_figure=asks_for_figure(query), question=query, quote_refusal=judged and confident)
    # 6. stream, sentence by sentence, checked against the passages
    instruction = tpl.render(lang, "user", question="", passages=[])
    writer = GroundedWriter(sources, emit, instruction=instruction)
    usage = _stream(client, messages, writer, temperature=temperature, max_tokens=max_tokens)
    close(writer)
    fallback = ""
    if recover and not writer.segments:
        log.info("answer held no words (%r); asking again with a stricter instruction", writer.raw[:80])
        retry = [messages[0], {"role": "user", "content": str(messages[1]["content"]) + "\n" + tpl.render(lang, "retry", question=query)}]
        first = writer
        writer = GroundedWriter(sources, emit, instruction=instruction)
        usage = usage + _stream(client, retry, writer, temperature=temperature, max_tokens=max_tokens)
        close(writer)
        writer.dropped[:0] = first.dropped
        fallback = "retry"
        if not writer.segments:
            top = sources[0]
            log.info("retry held no words either; quoting passage [%d]", top.number)
            segment = Segment(tpl.render(lang, "extract", sentence=best_sentence(query, top.text), number=top.number), "quote", (top.number,))
            writer.segments.append(segment)
            emit(segment)
            fallback = "extract"
    # 7. cite: the markers the checked text carries; the model's own ones are explicit, the others inferred
    text = writer.text
    explicit = {c.number for c in parse_citations(writer.raw, sources)}
    refused = any(p in text for p in REFUSALS)
    citations = () if refused else tuple(replace(c, inferred=c.number not in explicit) for c in parse_citations(text, sources))
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
        segments=tuple(writer.segments),
        dropped=tuple(writer.dropped),
        answerability=score,
    )


def _ungrounded(
    question: str, query: str, lang: str, sources: tuple[Citation, ...], messages: list[Message], client: ChatClient,
    emit: Callable[[Segment], None], **params: Any
) -> Answer:
    """The model's reply as it is, numbered afterwards by :func:`attribute` (the pipeline before grounding; kept to
    measure against)."""
    parts: list[str] = []
    usage = Usage()
    for chunk in client.stream(messages, **params):
        if chunk.delta:
            parts.append(chunk.delta)
            emit(Segment(chunk.delta, "model"))
        if chunk.usage is not None:
            usage = chunk.usage
    text = "".join(parts).strip()
    citations = parse_citations(text, sources)
    if not citations and text and not any(p in text for p in REFUSALS):
        text, citations = attribute(text, sources)
    return Answer(text=text, citations=citations, usage=usage, question=question, query=query, sources=sources, language=lang, segments=(Segment(text, "model"),))
