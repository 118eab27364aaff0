"""The agent loop with a scripted model: faults become observations, infrastructure faults are raised, the step
limit holds, traces are written, replayed and resumed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.agent import (
    Agent,
    ModelReplied,
    RunFinished,
    StepFinished,
    ToolFinished,
    choose_mode,
    load_trace,
    replay_events,
)
from core.tools import calculator, tool
from llm_backend.errors import BackendUnavailableError, ConfigError
from llm_backend.testing import FakeReply, ScriptedChatClient

CALLS: list[dict[str, Any]] = []


@tool
def lookup_price(item: str) -> float:
    """Look up the price of an item.

    Args:
        item: the item's name.
    """
    CALLS.append({"item": item})
    prices = {"apple": 0.5, "pear": 0.75}
    if item not in prices:
        raise KeyError(f"no price for {item!r}")
    return prices[item]


@tool
def server_status() -> str:
    """Ask a backend that is down."""
    raise BackendUnavailableError("model server not reachable at http://127.0.0.1:9/v1: start it with `ragent serve`.")


def call(name: str, arguments: Any) -> FakeReply:
    return FakeReply(tool_calls=[{"name": name, "arguments": arguments}])


def final(answer: Any) -> FakeReply:
    return call("final_answer", {"answer": answer})


def tool_messages(request: dict[str, Any]) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "tool"]


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


def test_multi_step_run_with_native_tool_calls() -> None:
    client = ScriptedChatClient([
        call("lookup_price", {"item": "apple"}),
        call("calculator", {"expression": "3 * 0.5"}),
        final("1.5"),
    ])
    result = Agent(client, [lookup_price, calculator], mode="native").run("What do 3 apples cost?")
    assert result.final_answer == "1.5"
    assert result.stop_reason == "final_answer"
    assert [len(s.tool_calls) for s in result.steps] == [1, 1, 1]
    assert result.steps[0].observation == "0.5"
    assert result.steps[1].observation == "1.5"
    assert result.parse_failures == result.invalid_calls == result.tool_errors == 0
    # Every request is a constrained call: required tool choice, with final_answer among the tools.
    for request in client.calls:
        assert request["tool_choice"] == "required"
        assert "final_answer" in [t["function"]["name"] for t in request["tools"]]
        assert request["temperature"] == 0.0
    # The observations travel back as tool messages tied to their call ids.
    last = client.calls[-1]["messages"]
    assistant_ids = [c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    assert [m["tool_call_id"] for m in last if m["role"] == "tool"] == assistant_ids
    assert result.usage.prompt_tokens == 30


def test_a_call_that_misses_its_schema_is_asked_again_with_the_tool_forced() -> None:
    client = ScriptedChatClient([call("calculator", '["1 + 1"]'), call("calculator", {"expression": "1 + 1"}), final("2")])
    result = Agent(client, [calculator], mode="native").run("1+1?")
    assert result.final_answer == "2"
    assert result.parse_failures == 0 and result.repaired_steps == 1
    assert [c.get("tool_choice") for c in client.calls] == ["required", "calculator", "required"]
    assert client.calls[1]["messages"] == client.calls[0]["messages"]  # the same step, asked again
    assert result.steps[0].observation == "2" and result.steps[0].repaired
    assert result.usage.prompt_tokens == 30  # both requests of the step are counted


def test_a_bare_value_is_the_one_required_argument() -> None:
    client = ScriptedChatClient([call("calculator", '"1 + 1"'), call("final_answer", "2")])
    result = Agent(client, [calculator], mode="native").run("1+1?")
    assert result.final_answer == "2" and result.steps[0].observation == "2"
    assert result.parse_failures == 0 and result.repaired_steps == 0 and len(client.calls) == 2


def test_a_bare_value_for_a_tool_with_several_arguments_is_still_an_error() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add.

        Args:
            a: first.
            b: second.
        """
        return a + b

    client = ScriptedChatClient([call("add", "3"), call("add", {"a": 1, "b": 2}), final("3")])
    result = Agent(client, [add], mode="native").run("1+2?")
    assert result.final_answer == "3" and result.repaired_steps == 1 and result.parse_failures == 0


def test_a_reply_cut_off_by_the_token_limit_is_asked_again_with_a_frequency_penalty() -> None:
    looping = FakeReply(text='<tool_call>\n{"name": "calculator", "arguments": {"expression": "1 + 1 + 1 + 1 + 1 + 1', finish_reason="length")
    client = ScriptedChatClient([looping, call("calculator", {"expression": "1 + 1"}), final("2")])
    result = Agent(client, [calculator], mode="native").run("1+1?")
    assert result.final_answer == "2" and result.parse_failures == 0 and result.repaired_steps == 1
    retry = client.calls[1]
    assert retry["frequency_penalty"] > 0 and retry["tool_choice"] == "calculator"
    assert retry["messages"] == client.calls[0]["messages"]
    assert "frequency_penalty" not in client.calls[2]  # only the retry is penalised


def test_a_cut_off_reply_whose_retry_is_cut_off_too_is_a_parse_failure() -> None:
    looping = FakeReply(text='{"name": "calculator", "arguments": {"expression": "1 + 1 + 1', finish_reason="length")
    client = ScriptedChatClient([looping, looping, call("calculator", {"expression": "1 + 1"}), final("2")])
    result = Agent(client, [calculator], mode="native").run("1+1?")
    assert result.final_answer == "2" and result.parse_failures == 1 and result.steps[0].parse_failure


def test_malformed_tool_call_json_is_an_observation_and_counted() -> None:
    bad = call("calculator", '{"expression": "1 +')
    client = ScriptedChatClient([bad, bad, call("calculator", {"expression": "1 + 1"}), final("2")])
    result = Agent(client, [calculator], mode="native").run("1+1?")
    assert result.final_answer == "2"
    assert result.parse_failures == 1
    step = result.steps[0]
    assert step.parse_failure and step.tool_calls[0].arguments is None and not step.repaired
    observation = tool_messages(client.calls[2])[0]
    assert "not valid JSON" in observation and "calculator" in observation
    # The malformed arguments are replaced by {} in the history so the server can render the conversation.
    assert client.calls[2]["messages"][2]["tool_calls"][0]["function"]["arguments"] == "{}"


def test_unknown_tool_is_an_observation_with_a_suggestion() -> None:
    client = ScriptedChatClient([call("calculater", {"expression": "2*3"}), call("calculator", {"expression": "2*3"}), final("6")])
    result = Agent(client, [calculator], mode="native").run("2*3?")
    assert result.final_answer == "6"
    assert result.invalid_calls == 1
    observation = tool_messages(client.calls[1])[0]
    assert "unknown tool 'calculater'" in observation and "Did you mean 'calculator'" in observation


def test_invalid_arguments_never_reach_the_function() -> None:
    wrong = call("lookup_price", {"name": "apple"})
    client = ScriptedChatClient([wrong, wrong, final("unknown")])
    result = Agent(client, [lookup_price], mode="native").run("price?")
    assert CALLS == []
    assert result.invalid_calls == 1
    observation = result.steps[0].observation
    assert "missing required argument 'item'" in observation and "unexpected argument 'name'" in observation


def test_tool_raising_is_an_observation_naming_tool_arguments_and_error() -> None:
    client = ScriptedChatClient([call("lookup_price", {"item": "kiwi"}), final("no price")])
    result = Agent(client, [lookup_price], mode="native").run("price of a kiwi?")
    assert result.tool_errors == 1
    observation = result.steps[0].observation
    assert "lookup_price" in observation and "kiwi" in observation and "KeyError" in observation
    assert result.final_answer == "no price"


def test_infrastructure_error_in_a_tool_is_raised() -> None:
    client = ScriptedChatClient([call("server_status", {})])
    with pytest.raises(BackendUnavailableError):
        Agent(client, [server_status], mode="native").run("status?")


def test_backend_down_is_raised_and_the_run_resumes_from_its_trace(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    down = BackendUnavailableError("model server not reachable at http://127.0.0.1:8000/v1")
    first = ScriptedChatClient([call("lookup_price", {"item": "apple"}), down])
    with pytest.raises(BackendUnavailableError):
        Agent(first, [lookup_price, calculator], mode="native", trace_path=trace).run("3 apples?")
    recorded = load_trace(trace)
    assert recorded.result is None and [s.step for s in recorded.steps] == [1]

    second = ScriptedChatClient([call("calculator", {"expression": "3 * 0.5"}), final("1.5")])
    result = Agent(second, [lookup_price, calculator], mode="native").resume(trace)
    assert result.final_answer == "1.5"
    assert [s.step for s in result.steps] == [1, 2, 3]
    # The resumed request carries the first step's call and observation.
    assert tool_messages(second.calls[0]) == ["0.5"]
    assert CALLS == [{"item": "apple"}]  # step 1 was not run again
    again = load_trace(trace)
    assert again.result is not None and again.result["final_answer"] == "1.5"
    assert [s.step for s in again.steps] == [1, 2, 3]
    # A finished run resumes to its recorded result without calling the model.
    third = ScriptedChatClient([])
    assert Agent(third, [lookup_price, calculator], mode="native").resume(trace).final_answer == "1.5"
    assert third.calls == []


def test_step_limit_forces_one_final_answer_call() -> None:
    client = ScriptedChatClient([call("calculator", {"expression": "1+1"}), call("calculator", {"expression": "2+2"}), final("2")])
    result = Agent(client, [calculator], mode="native", max_steps=2).run("loop")
    assert result.stop_reason == "max_steps"
    assert result.final_answer == "2"
    assert len(client.calls) == 3
    assert client.calls[-1]["tool_choice"] == "final_answer"
    assert "used all your steps" in client.calls[-1]["messages"][-1]["content"]


def test_step_limit_without_forcing_stops_without_answer() -> None:
    client = ScriptedChatClient([call("calculator", {"expression": f"{n}+1"}) for n in range(5)])
    result = Agent(client, [calculator], mode="native", max_steps=3, force_final_answer=False).run("loop")
    assert result.stop_reason == "max_steps"
    assert result.final_answer is None
    assert len(client.calls) == 3


def test_a_repeated_call_forces_the_final_answer() -> None:
    same = call("calculator", {"expression": "60 * 9"})
    client = ScriptedChatClient([same, same, final("540")])
    result = Agent(client, [calculator], mode="native", max_steps=8).run("loop?")
    assert result.stop_reason == "repeated_call" and result.final_answer == "540"
    assert len(client.calls) == 3 and client.calls[-1]["tool_choice"] == "final_answer"
    # Without the guard the model would go on until the step limit.
    again = ScriptedChatClient([same, same, same, final("540")])
    result = Agent(again, [calculator], mode="native", max_steps=3, stop_repeats=False).run("loop?")
    assert result.stop_reason == "max_steps" and len(again.calls) == 4


def test_think_mode_puts_a_thought_first_in_every_call_and_strips_it() -> None:
    client = ScriptedChatClient([
        call("lookup_price", {"thought": "I need the apple price.", "item": "apple"}),
        final("0.5"),
    ])
    result = Agent(client, [lookup_price], mode="native-think").run("apple price?")
    assert CALLS == [{"item": "apple"}]  # the thought never reaches the tool
    assert result.steps[0].thought == "I need the apple price."
    spec = next(t for t in client.calls[0]["tools"] if t["function"]["name"] == "lookup_price")["function"]["parameters"]
    assert list(spec["properties"]) == ["thought", "item"] and spec["required"] == ["thought", "item"]
    final_spec = next(t for t in client.calls[0]["tools"] if t["function"]["name"] == "final_answer")["function"]["parameters"]
    assert "thought" not in final_spec["properties"]
    # The history shows the call as the model wrote it, thought included.
    history = client.calls[1]["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(history) == {"thought": "I need the apple price.", "item": "apple"}


def test_reply_without_tool_call_is_a_parse_failure_with_a_nudge() -> None:
    client = ScriptedChatClient(["The answer is 4.", final("4")])
    result = Agent(client, [calculator], mode="native").run("2+2?")
    assert result.parse_failures == 1 and result.final_answer == "4"
    nudge = client.calls[1]["messages"][-1]
    assert nudge["role"] == "user" and "no tool call" in nudge["content"]


def test_tool_call_written_as_text_is_recovered() -> None:
    text = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>'
    client = ScriptedChatClient([text, final("4")])
    result = Agent(client, [calculator], mode="native").run("2+2?")
    assert result.parse_failures == 0
    assert result.steps[0].observation == "4"


def test_final_answer_beside_other_calls_is_ignored() -> None:
    both = FakeReply(tool_calls=[
        {"name": "calculator", "arguments": {"expression": "7*6"}},
        {"name": "final_answer", "arguments": {"answer": "41"}},
    ])
    client = ScriptedChatClient([both, final("42")])
    result = Agent(client, [calculator], mode="native").run("7*6?")
    assert result.final_answer == "42"
    assert "call final_answer alone" in result.steps[0].tool_calls[1].observation
    assert len(result.steps) == 2


def test_events_stream_in_order() -> None:
    client = ScriptedChatClient([call("calculator", {"expression": "1+2"}), final("3")])
    kinds = [e.kind for e in Agent(client, [calculator], mode="native").stream("1+2?")]
    assert kinds == [
        "run_started",
        "step_started", "model_replied", "tool_finished", "step_finished",
        "step_started", "model_replied", "tool_finished", "step_finished",
        "run_finished",
    ]


def test_react_json_mode_uses_a_schema_per_tool_and_parses_actions() -> None:
    replies = [
        json.dumps({"thought": "multiply", "action": "calculator", "action_input": {"expression": "6*7"}}),
        "{not json",
        json.dumps({"thought": "done", "action": "final_answer", "action_input": {"answer": "42"}}),
    ]
    client = ScriptedChatClient(replies)
    result = Agent(client, [calculator], mode="react-json").run("6*7?")
    assert result.final_answer == "42"
    assert result.parse_failures == 1
    assert result.steps[0].thought == "multiply" and result.steps[0].observation == "42"
    schema = client.calls[0]["json_schema"]
    actions = [b["properties"]["action"]["enum"][0] for b in schema["anyOf"]]
    assert actions == ["calculator", "final_answer"]
    assert "tools" not in client.calls[0]
    # The observation goes back as a user message after the model's own JSON.
    messages = client.calls[1]["messages"]
    assert messages[-2] == {"role": "assistant", "content": replies[0]}
    assert messages[-1] == {"role": "user", "content": "Observation: 42"}


def test_react_text_mode_parses_the_classic_format() -> None:
    replies = [
        "Thought: I need the price.\nAction: lookup_price\nAction Input: apple",
        'Thought: now multiply\nAction: calculator\nAction Input: {"expression": "3 * 0.5"}',
        "Thought: I know the answer.\nFinal Answer: 1.5 dollars",
    ]
    client = ScriptedChatClient(replies)
    result = Agent(client, [lookup_price, calculator], mode="react").run("3 apples?")
    assert result.final_answer == "1.5 dollars"
    assert CALLS == [{"item": "apple"}]  # a bare string was accepted for the one required argument
    assert result.parse_failures == 0
    assert "Observation:" in client.calls[0]["stop"]
    assert "Action Input" in client.calls[0]["messages"][0]["content"]


def test_react_text_mode_counts_unparseable_replies() -> None:
    client = ScriptedChatClient(["I think it is 4", "Final Answer: 4"])
    result = Agent(client, [calculator], mode="react").run("2+2?")
    assert result.parse_failures == 1 and result.final_answer == "4"


def test_trace_is_written_and_replayed(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    client = ScriptedChatClient([call("calculator", {"expression": "2**10"}), final("1024")])
    Agent(client, [calculator], mode="native", trace_path=trace).run("2^10?")
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["type"] for r in records] == ["run", "step", "step", "result"]
    assert records[0]["task"] == "2^10?" and records[0]["tools"] == ["calculator"]
    events = list(replay_events(load_trace(trace)))
    assert [e.kind for e in events if not isinstance(e, RunFinished)][:4] == ["run_started", "step_started", "model_replied", "tool_finished"]
    observed = [e.call.observation for e in events if isinstance(e, ToolFinished)]
    assert observed == ["1024", "Final answer recorded."]


def test_half_written_last_trace_line_is_ignored(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    client = ScriptedChatClient([call("calculator", {"expression": "1+1"}), final("2")])
    Agent(client, [calculator], mode="native", trace_path=trace).run("1+1?")
    lines = trace.read_text().splitlines()
    trace.write_text("\n".join(lines[:2]) + '\n{"type": "step", "ste')
    loaded = load_trace(trace)
    assert [s.step for s in loaded.steps] == [1] and loaded.result is None


def test_not_a_trace_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"type": "step", "step": 1}\n')
    with pytest.raises(ConfigError, match="no run record"):
        load_trace(bad)


async def test_async_run_gives_the_same_result() -> None:
    client = ScriptedChatClient([call("calculator", {"expression": "5*5"}), final("25")])
    result = await Agent(client, [calculator], mode="native").arun("5*5?")
    assert result.final_answer == "25" and len(result.steps) == 2


def test_on_event_callback_sees_steps() -> None:
    seen: list[str] = []
    client = ScriptedChatClient([final("ok")])

    def on_event(event: object) -> None:
        if isinstance(event, ModelReplied | StepFinished):
            seen.append(type(event).__name__)

    Agent(client, [calculator], mode="native").run("hi", on_event=on_event)
    assert seen == ["ModelReplied", "StepFinished"]


def test_auto_mode_follows_the_backend() -> None:
    class Settings:
        engine = "llamacpp"

    class Client(ScriptedChatClient):
        settings = Settings()

    assert choose_mode(Client([])).name == "react-json"
    assert choose_mode(ScriptedChatClient([])).name == "native"
    with pytest.raises(ConfigError, match="Did you mean 'native'"):
        choose_mode(ScriptedChatClient([]), "nativ")


def test_reserved_tool_name_and_empty_task_are_refused() -> None:
    @tool
    def final_answer(answer: str) -> str:
        """Mine."""
        return answer

    with pytest.raises(ConfigError, match="reserved"):
        Agent(ScriptedChatClient([]), [final_answer])
    with pytest.raises(ConfigError, match="task"):
        Agent(ScriptedChatClient([]), [calculator]).run("  ")


def test_plan_mode_reasons_in_words_first_then_acts() -> None:
    client = ScriptedChatClient([
        "3 apples at 0.5 each: I need the price, then multiply by 3.",
        call("calculator", {"expression": "3 * 0.5"}),
        final("1.5"),
    ])
    result = Agent(client, [calculator], mode="native-plan").run("3 apples at 0.5?")
    assert result.final_answer == "1.5" and result.parse_failures == 0
    assert "tools" not in client.calls[0] and "tool_choice" not in client.calls[0]  # plain text, no calling prompt
    assert "think the task through" in client.calls[0]["messages"][-1]["content"]
    assert result.steps[0].format == "plan" and result.steps[0].thought.startswith("3 apples")
    history = client.calls[1]["messages"]
    assert history[-2] == {"role": "assistant", "content": "3 apples at 0.5 each: I need the price, then multiply by 3."}
    assert history[-1]["role"] == "user" and "carry out your plan" in history[-1]["content"]
    assert client.calls[1]["tool_choice"] == "required"


def test_plan_prompt_can_be_replaced() -> None:
    from core.agent.modes import NativeToolMode

    client = ScriptedChatClient(["2 + 2 is 4.", final("4")])
    result = Agent(client, [calculator], mode=NativeToolMode(plan=True, plan_prompt="Solve it in words.")).run("2+2?")
    assert result.final_answer == "4" and client.calls[0]["messages"][-1]["content"] == "Solve it in words."


def test_a_call_lost_in_the_text_is_asked_again_with_its_tool_forced() -> None:
    # vLLM's hermes parser splits at the first </tool_call>, so a string argument containing it leaves no call.
    broken = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2)}</tool_call> <tool_call>{"}}\n</tool_call>'
    client = ScriptedChatClient([broken, call("calculator", {"expression": "2+2"}), final("4")])
    result = Agent(client, [calculator], mode="native").run("2+2?")
    assert result.parse_failures == 0 and result.repaired_steps == 1
    assert client.calls[1]["tool_choice"] == "calculator"
    assert result.final_answer == "4"
