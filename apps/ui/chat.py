"""The knowledge-base chat without Streamlit: ask a question through :func:`core.rag.answer` and turn the answer
into a chat turn that the page renders (text with ``[n]`` markers, and one source panel per citation with file,
page or section, snippet and retrieval scores, which each ``core.rag.Citation`` carries).

Example::

    turn = ask("How do I start the model server?", retriever=retriever, client=client, on_delta=print)
    turn["content"], [s["label"] for s in turn["sources"]]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.rag import Answer, Citation, Reranker, answer
from knowledge.tokenizer import TokenCounter
from knowledge.types import Retriever
from llm_backend.client import ChatClient
from llm_backend.types import Message

log = logging.getLogger(__name__)

ChatTurn = dict[str, Any]
"""``{"role": "user"|"assistant", "content": str, ...}``; assistant turns add ``sources`` (list of source dicts),
``found``, ``query``, ``inferred`` and, when the question failed, ``error``."""


def _score_parts(citation: Citation) -> dict[str, float]:
    if citation.score is None:
        return {}
    return {"score": citation.score, **citation.scores}


def source_row(citation: Citation) -> dict[str, Any]:
    """What the source panel of one citation shows: number, label, file, page or section, snippet, scores."""
    where = []
    if citation.page is not None:
        where.append(f"page {citation.page}")
    if citation.section:
        where.append(citation.section)
    return {
        "number": citation.number,
        "label": citation.label,
        "file": citation.source,
        "file_name": Path(citation.source).name if citation.source else citation.title,
        "title": citation.title,
        "where": " · ".join(where),
        "snippet": citation.text,
        "scores": _score_parts(citation),
        "inferred": citation.inferred,
        "chunk_id": citation.chunk_id,
    }


def format_scores(scores: dict[str, float]) -> str:
    """``score 0.0325 (bm25 4.12, dense 0.61)`` for the source panel."""
    if not scores:
        return "score: not recorded"
    head = f"score {scores['score']:.4g}" if "score" in scores else ""
    rest = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if k != "score")
    return head + (f" ({rest})" if rest else "")


def history_messages(turns: Sequence[ChatTurn], max_turns: int = 6) -> list[Message]:
    """The conversation so far as chat messages for follow-up questions (failed turns left out)."""
    messages: list[Message] = []
    for turn in turns:
        if turn.get("error") or not turn.get("content"):
            continue
        if turn.get("role") in ("user", "assistant"):
            messages.append({"role": turn["role"], "content": str(turn["content"])})
    # keep whole question/answer pairs from the end
    return messages[-2 * max_turns :]


def answer_turn(result: Answer) -> ChatTurn:
    """The assistant turn for a finished :class:`~core.rag.Answer`."""
    return {
        "role": "assistant",
        "content": result.text,
        "sources": [source_row(c) for c in result.citations],
        "found": result.found,
        "query": result.query,
        "inferred": any(c.inferred for c in result.citations),
        "usage": {"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens},
        "segments": [{"text": s.text, "kind": s.kind} for s in result.segments],
        "dropped": len(result.dropped),
    }


def answer_markdown(turn: ChatTurn) -> str:
    """The answer as markdown: the model's checked sentences as text, quotations of the passages as block quotes."""
    segments = turn.get("segments") or []
    if not any(s["kind"] == "quote" for s in segments):
        return str(turn.get("content") or "")
    parts = [f"\n\n> {s['text'].strip()}\n\n" if s["kind"] == "quote" else s["text"] for s in segments]
    return "".join(parts).strip()


def ask(
    question: str,
    *,
    retriever: Retriever,
    client: ChatClient,
    history: Sequence[ChatTurn] = (),
    reranker: Reranker | None = None,
    k: int = 4,
    context_tokens: int = 800,
    max_tokens: int = 320,
    tokenizer: TokenCounter | None = None,
    on_delta: Callable[[str], None] | None = None,
    refuse: bool = True,
) -> ChatTurn:
    """Answer ``question`` from ``retriever`` (streaming text to ``on_delta``) and return the assistant turn.
    ``refuse=False`` always asks the model (no answerability assessment, :mod:`core.rag.answerable`).
    Errors propagate (the page shows their message)."""
    result = answer(
        question,
        retriever=retriever,
        client=client,
        history=history_messages(history),
        reranker=reranker,
        k=k,
        candidates=max(12, 3 * k),
        context_tokens=context_tokens,
        tokenizer=tokenizer,
        on_delta=on_delta,
        max_tokens=max_tokens,
        answerability=None if refuse else False,
    )
    return answer_turn(result)
