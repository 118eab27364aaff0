"""``model: "agent:<tools>"``: a tool-using agent (:class:`core.agent.Agent`) runs the last user message as its
task and returns its final answer.

The steps are an extension field: ``choices[0].message.steps`` (non-streaming), or, when streaming, one chunk per
finished step with ``choices[0].delta.steps`` (a one-item list) and no content, then the final answer as content.
A step is :meth:`core.agent.ActionStep.to_dict` (thought, tool calls with arguments and observations, error, usage),
the same record as a ``--trace`` file line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from apps.api.schemas import ChatCompletionRequest, chunk, completion, completion_id, usage_chunk, usage_dict
from apps.api.service import AgentSpec, ApiService

MAX_STEPS = 8
"""Steps before the agent is made to answer (as ``ragent agent run``)."""
PYTHON_TIMEOUT_S = 10.0


def build_agent(service: ApiService, spec: AgentSpec, req: ChatCompletionRequest) -> Any:
    """The agent for ``spec`` on the service's client."""
    from core.agent import Agent
    from core.sandbox import Sandbox
    from core.tools import resolve_tools

    sandbox = Sandbox(timeout_s=PYTHON_TIMEOUT_S)
    if "python" in spec.tools:
        sandbox.check()  # fail before the first model call, with the fix, if no sandbox can be made
    tools = resolve_tools([*spec.tools, *spec.mcp], sandbox=sandbox)
    for name in spec.kbs:
        service.retriever(name)  # an unknown knowledge base is a 404 now, not an observation later
        from core.tools import make_knowledge_search_tool

        tools.append(
            make_knowledge_search_tool(
                service.retriever(name),
                name="search_knowledge_base" if len(spec.kbs) == 1 else f"search_{name.replace('.', '_')}",
                description=f"Search the knowledge base {name!r} for passages relevant to a query; returns numbered "
                "passages with their sources.",
            )
        )
    params: dict[str, Any] = {}
    if req.temperature is not None:
        params["temperature"] = req.temperature
    if req.token_limit():
        params["max_tokens"] = req.token_limit()
    return Agent(service.client, tools, max_steps=MAX_STEPS, metadata={"via": "api", "model": req.model}, **params)


def _usage(result: Any) -> dict[str, int]:
    return usage_dict(result.usage.prompt_tokens, result.usage.completion_tokens)


async def agent_completion(service: ApiService, spec: AgentSpec, req: ChatCompletionRequest) -> dict[str, Any]:
    """A whole ``chat.completion``: the final answer as content, the steps in ``message.steps``."""
    async with service.slot():
        agent = build_agent(service, spec, req)
        result = await agent.arun(req.question())
    message = {
        "role": "assistant",
        "content": result.final_answer or "",
        "steps": [s.to_dict() for s in result.steps],
        "stop_reason": result.stop_reason,
    }
    return completion(req.model, message, finish_reason="stop" if result.final_answer is not None else "length", usage=_usage(result))


async def agent_stream(service: ApiService, spec: AgentSpec, req: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
    """Chunks: one per finished step (``delta.steps``), then the final answer, then ``finish_reason``."""
    from core.agent import RunFinished, StepFinished

    cid, model = completion_id(), req.model
    result: Any = None
    async with service.slot():
        agent = build_agent(service, spec, req)
        first = True
        async for event in agent.astream(req.question()):
            if isinstance(event, StepFinished):
                delta: dict[str, Any] = {"steps": [event.step.to_dict()]}
                if first:
                    delta["role"], first = "assistant", False
                yield chunk(cid, model, delta)
            elif isinstance(event, RunFinished):
                result = event.result
    yield chunk(cid, model, {"content": result.final_answer or "", "stop_reason": result.stop_reason})
    yield chunk(cid, model, {}, finish_reason="stop" if result.final_answer is not None else "length")
    if req.include_usage():
        yield usage_chunk(cid, model, _usage(result))
