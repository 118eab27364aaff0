"""How an agent talks to the model: build a request from the memory, parse the reply into tool calls.

Two families, chosen per backend (:func:`choose_mode`):

- :class:`NativeToolMode`: OpenAI tool calls with ``tool_choice="required"`` and a ``final_answer`` tool. On vLLM
  a required (or named) tool choice is grammar-constrained, so every reply is a well-formed call even from a 0.5B
  model (FACTS.md); ``"auto"`` is never used.
- :class:`ReactMode`: text ReAct (Thought / Action / Action Input / Observation) for endpoints without tool
  calls. With ``constrained=True`` (``react-json``) each reply is a JSON object forced by a JSON schema whose
  ``anyOf`` has one branch per tool, so the action name and its arguments are well-formed too; with
  ``constrained=False`` (``react``) the classic text format is parsed leniently.

Building and parsing are pure functions of their inputs; the loop (:mod:`core.agent.loop`) does the sending. What
a mode is (its request, parsed reply and Protocol) is in :mod:`core.agent.protocol`; the ``inline`` mode (reasoning
in text, tools written in) in :mod:`core.agent.inline`; the prompt templates in :mod:`core.agent.prompts`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.agent.inline import InlineToolMode
from core.agent.memory import FINAL_ANSWER, AgentMemory, AgentToolCall, StepFormat
from core.agent.prompts import render
from core.agent.protocol import AgentMode, ParsedReply, StepRequest, new_call_id
from core.tools.base import Tool
from core.tools.registry import Toolbox
from llm_backend.errors import ConfigError, did_you_mean
from llm_backend.types import ChatResult, Message

MODES = ("native", "native-plan", "native-think", "react-json", "react", "inline")


def final_answer_tool() -> Tool:
    """The tool that ends a run."""

    def final_answer(answer: str) -> str:
        """Give the final answer to the task and stop.

        Args:
            answer: the answer, complete and short.
        """
        return answer

    return Tool.from_function(final_answer, name=FINAL_ANSWER)


def _final_messages(memory: AgentMemory) -> list[Message]:
    return [*memory.to_messages(), {"role": "user", "content": render("final_nudge")}]


_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _loose_json(text: str) -> Any:
    """Parse JSON, tolerating code fences and text around one object."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = re.sub(r"^```\w*\s*|\s*```$", "", stripped)
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        match = _JSON_OBJECT.search(stripped)
        if match is None:
            raise
        return json.loads(match.group(0))


REPEAT_PENALTY = 1.0
"""``frequency_penalty`` of the second request for a reply cut off by the token limit (see ``NativeToolMode.repair``)."""

THOUGHT = "thought"
THOUGHT_SCHEMA = {"type": "string", "description": "Your reasoning, step by step, before this call: what you know and what the call will do."}


def with_thought(spec: dict[str, Any]) -> dict[str, Any]:
    """A tool spec whose arguments start with a required ``thought`` string. Constrained decoding writes properties
    in schema order, so the model reasons first and then fills in the real arguments: chain-of-thought inside a
    well-formed call."""
    fn = dict(spec["function"])
    params = dict(fn.get("parameters") or {"type": "object", "properties": {}})
    params["properties"] = {THOUGHT: THOUGHT_SCHEMA, **params.get("properties", {})}
    params["required"] = [THOUGHT, *[r for r in params.get("required", []) if r != THOUGHT]]
    fn["parameters"] = params
    return {**spec, "function": fn}


class NativeToolMode:
    """OpenAI tool calls; ``tool_choice="required"`` each step, the named ``final_answer`` when forced.

    ``plan=True`` (``native-plan``) makes the first step a plan in free text (``tool_choice="none"``): the model
    reasons about the task in its own words, then acts with constrained calls. Small models that go straight to a
    call otherwise skip the reasoning (and, on GSM8K, get the arithmetic right but the problem wrong).

    ``think=True`` (``native-think``) adds a required ``thought`` argument, first, to every tool but
    ``final_answer`` (:func:`with_thought`); it is taken out before the tool runs and kept as the step's thought.
    With Qwen2.5-Coder-0.5B on vLLM the model often leaves the thought out or breaks the call format (then
    :meth:`repair` asks again); prefer ``native-plan`` for small models."""

    format: StepFormat = "tool_calls"

    def __init__(self, *, think: bool = False, plan: bool = False, plan_prompt: str | None = None) -> None:
        self.think = think
        self.plan = plan
        self.plan_prompt = plan_prompt
        self.name = "native-think" if think else "native-plan" if plan else "native"

    def system_prompt(self, toolbox: Toolbox, instructions: str | None) -> str:
        return render("native_system", instructions=instructions or "")

    def _tools(self, toolbox: Toolbox) -> list[dict[str, Any]]:
        """The tool specs a calling request offers: the toolbox's (with a ``thought`` argument when thinking) and
        ``final_answer``."""
        specs = [with_thought(s) for s in toolbox.schemas()] if self.think else toolbox.schemas()
        return [*specs, final_answer_tool().to_openai()]

    def request(self, memory: AgentMemory, toolbox: Toolbox, *, final: bool) -> StepRequest:
        if self.plan and not memory.steps and not final:
            # No tools in the planning request: with tools the chat template fills the system prompt with calling
            # instructions, and a small model then writes JSON calls instead of reasoning.
            ask = self.plan_prompt or render("plan_request")
            return StepRequest([*memory.to_messages(), {"role": "user", "content": ask}], {}, plan=True)
        tools = self._tools(toolbox)
        if final:
            return StepRequest(_final_messages(memory), {"tools": tools, "tool_choice": FINAL_ANSWER})
        return StepRequest(memory.to_messages(), {"tools": tools, "tool_choice": "required"})

    def repair(self, memory: AgentMemory, toolbox: Toolbox, parsed: ParsedReply) -> StepRequest | None:
        """A second request for the same step when the reply was cut off by the token limit (asked again with a
        frequency penalty), or when its one call does not fit its tool's schema (asked again with that tool forced).

        vLLM (0.32) constrains ``tool_choice="required"`` output with a grammar but reads it back with the model's
        tool parser (hermes for Qwen), which cuts at the first ``</tool_call>``: a small model that writes that tag
        or stray braces inside a string argument loses the call, or gets it mangled (a string where an object
        belongs, another tool's arguments). Seen on GSM8K with Qwen2.5-Coder-0.5B. A *named* tool choice is
        constrained by the tool's exact schema and returned as JSON without that parsing, so the same step is asked
        again with ``tool_choice=<that tool>``."""
        if parsed.parse_failure and parsed.truncated:
            # A reply cut off by the token limit is a repetition loop more often than not: ask the same step again
            # with a frequency penalty (a standard OpenAI parameter), so greedy decoding leaves the loop.
            return StepRequest(memory.to_messages(), {"tools": self._tools(toolbox), "tool_choice": parsed.named_tool or "required", "frequency_penalty": REPEAT_PENALTY})
        if not parsed.calls and parsed.named_tool:
            name = parsed.named_tool
        elif len(parsed.calls) == 1:
            name = parsed.calls[0].name
        else:
            return None
        call = parsed.calls[0] if parsed.calls else None
        target = final_answer_tool() if name == FINAL_ANSWER else toolbox.get(name)
        if target is None:
            return None  # an unknown tool: the observation will list the real ones
        if call is not None and call.arguments is not None:
            try:
                target.validate(call.arguments)
                return None
            except ValueError:
                pass
        return StepRequest(memory.to_messages(), {"tools": self._tools(toolbox), "tool_choice": name})

    def parse(self, reply: ChatResult, toolbox: Toolbox, *, plan: bool = False, memory: AgentMemory | None = None) -> ParsedReply:
        if plan:
            return ParsedReply(thought=reply.text.strip(), plan=True)
        calls: list[AgentToolCall] = []
        errors: list[str] = []
        for tc in reply.tool_calls:
            try:
                args: dict[str, Any] | None = tc.parsed_arguments()
                error = None
            except ValueError as exc:
                args = _single_argument(tc.name, tc.arguments, toolbox)
                error = None if args is not None else str(exc)
                if error is not None:
                    errors.append(error)
            thought = ""
            if self.think and args is not None and tc.name != FINAL_ANSWER:
                thought = str(args.pop(THOUGHT, "") or "").strip()
            calls.append(AgentToolCall(tc.id or new_call_id(), tc.name, args, tc.arguments, error=error, thought=thought, fault="parse" if error else None))
        if not calls:
            recovered = _calls_from_text(reply.text)
            if recovered:
                return ParsedReply(thought="", calls=recovered)
            names = ", ".join([*toolbox.names, FINAL_ANSWER])
            named = re.search(r'"name"\s*:\s*"([\w-]+)"', reply.text)
            hint = named.group(1) if named and (named.group(1) in toolbox or named.group(1) == FINAL_ANSWER) else None
            return ParsedReply(
                thought=reply.text.strip(), error=render("native_no_call", names=names), parse_failure=True, named_tool=hint,
                truncated=reply.finish_reason == "length",
            )
        thought = "\n".join(t for t in [reply.text.strip(), *(c.thought for c in calls)] if t)
        return ParsedReply(
            thought=thought, calls=calls, error="; ".join(errors) or None, parse_failure=bool(errors), truncated=reply.finish_reason == "length"
        )


def _single_argument(name: str, raw: str, toolbox: Toolbox) -> dict[str, Any] | None:
    """A bare JSON value (``"15"``, ``42``) sent as the arguments of a tool that takes exactly one required argument
    is that argument: ``final_answer("15")`` means ``{"answer": "15"}``. Seen from Qwen2.5-Coder-0.5B on vLLM under
    ``tool_choice="required"``. Anything else stays an error."""
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return None
    if isinstance(value, dict | list) or value is None:
        return None
    tool = final_answer_tool() if name == FINAL_ANSWER else toolbox.get(name)
    required = tool.parameters.get("required", []) if tool is not None else []
    if tool is None or len(required) != 1:
        return None
    prop = tool.parameters.get("properties", {}).get(required[0], {})
    if prop.get("type") == "string" and not isinstance(value, str):
        value = str(value)
    return {required[0]: value}


def _calls_from_text(text: str) -> list[AgentToolCall]:
    """Servers that ignore ``tool_choice="required"`` (llama.cpp) write the call as JSON text, sometimes inside
    ``<tool_call>`` tags: recover ``{"name": ..., "arguments": {...}}`` objects from it."""
    blocks = re.findall(r"<tool_call>(.*?)</tool_call>", text, re.DOTALL) or [text]
    calls = []
    for block in blocks:
        try:
            data = _loose_json(block)
        except json.JSONDecodeError:
            continue
        items = data if isinstance(data, list) else [data]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                args = item.get("arguments", item.get("parameters", {}))
                if isinstance(args, str):
                    try:
                        args = json.loads(args)
                    except json.JSONDecodeError:
                        continue
                if isinstance(args, dict):
                    calls.append(AgentToolCall(new_call_id(), item["name"], args, json.dumps(args, ensure_ascii=False)))
    return calls


class ReactMode:
    """Text ReAct. ``constrained=True``: JSON replies forced by a JSON schema (``react-json``)."""

    format: StepFormat = "react"

    def __init__(self, *, constrained: bool = True) -> None:
        self.constrained = constrained
        self.name = "react-json" if constrained else "react"

    def system_prompt(self, toolbox: Toolbox, instructions: str | None) -> str:
        template = "react_json_system" if self.constrained else "react_text_system"
        tools = list(toolbox) if self.constrained else [*toolbox, final_answer_tool()]
        return render(template, tools=tools, instructions=instructions or "")

    @staticmethod
    def reply_schema(toolbox: Toolbox, *, final_only: bool = False) -> dict[str, Any]:
        """One ``anyOf`` branch per tool: ``{"thought": str, "action": <name>, "action_input": <its schema>}``."""
        tools = [final_answer_tool()] if final_only else [*toolbox, final_answer_tool()]
        branches = [
            {
                "type": "object",
                "properties": {
                    "thought": {"type": "string"},
                    "action": {"type": "string", "enum": [t.name]},
                    "action_input": t.parameters,
                },
                "required": ["thought", "action", "action_input"],
                "additionalProperties": False,
            }
            for t in tools
        ]
        return branches[0] if len(branches) == 1 else {"anyOf": branches}

    def request(self, memory: AgentMemory, toolbox: Toolbox, *, final: bool) -> StepRequest:
        messages = _final_messages(memory) if final else memory.to_messages()
        if self.constrained:
            return StepRequest(messages, {"json_schema": self.reply_schema(toolbox, final_only=final)})
        return StepRequest(messages, {"stop": ["\nObservation:", "Observation:"]})

    def parse(self, reply: ChatResult, toolbox: Toolbox, *, plan: bool = False, memory: AgentMemory | None = None) -> ParsedReply:
        return parse_react_json(reply.text) if self.constrained else parse_react_text(reply.text, toolbox)

    def repair(self, memory: AgentMemory, toolbox: Toolbox, parsed: ParsedReply) -> StepRequest | None:
        """No second request: the JSON schema already constrains the whole reply."""
        return None


def parse_react_json(text: str) -> ParsedReply:
    """``{"thought", "action", "action_input"}`` -> one call (``final_answer`` included)."""
    try:
        data = _loose_json(text)
    except json.JSONDecodeError as exc:
        return ParsedReply(error=render("react_parse_error", error=f"not valid JSON ({exc.msg})"), parse_failure=True)
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        return ParsedReply(error=render("react_parse_error", error='expected {"thought", "action", "action_input"}'), parse_failure=True)
    args = data.get("action_input", {})
    if isinstance(args, str) and data["action"] == FINAL_ANSWER:
        args = {"answer": args}
    if not isinstance(args, dict):
        return ParsedReply(
            thought=str(data.get("thought", "")),
            error=render("react_parse_error", error="action_input must be a JSON object"),
            parse_failure=True,
        )
    call = AgentToolCall(new_call_id(), data["action"], args, json.dumps(args, ensure_ascii=False))
    return ParsedReply(thought=str(data.get("thought", "")), calls=[call])


_REACT_FINAL = re.compile(r"Final Answer\s*:\s*(.*)", re.DOTALL | re.IGNORECASE)
_REACT_ACTION = re.compile(r"Action\s*:\s*(.+?)\s*\n\s*Action Input\s*:\s*(.*)", re.DOTALL | re.IGNORECASE)
_REACT_THOUGHT = re.compile(r"Thought\s*:\s*(.*?)(?=\n\s*(?:Action|Final Answer)\s*:|\Z)", re.DOTALL | re.IGNORECASE)


def parse_react_text(text: str, toolbox: Toolbox) -> ParsedReply:
    """Lenient parser for the classic format; a bare string input is accepted for a tool with one required
    string argument."""
    thought_match = _REACT_THOUGHT.search(text)
    thought = thought_match.group(1).strip() if thought_match else ""
    action = _REACT_ACTION.search(text)
    final = _REACT_FINAL.search(text)
    if final and (action is None or final.start() < action.start()):
        answer = final.group(1).strip()
        return ParsedReply(thought, [AgentToolCall(new_call_id(), FINAL_ANSWER, {"answer": answer}, json.dumps({"answer": answer}))])
    if action is None:
        return ParsedReply(
            thought,
            error=render("react_parse_error", error="no 'Action:' with 'Action Input:' and no 'Final Answer:'"),
            parse_failure=True,
        )
    name = action.group(1).strip().strip("`'\"")
    raw = action.group(2).strip()
    raw = raw.split("\nObservation", 1)[0].strip()
    try:
        args = _loose_json(raw)
    except json.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        target = toolbox.get(name)
        required = target.parameters.get("required", []) if target else []
        if target is not None and len(required) == 1:
            args = {required[0]: raw.strip("`'\"") if args is None else args}
        elif name == FINAL_ANSWER:
            args = {"answer": raw}
        else:
            call = AgentToolCall(new_call_id(), name, None, raw, error=f"Action Input for {name!r} is not a JSON object: {raw[:200]!r}", fault="parse")
            return ParsedReply(thought, [call], error=call.error, parse_failure=True)
    return ParsedReply(thought, [AgentToolCall(new_call_id(), name, args, raw)])


def make_mode(name: str) -> AgentMode:
    """``native``, ``native-plan`` (a free-text plan first), ``native-think`` (a ``thought`` argument first in every
    call), ``react-json``, ``react`` or ``inline`` (reasoning in text with tool results written in)."""
    if name == "native":
        return NativeToolMode()
    if name == "native-plan":
        return NativeToolMode(plan=True)
    if name == "native-think":
        return NativeToolMode(think=True)
    if name == "react-json":
        return ReactMode(constrained=True)
    if name == "react":
        return ReactMode(constrained=False)
    if name == "inline":
        return InlineToolMode()
    raise ConfigError(f"unknown agent mode {name!r}. {did_you_mean(name, MODES)}Modes: {', '.join(MODES)}, auto.")


def choose_mode(client: Any, requested: str = "auto") -> AgentMode:
    """The mode for ``client``: ``requested`` unless it is ``auto``. Auto picks native tool calls, except for
    llama.cpp (it ignores ``tool_choice="required"`` but enforces JSON schemas: FACTS.md), which gets ``react-json``."""
    if requested != "auto":
        return make_mode(requested)
    engine = getattr(getattr(client, "settings", None), "engine", None)
    return make_mode("react-json" if engine in ("llamacpp", "llama.cpp", "llama-cpp") else "native")
