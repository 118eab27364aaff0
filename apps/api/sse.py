"""Server-sent events for streamed chat completions, the way OpenAI sends them: ``data: {chunk}`` lines, then
``data: [DONE]``.

:func:`sse_response` waits for the first event before it answers, so a request that fails before anything was
produced (backend down, unknown knowledge base) gets a proper status code and JSON error body; a failure after that
is sent as an error event (``data: {"error": {...}}``, which the official client raises as ``APIError``) and the
stream ends without ``[DONE]``: never a silently truncated answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import EventSourceResponse

from apps.api.errors import stream_error_event

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def encode(event: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def sse_response(events: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    """A streaming response of ``events`` (chunk dicts). Exceptions before the first event propagate (and become
    an HTTP error); later ones end the stream with an error event."""
    iterator = aiter(events)
    try:
        first: dict[str, Any] | None = await anext(iterator)
    except StopAsyncIteration:
        first = None
    except BaseException:
        await _close(iterator)
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield encode(first)
            async for event in iterator:
                yield encode(event)
        except Exception as exc:
            log.warning("stream failed after it started: %s", exc)
            yield stream_error_event(exc)
            return
        finally:
            await _close(iterator)
        yield DONE

    return EventSourceResponse(body(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _close(iterator: AsyncIterator[Any]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
