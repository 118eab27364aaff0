"""How each kind of task turns a sample into requests and the answers into a score.

- ``generate``: chat generation, answer extraction (strict / flexible pipelines), text metrics (GSM8K).
- ``multiple_choice``: log-likelihood of each option through ``/v1/completions`` with echo + logprobs (MMLU,
  CMMLU, C-Eval).
- ``code``: chat generation, the code executed against the tests in the agent sandbox (HumanEval).
- ``function_call``: BFCL, the calls checked by AST against ``possible_answer``.
- ``rag``: retrieval metrics, answer EM/F1 and an LLM-judged faithfulness (CMRC2018, ClapNQ).
- ``agent``: task success of the tool-using agent (GSM8K with tools).
"""

from __future__ import annotations

from typing import Any

from evaluation.kinds.base import Evaluator
from evaluation.task import TaskSpec


def make_evaluator(task: TaskSpec, **options: Any) -> Evaluator:
    """The evaluator for ``task.kind``; ``options`` reach kinds that take collaborators (a code executor, a
    retriever factory, an agent factory)."""
    if task.kind == "generate":
        from evaluation.kinds.generate import GenerateEvaluator

        return GenerateEvaluator(task)
    if task.kind == "multiple_choice":
        from evaluation.kinds.choice import MultipleChoiceEvaluator

        return MultipleChoiceEvaluator(task)
    if task.kind == "code":
        from evaluation.kinds.code import CodeEvaluator

        return CodeEvaluator(task, executor=options.get("executor"))
    if task.kind == "function_call":
        from evaluation.kinds.function_call import FunctionCallEvaluator

        return FunctionCallEvaluator(task)
    if task.kind == "rag":
        from evaluation.kinds.rag import RagEvaluator

        return RagEvaluator(task, retriever_factory=options.get("retriever_factory"))
    from evaluation.kinds.agent import AgentEvaluator

    return AgentEvaluator(task, agent_factory=options.get("agent_factory"))
