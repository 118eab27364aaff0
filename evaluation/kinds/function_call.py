"""BFCL function calling: the model sees the functions (BFCL's system prompt, or native ``tools``), and its calls
are checked by AST against ``possible_answer`` (see ``evaluation.bfcl``). The sample's group is the BFCL category
(``simple_python``, ``multiple``, ``parallel``, ``irrelevance``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evaluation import bfcl
from evaluation.kinds.base import RequestEvaluator
from evaluation.kinds.generate import generation_params
from evaluation.types import Request, Response, Sample
from llm_backend.errors import ConfigError


class FunctionCallEvaluator(RequestEvaluator):
    """``kind: function_call``; ``options.mode`` is ``prompt`` (default) or ``fc`` (native tool calls)."""

    @property
    def mode(self) -> str:
        mode = str(self.task.options.get("mode", "prompt"))
        if mode not in ("prompt", "fc"):
            raise ConfigError(f"{self.task.name}: options.mode must be 'prompt' or 'fc', not {mode!r}")
        return mode

    def requests(self, sample: Sample) -> list[Request]:
        doc = sample.doc
        question = list(doc["question"][0])
        functions = bfcl.with_python_hint(list(doc["function"]))
        params = generation_params(self.task)
        if self.mode == "prompt":
            return [Request(kind="chat", body={"messages": bfcl.prompt_messages(question, functions)}, params=params)]
        return [Request(kind="chat", body={"messages": question, "tools": bfcl.to_openai_tools(functions), "tool_choice": "auto"}, params=params)]

    def score(self, sample: Sample, responses: Sequence[Response]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
        response = responses[0]
        category = sample.group or str(sample.doc.get("id", "")).rsplit("_", 1)[0]
        if self.mode == "prompt":
            raw: Any = response.text
            ok, details = bfcl.verdict(category, list(sample.doc["function"]), sample.doc.get("possible_answer"), lambda: bfcl.decode_python_calls(response.text))
        else:
            raw = list(response.tool_calls) or response.text
            calls = list(response.tool_calls)
            ok, details = bfcl.verdict(
                category, list(sample.doc["function"]), sample.doc.get("possible_answer"),
                lambda: bfcl.decode_tool_calls(calls) if calls else bfcl.decode_python_calls(response.text), underscore_names=True,
            )
        return {"calls": details.get("decoded")}, {"accuracy": float(ok)}, {"raw_output": raw, "category": category, **{k: v for k, v in details.items() if k != "decoded"}}
