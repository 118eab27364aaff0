"""Inline mode: plain-text reasoning with calculator results and python output written into the text."""

from __future__ import annotations

from core.agent import Agent
from core.agent.modes import InlineToolMode, make_mode
from core.sandbox import Sandbox
from core.tools import calculator, make_python_tool
from core.tools.arithmetic import expression_before_equals
from llm_backend.testing import FakeReply, ScriptedChatClient


def stop(text: str) -> FakeReply:
    return FakeReply(text=text, finish_reason="stop")


def test_the_calculator_writes_each_result_and_the_model_goes_on() -> None:
    client = ScriptedChatClient([
        stop("He runs 3 sprints 3 times a week: 3 * 3 * 60 ="),  # the model would have written 180
        stop(" meters.\nThe answer is 540."),
    ])
    result = Agent(client, [calculator], mode="inline", max_steps=10).run("How far does James run?")
    assert result.final_answer == "He runs 3 sprints 3 times a week: 3 * 3 * 60 = 540 meters.\nThe answer is 540."
    assert result.parse_failures == 0 and result.stop_reason == "final_answer"
    first, second = client.calls
    assert first["stop"] == ["=", "```\n"] and first["include_stop_str_in_output"] is True
    assert "continue_final_message" not in first
    # The second request continues the partial answer, with the calculator's result written in.
    assert second["messages"][-1] == {"role": "assistant", "content": "He runs 3 sprints 3 times a week: 3 * 3 * 60 = 540"}
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    assert [c.name for c in result.steps[0].tool_calls] == ["calculator"]
    assert result.steps[0].tool_calls[0].arguments == {"expression": "3 * 3 * 60"}


def test_an_equals_sign_without_arithmetic_writes_nothing() -> None:
    client = ScriptedChatClient([stop("Let x ="), stop(" the price. The answer is 4.")])
    result = Agent(client, [calculator], mode="inline").run("?")
    assert result.final_answer == "Let x = the price. The answer is 4."
    assert result.steps[0].tool_calls == [] and result.steps[0].observation == ""


def test_a_python_block_runs_in_the_sandbox_and_its_output_follows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    python = make_python_tool(Sandbox(timeout_s=10, memory_mb=256))
    client = ScriptedChatClient([
        stop("```python\nx ="),  # an "=" inside code: nothing is computed
        stop(" 6 * 7\nprint(x)\n```\n"),
        stop("So the answer is 42."),
    ])
    result = Agent(client, [calculator, python], mode="inline", max_steps=10).run("6*7?")
    assert result.steps[0].tool_calls == []
    assert [c.name for c in result.steps[1].tool_calls] == ["python"]
    assert result.steps[1].tool_calls[0].arguments == {"code": "x = 6 * 7\nprint(x)\n"}
    assert result.final_answer == "```python\nx = 6 * 7\nprint(x)\n```\n```output\n42\n```\nSo the answer is 42."


def test_the_step_limit_finishes_the_text_without_tools() -> None:
    client = ScriptedChatClient([stop("1 + 1 ="), stop(", and 2 + 2 ="), FakeReply(text=", done: 6.", finish_reason="stop")])
    result = Agent(client, [calculator], mode="inline", max_steps=2).run("?")
    assert result.stop_reason == "max_steps" and result.final_answer == "1 + 1 = 2, and 2 + 2 = 4, done: 6."
    assert "stop" not in client.calls[2]  # the forced last step has no stop strings


def test_the_token_budget_spans_all_steps() -> None:
    client = ScriptedChatClient([FakeReply(text="2 * 3 =", finish_reason="stop", completion_tokens=100), stop(" ok")])
    Agent(client, [calculator], mode=InlineToolMode(budget_tokens=300)).run("?")
    assert [c["max_tokens"] for c in client.calls] == [300, 200]


def test_a_reply_cut_off_by_the_budget_is_the_answer() -> None:
    client = ScriptedChatClient([FakeReply(text="It is 5 +", finish_reason="length")])
    result = Agent(client, [calculator], mode="inline").run("?")
    assert result.final_answer == "It is 5 +" and result.parse_failures == 0


def test_mode_name() -> None:
    assert make_mode("inline").name == "inline"


def test_expression_before_equals() -> None:
    assert expression_before_equals(r"so \( 3 \times 3 \times 60 \text{ meters} ") == "3 * 3 * 60"
    assert expression_before_equals(r"\[ 16 \text{ eggs} - 3 \text{ eggs} ") == "16 - 3"
    assert expression_before_equals("Total: $1,200 + $300 ") == "1,200 + 300"
    assert expression_before_equals(r"half: \frac{2}{2} ") == "((2)/(2))"
    assert expression_before_equals("Step 2: 4 * (2 + 1) ") == "4 * (2 + 1)"
    for text in ["Let x ", "The total is 5 ", "cost per egg * 3 ", "13 * $2/egg ", ""]:
        assert expression_before_equals(text) is None, text
