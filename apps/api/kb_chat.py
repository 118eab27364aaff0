"""``model: "kb:<name>"``: a cited answer from a knowledge base, through :func:`core.rag.answer`.

The conversation's last user message is the question; the turns before it are the history :func:`core.rag.answer`
uses to rewrite a follow-up into a stand-alone query. The answer runs in a worker thread (it is synchronous and
streams through a callback); its deltas reach the event loop through a queue.

Citations (extension fields, ignored by plain OpenAI clients; the text itself carries the ``[n]`` markers):

- non-streaming: ``choices[0].message.citations``, a list of :func:`citation_dict`, and ``message.segments``: the
  text piece by piece, ``kind`` ``"model"`` (the model's sentence, checked against the passages) or ``"quote"`` (a
  passage's own words, quoted when a sentence stated a figure no passage holds), with the numbers each cites;
- streaming: sentences arrive as they are checked; the last chunk before ``[DONE]`` (the one with
  ``finish_reason``) has ``choices[0].delta.citations``, ``delta.segments`` and ``delta.cited_content`` (the whole
  answer text, the same as the non-streaming ``message.content``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from apps.api.schemas import ChatCompletionRequest, chunk, completion, completion_id, usage_chunk, usage_dict
from apps.api.service import ApiService

DEFAULT_MAX_TOKENS = 384
"""The longest answer when the request does not say (as ``ragent kb ask``)."""


class _Cancelled(Exception):
    """The client went away; the worker stops at its next delta."""


def citation_dict(c: Any) -> dict[str, Any]:
    """A citation as JSON: ``number`` (the ``[n]`` in the text), ``source``, ``title``, ``section``, ``page``,
    ``text`` (the passage), ``label`` (a short human label), ``chunk_id``, ``score``, ``inferred`` (numbered by
    ragent after the model answered rather than written by the model)."""
    data = asdict(c)
    data["label"] = c.label
    return data


def _extensions(result: Any) -> dict[str, Any]:
    segments = [{"text": sg.text, "kind": sg.kind, "citations": list(sg.citations)} for sg in getattr(result, "segments", ())]
    return {"citations": [citation_dict(c) for c in result.citations], "segments": segments}


def _usage(result: Any) -> dict[str, int]:
    return usage_dict(result.usage.prompt_tokens, result.usage.completion_tokens)


class _AnswerWorker:
    """Runs one :func:`core.rag.answer` in a thread and hands its deltas and result to the event loop."""

    def __init__(self, service: ApiService, name: str, req: ChatCompletionRequest) -> None:
        self.service, self.name, self.req = service, name, req
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.cancelled = threading.Event()
        self.streaming = False

    def _put(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _on_delta(self, delta: str) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        if self.streaming:
            self._put(("delta", delta))

    def _run(self) -> None:
        from core.rag import answer

        try:
            req = self.req
            params: dict[str, Any] = {"max_tokens": req.token_limit() or DEFAULT_MAX_TOKENS}
            if req.temperature is not None:
                params["temperature"] = req.temperature
            result = answer(
                req.question(),
                retriever=self.service.retriever(self.name),
                client=self.service.client,
                history=req.history(),
                tokenizer=self.service.tokenizer(),
                on_delta=self._on_delta,  # also when not streaming: a client that went away stops the answer
                **params,
            )
            self._put(("done", result))
        except _Cancelled:
            self._put(("cancelled", None))
        except BaseException as exc:  # handed to the event loop, which raises it there
            self._put(("error", exc))

    def start(self, streaming: bool) -> None:
        self.streaming = streaming
        threading.Thread(target=self._run, name=f"kb-answer-{self.name}", daemon=True).start()

    async def next(self) -> tuple[str, Any]:
        kind, value = await self.queue.get()
        if kind == "error":
            raise value
        return kind, value


async def kb_completion(service: ApiService, name: str, req: ChatCompletionRequest) -> dict[str, Any]:
    """A whole ``chat.completion`` from knowledge base ``name``, with ``message.citations``."""
    async with service.slot():
        worker = _AnswerWorker(service, name, req)
        worker.start(streaming=False)
        try:
            _, result = await worker.next()
        finally:
            worker.cancelled.set()
    message = {"role": "assistant", "content": result.text, **_extensions(result)}
    return completion(req.model, message, usage=_usage(result))


async def kb_stream(service: ApiService, name: str, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """``chat.completion.chunk`` s of an answer from ``name``; the last one carries the citations."""
    cid, model = completion_id(), req.model
    async with service.slot():
        worker = _AnswerWorker(service, name, req)
        worker.start(streaming=True)
        first = True
        try:
            while True:
                kind, value = await worker.next()
                if kind == "delta":
                    delta = {"role": "assistant", "content": value} if first else {"content": value}
                    first = False
                    yield chunk(cid, model, delta)
                elif kind == "done":
                    break
        finally:
            worker.cancelled.set()
    result = value
    if first:  # nothing was streamed (cannot happen with answer() today, which always writes its text)
        yield chunk(cid, model, {"role": "assistant", "content": result.text})
    final = {**_extensions(result), "cited_content": result.text}
    yield chunk(cid, model, final, finish_reason="stop")
    if req.include_usage():
        yield usage_chunk(cid, model, _usage(result))
