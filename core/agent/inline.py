"""The ``inline`` mode: reasoning in plain text, with ``calculator`` and ``python`` results written into it."""

from __future__ import annotations

import json
import re
from typing import Any

from core.agent.memory import FINAL_ANSWER, AgentMemory, AgentToolCall, StepFormat
from core.agent.prompts import render
from core.agent.protocol import ParsedReply, StepRequest, new_call_id
from core.tools.arithmetic import expression_before_equals
from core.tools.registry import Toolbox
from llm_backend.types import ChatResult

_FENCE = re.compile(r"^```(\w*)[ \t]*$", re.MULTILINE)


def _open_code_block(text: str) -> str | None:
    """The language of the fenced code block ``text`` ends inside (``""`` for a bare fence), else ``None``."""
    fences = _FENCE.findall(text)
    return fences[-1] if len(fences) % 2 else None


class InlineToolMode:
    """Reasoning in plain text, with tools filled in as it is written (``inline``): calculator-annotated chain of
    thought, as in GSM8K's own solutions (``48/2 = <<48/2=24>>24``), and program-aided reasoning.

    The model writes its answer as free text; generation stops at every ``=`` and at the end of every fenced code
    block. When the line before an ``=`` ends in arithmetic (:func:`~core.tools.arithmetic.expression_before_equals`),
    the ``calculator`` tool computes it and its exact result is written after the ``=``; a closed ````` ```python `````
    block runs in the ``python`` tool and its output follows in an ````` ```output ````` block. Then the model goes on
    from there (the partial answer is continued, not answered: ``continue_final_message``, which vLLM offers). When it
    ends, the whole text is the final answer.

    Small models reason better in words than in tool calls (on GSM8K, Qwen2.5-Coder-0.5B's chain of thought beats its
    own ReAct runs), but get arithmetic wrong: here they keep the first and lose the second. There is nothing to parse,
    so no reply can fail to parse. Only ``calculator`` and ``python`` are used; other tools need a calling mode. Each
    step is one stretch of text with at most one tool use, so give it more steps than a calling mode
    (:attr:`MAX_STEPS`); ``budget_tokens`` caps the answer's length over all steps."""

    format: StepFormat = "inline"
    name = "inline"
    STOPS = ("=", "```\n")
    MAX_STEPS = 40
    """A good step limit: a step is a stretch of text up to one tool use."""

    def __init__(self, *, budget_tokens: int = 1024) -> None:
        self.budget_tokens = budget_tokens

    def system_prompt(self, toolbox: Toolbox, instructions: str | None) -> str:
        return render("inline_system", instructions=instructions or "", calculator="calculator" in toolbox, python="python" in toolbox)

    def request(self, memory: AgentMemory, toolbox: Toolbox, *, final: bool) -> StepRequest:
        used = sum(s.usage.completion_tokens for s in memory.steps)
        kwargs: dict[str, Any] = {"max_tokens": max(16, self.budget_tokens - used)}
        if not final:  # the forced last step just finishes the text, without tools
            kwargs.update(stop=list(self.STOPS), include_stop_str_in_output=True)
        if memory.steps:
            kwargs.update(continue_final_message=True, add_generation_prompt=False)
        return StepRequest(memory.to_messages(), kwargs)

    def parse(self, reply: ChatResult, toolbox: Toolbox, *, plan: bool = False, memory: AgentMemory | None = None) -> ParsedReply:
        text = reply.text
        written = (memory.inline_text() if memory is not None else "") + text
        stopped = reply.finish_reason == "stop" and text.endswith(self.STOPS)
        if not stopped:  # the model finished (or ran out of tokens): its whole text is the answer
            answer = written.strip()
            return ParsedReply(thought=text, calls=[AgentToolCall(new_call_id(), FINAL_ANSWER, {"answer": answer}, json.dumps({"answer": answer}, ensure_ascii=False))])
        language = _open_code_block(written)
        if text.endswith("="):
            expression = None if language is not None else expression_before_equals(written[:-1])
            if expression is not None and "calculator" in toolbox:
                return ParsedReply(thought=text, calls=[AgentToolCall(new_call_id(), "calculator", {"expression": expression}, json.dumps({"expression": expression}))])
            return ParsedReply(thought=text)
        # A fence line: it opened a block (nothing to do yet) or closed one.
        before = written[: -len("```\n")]
        opened = _open_code_block(before)
        if opened in ("python", "py", "") and "python" in toolbox and language is None:
            code = before[before.rfind("```") :].split("\n", 1)[-1]
            return ParsedReply(thought=text, calls=[AgentToolCall(new_call_id(), "python", {"code": code}, json.dumps({"code": code}))])
        return ParsedReply(thought=text)

    def repair(self, memory: AgentMemory, toolbox: Toolbox, parsed: ParsedReply) -> StepRequest | None:
        return None
