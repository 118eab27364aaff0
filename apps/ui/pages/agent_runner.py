"""Agent runner: choose tools (and a knowledge base), give a task, watch each step live, download the trace."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import streamlit as st

from apps.ui import common
from llm_backend.errors import RagentError

TOOL_HELP = {
    "calculator": "safe arithmetic",
    "python": "run Python code in the sandbox",
    "datetime": "the current date and time",
    "files": "read and list files in one folder",
    "kb": "search the chosen knowledge base",
}
AGENT_MODES = {
    "auto": "auto (native tool calls; JSON ReAct on llama.cpp)",
    "native": "native tool calls",
    "react-json": "ReAct, JSON-constrained",
    "react": "ReAct, free text",
}

settings, status, state = common.page_start(agent_runs=[])
registry = common.kb_registry(settings)

with st.sidebar:
    st.subheader("Tools")
    tools = st.multiselect(
        "Tools the agent may call", [t for t in TOOL_HELP if t != "kb"], default=["calculator"], key="agent_tools",
        help="; ".join(f"{name}: {text}" for name, text in TOOL_HELP.items()),
    )
    files_root = st.text_input("Folder for the files tools", key="agent_files_root") if "files" in tools else ""
    kb_name = common.select_kb(registry.names(), label="Knowledge base to search (optional)", allow_none=True, key="agent_kb")
    st.subheader("Run")
    mode = st.selectbox("Calling mode", list(AGENT_MODES), format_func=AGENT_MODES.__getitem__, key="agent_mode")
    max_steps = st.slider("Most steps", 1, 12, 6, key="agent_max_steps")
    if state["agent_runs"] and st.button("Clear runs", icon=":material/delete_sweep:"):
        state["agent_runs"] = []

st.title("Agent runner")
st.caption("The agent thinks, calls a tool, reads what came back, and repeats until it gives a final answer. Every step is recorded in a trace you can download.")


def _render_call(call: Any) -> None:
    if call.name == "final_answer":
        return
    st.markdown(f"**Tool:** `{call.name}`")
    st.code(json.dumps(call.arguments if call.arguments is not None else call.raw_arguments, ensure_ascii=False, indent=2), language="json")


def _render_observation(call: Any) -> None:
    if call.name == "final_answer" and not call.error:
        return
    if call.error:
        st.warning(f"`{call.name}` failed: {call.error}", icon=":material/warning:")
    if call.observation:
        st.markdown("**Observation:**")
        st.code(call.observation, language=None, wrap_lines=True)


def _render_step(step: Any) -> None:
    with st.container(border=True):
        st.markdown(f"##### Step {step.step}")
        if step.thought:
            st.markdown(f"**Thought:** {step.thought}")
        if step.parse_failure and step.error:
            st.warning(f"The reply could not be read as an action: {step.error}", icon=":material/warning:")
        for call in step.tool_calls:
            _render_call(call)
            _render_observation(call)
        if step.final_answer is not None:
            st.markdown(f"**Final answer given:** {step.final_answer}")


def _render_run(run: dict[str, Any], *, expanded: bool) -> None:
    with st.expander(f"{run['task'][:80]}", expanded=expanded, icon=":material/smart_toy:"):
        st.caption(f"tools: {', '.join(run['tools']) or 'none'} · mode {run.get('mode', '')} · {run.get('summary', '')}")
        for step in run["steps"]:
            _render_step(step)
        _render_outcome(run)


def _render_outcome(run: dict[str, Any]) -> None:
    if run.get("error"):
        st.error(f"**The run stopped.** {run['error']}", icon=":material/error:")
    elif run.get("final_answer") is not None:
        st.success(f"**Final answer:** {run['final_answer']}", icon=":material/flag:")
    else:
        st.warning("The agent reached the step limit without a final answer. Allow more steps or simplify the task.")
    trace = Path(run["trace"]) if run.get("trace") else None
    if trace is not None and trace.is_file():
        st.download_button(
            "Download trace (JSONL)", trace.read_bytes(), file_name=trace.name, mime="application/jsonl",
            key=f"trace_{run['id']}", icon=":material/download:",
        )


with st.form("agent_task", border=False):
    task = st.text_area("Task", placeholder="What is 17% of 2,340, plus the number of days in a leap year?", key="agent_task_text")
    go = st.form_submit_button("Run the agent", icon=":material/play_arrow:", type="primary")

if go:
    problem = None
    if not task.strip():
        problem = "Write a task first."
    elif not status["ok"]:
        common.server_down_message(status)
    elif "files" in tools and not files_root.strip():
        problem = "The files tools need a folder: fill in “Folder for the files tools” in the sidebar."
    if kb_name and problem is None and status["ok"]:
        try:
            if registry.open(kb_name).manifest.n_chunks() == 0:
                problem = (f"The knowledge base **{kb_name}** is empty, so the agent would find nothing in it. Add files on the "
                           "chat page (or `ragent kb ingest`), or choose no knowledge base.")
        except RagentError as exc:
            problem = str(exc)
    if problem:
        st.warning(problem, icon=":material/info:")
    elif status["ok"]:
        from core.agent import Agent, ModelReplied, RunFinished, StepFinished, StepStarted, ToolFinished
        from core.tools import resolve_tools

        run: dict[str, Any] = {"id": uuid.uuid4().hex[:10], "task": task.strip(), "tools": list(tools) + (["kb"] if kb_name else []),
                               "mode": mode, "steps": [], "final_answer": None, "error": None, "trace": None, "summary": ""}
        trace_path = settings.home / "agent" / "traces" / f"{time.strftime('%Y%m%d-%H%M%S')}-{run['id']}.jsonl"
        with st.status("Starting the agent…", expanded=True) as box:
            try:
                agent = Agent(
                    common.chat_client(settings), resolve_tools(tools, kb=kb_name or None, files_root=files_root.strip() or None),
                    mode=mode, max_steps=max_steps, trace_path=trace_path,
                )
                run["mode"] = agent.mode.name
                run["trace"] = str(trace_path)
                for event in agent.stream(task.strip()):
                    if isinstance(event, StepStarted):
                        box.update(label=f"Step {event.step}: asking the model…")
                        st.markdown(f"##### Step {event.step}")
                    elif isinstance(event, ModelReplied):
                        if event.thought:
                            st.markdown(f"**Thought:** {event.thought}")
                        if event.error:
                            st.warning(f"The reply could not be read as an action: {event.error}", icon=":material/warning:")
                        for call in event.tool_calls:
                            _render_call(call)
                        names = [c.name for c in event.tool_calls if c.name != "final_answer"]
                        if names:
                            box.update(label=f"Step {event.step}: running {', '.join(names)}…")
                    elif isinstance(event, ToolFinished):
                        _render_observation(event.call)
                    elif isinstance(event, StepFinished):
                        run["steps"].append(event.step)
                        if event.step.final_answer is not None:
                            st.markdown(f"**Final answer given:** {event.step.final_answer}")
                    elif isinstance(event, RunFinished):
                        result = event.result
                        run["final_answer"] = result.final_answer
                        run["summary"] = (f"{len(result.steps)} steps, {result.usage.prompt_tokens} prompt + "
                                          f"{result.usage.completion_tokens} completion tokens, {result.duration_s:.1f} s")
                box.update(label=f"Finished: {run['summary']}", state="complete", expanded=False)
            except RagentError as exc:
                run["error"] = str(exc)
                box.update(label="The run stopped", state="error")
            except Exception as exc:  # a bug below us: a message, not a traceback
                common.log.exception("agent run failed")
                run["error"] = f"unexpected error ({type(exc).__name__}: {exc}); see the app's log."
                box.update(label="The run stopped", state="error")
        _render_outcome(run)
        state["agent_runs"].insert(0, run)
        state["agent_runs_live"] = run["id"]

runs: list[dict[str, Any]] = state["agent_runs"]
live = state.pop("agent_runs_live", None) if go else None
shown = [r for r in runs if r["id"] != live]
if shown:
    st.subheader("Runs in this session")
    for i, past in enumerate(shown):
        _render_run(past, expanded=i == 0 and live is None)
elif not runs:
    st.info("Give the agent a task above. With the knowledge base tool it can search your documents; with python it runs code in a sandbox.", icon=":material/lightbulb:")
