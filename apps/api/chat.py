"""``POST /v1/chat/completions``: ``kb:<name>`` to a knowledge base, ``agent:<tools>`` to an agent, any other model
to the backend through the one client (:class:`~llm_backend.client.OpenAIChatClient`), streaming or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from apps.api.agent_chat import agent_completion, agent_stream
from apps.api.errors import ApiError, model_not_found
from apps.api.kb_chat import kb_completion, kb_stream
from apps.api.schemas import ChatCompletionRequest, chunk, completion, completion_id, usage_chunk, usage_dict
from apps.api.service import AGENT_PREFIX, KB_PREFIX, ApiService, parse_agent_model
from apps.api.sse import sse_response
from llm_backend.errors import ModelNotFoundError
from llm_backend.types import ChatResult

router = APIRouter()

PASSED_FIELDS = ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty", "n", "logit_bias", "user", "response_format", "parallel_tool_calls")
"""Request fields forwarded to the backend as they are (besides messages, tools, stop and the token limit)."""


def _service(request: Request) -> ApiService:
    service: ApiService = request.app.state.service
    return service


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response | dict[str, Any]:
    """An OpenAI chat completion (``stream: true`` for server-sent events)."""
    service = _service(request)
    model = body.model
    if model.startswith(KB_PREFIX):
        name = model[len(KB_PREFIX):]
        if name not in service.knowledge_bases():
            service.retriever(name)  # raises the 404 with the known names and the closest one
        return await sse_response(kb_stream(service, name, body)) if body.stream else await kb_completion(service, name, body)
    if model.startswith(AGENT_PREFIX):
        spec = parse_agent_model(model)
        return await sse_response(agent_stream(service, spec, body)) if body.stream else await agent_completion(service, spec, body)
    if body.stream:
        return await sse_response(_backend_stream(service, body))
    return await _backend_completion(service, body)


# -- pass-through ------------------------------------------------------------------------------------------------------
def _backend_kwargs(req: ChatCompletionRequest) -> dict[str, Any]:
    """Keyword arguments for the client: sampling fields, tools, stop, the token limit, and unknown extras."""
    data = req.model_dump(exclude_none=True)
    kwargs: dict[str, Any] = {k: data[k] for k in PASSED_FIELDS if k in data}
    known = set(type(req).model_fields)
    kwargs.update({k: v for k, v in (req.model_extra or {}).items() if k not in known and v is not None})
    if req.token_limit():
        kwargs["max_tokens"] = req.token_limit()
    if req.stop is not None:
        kwargs["stop"] = [req.stop] if isinstance(req.stop, str) else req.stop
    if req.tools:
        kwargs["tools"] = req.tools
    if req.tool_choice is not None:
        choice = req.tool_choice
        kwargs["tool_choice"] = choice if isinstance(choice, str) else str((choice.get("function") or {}).get("name") or "")
        if not kwargs["tool_choice"]:
            raise ApiError(400, "tool_choice: give 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}", code="invalid_body")
    kwargs["model"] = req.model
    return kwargs


def _unknown_model(service: ApiService, model: str, exc: ModelNotFoundError) -> ApiError:
    served = [m for m, _ in service.model_ids()]
    from llm_backend.errors import did_you_mean

    return model_not_found(
        model,
        f"model {model!r} is not served here. {did_you_mean(model, served)}Models: {', '.join(served)} "
        f"(GET /v1/models lists them; agent:<tools> takes any of calculator, python, datetime, kb:<name>).",
    )


def _tool_calls(result: Any) -> list[dict[str, Any]]:
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in result.tool_calls]


async def _backend_completion(service: ApiService, req: ChatCompletionRequest) -> dict[str, Any]:
    messages = [m.to_message() for m in req.messages]
    async with service.slot():
        try:
            result: ChatResult = await service.client.achat(messages, **_backend_kwargs(req))
        except ModelNotFoundError as exc:
            raise _unknown_model(service, req.model, exc) from exc
    message: dict[str, Any] = {"role": "assistant", "content": result.text if (result.text or not result.tool_calls) else None}
    if result.tool_calls:
        message["tool_calls"] = _tool_calls(result)
    usage = usage_dict(result.usage.prompt_tokens, result.usage.completion_tokens)
    return completion(result.model or req.model, message, finish_reason=result.finish_reason or "stop", usage=usage)


async def _backend_stream(service: ApiService, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    messages = [m.to_message() for m in req.messages]
    cid, model = completion_id(), req.model
    async with service.slot():
        first = True
        try:
            async for c in service.client.astream(messages, **_backend_kwargs(req)):
                if c.delta:
                    yield chunk(cid, model, {"role": "assistant", "content": c.delta} if first else {"content": c.delta})
                    first = False
                if c.finish_reason is not None:
                    delta: dict[str, Any] = {"role": "assistant"} if first else {}
                    if c.tool_calls:
                        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(_tool_calls(c))]
                    yield chunk(cid, model, delta, finish_reason=c.finish_reason)
                    if req.include_usage() and c.usage is not None:
                        yield usage_chunk(cid, model, usage_dict(c.usage.prompt_tokens, c.usage.completion_tokens))
        except ModelNotFoundError as exc:
            raise _unknown_model(service, req.model, exc) from exc
