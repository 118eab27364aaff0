"""Send one :class:`Request` through the project's client (``achat`` / ``acompletion``) and turn the answer, or the
failure, into a :class:`Response`. This is the only step of a run that touches the network.

A request that fails (server error after retries, timeout, prompt too long...) becomes a ``Response`` with
``error`` set, so its sample is counted as an error and never scored as a wrong answer. An unreachable server is
different: nothing can be evaluated, so :class:`BackendUnavailableError` propagates and stops the run, which can be
resumed later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from evaluation.cache import ResponseCache
from evaluation.types import Request, Response
from llm_backend.errors import BackendUnavailableError
from llm_backend.types import ChatResult, CompletionResult, Message

log = logging.getLogger(__name__)

SendFn = Callable[[Request], Awaitable[Response]]


class EvalClient(Protocol):
    """What evaluation needs from a model client (``OpenAIChatClient`` and ``ScriptedChatClient`` have it)."""

    async def achat(self, messages: list[Message], **kwargs: Any) -> ChatResult: ...

    async def acompletion(self, prompt: str, **kwargs: Any) -> CompletionResult: ...


def response_from_chat(result: ChatResult, latency_s: float) -> Response:
    """Parse a chat answer into a :class:`Response` (pure)."""
    return Response(
        text=result.text,
        tool_calls=tuple({"name": c.name, "arguments": c.arguments} for c in result.tool_calls),
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        finish_reason=result.finish_reason,
        latency_s=latency_s,
    )


def response_from_completion(result: CompletionResult, request: Request, latency_s: float) -> Response:
    """Parse a completion answer into a :class:`Response`; for a log-likelihood request, ``logprob`` is the sum over
    every echoed token from ``continuation_start`` on (several tokens when the tokenizer splits the option)."""
    logprob = None
    if request.continuation_start is not None:
        scored = [t for t in result.tokens if t.offset >= request.continuation_start]
        if not scored:
            raise ValueError(
                "the server returned no echoed token logprobs for the continuation; log-likelihood scoring needs a "
                "server that supports echo + logprobs on /v1/completions (vLLM does; llama.cpp does not)"
            )
        logprob = result.continuation_logprob(request.continuation_start)
    return Response(
        text=result.text,
        logprob=logprob,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        finish_reason=result.finish_reason,
        latency_s=latency_s,
    )


async def send(client: EvalClient, request: Request) -> Response:
    """Send ``request``; failures other than an unreachable server come back as ``Response(error=...)``."""
    start = time.perf_counter()
    try:
        if request.kind == "chat":
            body = dict(request.body)
            messages = body.pop("messages")
            chat = await client.achat(messages, **body, **request.params)
            return response_from_chat(chat, time.perf_counter() - start)
        completion = await client.acompletion(str(request.body["prompt"]), **request.params)
        return response_from_completion(completion, request, time.perf_counter() - start)
    except BackendUnavailableError:
        raise
    except Exception as exc:  # every other failure is this sample's error, recorded and reported
        log.debug("request failed: %s", exc)
        return Response(error=f"{type(exc).__name__}: {exc}", latency_s=time.perf_counter() - start)


def cached_sender(client: EvalClient, model: str, cache: ResponseCache | None) -> SendFn:
    """A ``send`` that answers deterministic requests from ``cache`` and stores new successful answers in it."""

    async def _send(request: Request) -> Response:
        if cache is not None:
            hit = cache.get(request, model)
            if hit is not None:
                return hit
        response = await send(client, request)
        if cache is not None:
            cache.put(request, model, response)
        return response

    return _send
