"""The agent runner page, driven by Streamlit's AppTest against the fake OpenAI server."""

from __future__ import annotations

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from llm_backend.testing import FakeOpenAIServer, FakeReply
from tests.apps.conftest import APP, APP_TIMEOUT, GUIDE_FILES, make_kb


def _agent_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    at.run()
    at.switch_page("pages/agent_runner.py").run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Agent runner"
    return at


def _texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def _run(at: AppTest, task: str) -> AppTest:
    at.text_area(key="agent_task_text").set_value(task)
    next(b for b in at.button if b.label == "Run the agent").click().run()
    assert not at.exception, at.exception
    return at


def test_steps_are_shown_with_tool_arguments_observation_and_final_answer(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(
        FakeReply(text="I will compute it.", tool_calls=[{"name": "calculator", "arguments": {"expression": "17 * 2340 / 100"}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "397.8"}}]),
    )
    at = _run(_agent_page(), "What is 17% of 2,340?")
    # both requests forced a tool call, with the calculator offered
    bodies = fake_server.chat_requests()
    assert len(bodies) == 2
    assert {t["function"]["name"] for t in bodies[0]["tools"]} >= {"calculator", "final_answer"}
    text = _texts(at.markdown)
    assert "Step 1" in text and "Step 2" in text
    assert "**Thought:** I will compute it." in text
    assert "`calculator`" in text
    code = _texts(at.code)
    assert '"expression": "17 * 2340 / 100"' in code  # arguments
    assert "397.8" in code  # observation
    assert "**Final answer:** 397.8" in _texts(at.success)
    # the trace can be downloaded, and it is a real trace file
    downloads = at.get("download_button")
    assert len(downloads) == 1
    traces = list((Path(str(_home())) / "agent" / "traces").glob("*.jsonl"))
    assert len(traces) == 1
    records = [json.loads(line) for line in traces[0].read_text().splitlines()]
    assert records[0]["type"] == "run" and records[-1]["type"] == "result" and records[-1]["final_answer"] == "397.8"
    # after a rerun the run is still listed, rendered from the session's memory
    at.run()
    assert "**Final answer:** 397.8" in _texts(at.success)
    assert any(e.label.startswith("What is 17% of 2,340?") for e in at.expander)


def _home() -> Path:
    from tests.apps.conftest import home

    return home()


def test_a_tool_fault_is_an_observation_the_run_goes_on(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(
        FakeReply(tool_calls=[{"name": "calculator", "arguments": {"expression": "import os"}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "cannot"}}]),
    )
    at = _run(_agent_page(), "Break the calculator")
    assert "`calculator` failed" in _texts(at.warning)
    assert "**Final answer:** cannot" in _texts(at.success)


def test_server_down_is_a_message_with_the_fix(server_down: str) -> None:
    at = _run(_agent_page(), "What is 2 + 2?")
    errors = _texts(at.error)
    assert "not reachable" in errors and "ragent serve" in errors
    assert "Model server down" in _texts(at.sidebar.error)


def test_server_failing_mid_run_stops_with_its_message(fake_server: FakeOpenAIServer) -> None:
    fake_server.script(FakeReply(status=500, error="engine crashed"))
    at = _run(_agent_page(), "What is 2 + 2?")
    errors = _texts(at.error)
    assert "The run stopped" in errors and "500" in errors


def test_empty_knowledge_base_is_refused_with_a_message(fake_server: FakeOpenAIServer) -> None:
    make_kb("empty")
    at = _agent_page()
    at.sidebar.selectbox(key="agent_kb").set_value("empty").run()
    _run(at, "What does the knowledge base say about serving?")
    assert "is empty" in _texts(at.warning)
    assert not fake_server.chat_requests()


def test_knowledge_base_search_tool(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    fake_server.script(
        FakeReply(tool_calls=[{"name": "search_knowledge_base", "arguments": {"query": "start the model server"}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "ragent serve --detach"}}]),
    )
    at = _agent_page()
    at.sidebar.selectbox(key="agent_kb").set_value("guide").run()
    _run(at, "How do I start the model server?")
    assert "ragent serve --detach" in _texts(at.code)  # the search hit, as the observation
    assert "**Final answer:** ragent serve --detach" in _texts(at.success)


def test_empty_task_asks_for_one(fake_server: FakeOpenAIServer) -> None:
    at = _run(_agent_page(), "   ")
    assert "Write a task first" in _texts(at.warning)
