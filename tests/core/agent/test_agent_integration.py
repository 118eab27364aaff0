"""The agent on the real model server: a task that needs at least three steps (look up, compute, answer), every
step a constrained, well-formed tool call."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.agent import Agent, load_trace
from core.tools import calculator, tool
from llm_backend.client import OpenAIChatClient

pytestmark = pytest.mark.integration

LOOKUPS: list[str] = []


@tool
def get_stock(item: str) -> int:
    """Number of units of an item in the warehouse.

    Args:
        item: the item's name, for example "apples".
    """
    LOOKUPS.append(item)
    return {"apples": 17, "pears": 25}.get(item.lower().strip().rstrip("s") + "s", 0)


def test_multi_step_task_on_the_real_server(real_client: OpenAIChatClient, tmp_path: Path) -> None:
    LOOKUPS.clear()
    trace = tmp_path / "run.jsonl"
    agent = Agent(real_client, [get_stock, calculator], mode="native", max_steps=6, trace_path=trace, max_tokens=200)
    result = agent.run(
        "How many apples and pears are in the warehouse in total? First look up the apples with get_stock, then the "
        "pears, then add the two numbers with the calculator, then give the final answer."
    )
    assert result.parse_failures == 0, [s.error for s in result.steps]
    assert len(result.steps) >= 3
    assert result.final_answer is not None
    names = [c.name for s in result.steps for c in s.tool_calls]
    assert "get_stock" in names and names[-1] == "final_answer"
    assert any("apple" in item.lower() for item in LOOKUPS)
    # The trace holds every step and can be read back.
    assert [s.step for s in load_trace(trace).steps] == [s.step for s in result.steps]


def test_inline_mode_on_the_real_server(real_client: OpenAIChatClient) -> None:
    # vLLM continues the partial answer (continue_final_message) after each result the calculator writes in.
    agent = Agent(real_client, [calculator], mode="inline", max_steps=20, instructions="Solve the problem step by step.")
    result = agent.run("A shop sells 37 boxes of 24 pencils each. How many pencils is that?")
    assert result.parse_failures == 0 and result.final_answer is not None
    calls = [c for s in result.steps for c in s.tool_calls if c.name == "calculator"]
    assert calls, result.final_answer  # at least one result was computed by the tool ...
    assert all(f"= {c.observation}" in result.final_answer for c in calls)  # ... and written into the answer
    assert "888" in result.final_answer
