"""Tool-using agents: the loop (:mod:`core.agent.loop`), typed step memory (:mod:`core.agent.memory`), calling
modes (:mod:`core.agent.modes`), streamed events (:mod:`core.agent.events`) and JSONL traces
(:mod:`core.agent.trace`).

Example::

    from core.agent import Agent
    from core.tools import calculator, make_python_tool

    agent = Agent(client, [calculator, make_python_tool()], max_steps=6)
    print(agent.run("What is 15% of 1,240?").final_answer)
"""

from core.agent.events import (
    AgentEvent,
    ModelReplied,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    ToolFinished,
)
from core.agent.loop import Agent
from core.agent.memory import FINAL_ANSWER, ActionStep, AgentMemory, AgentResult, AgentToolCall
from core.agent.modes import MODES, AgentMode, NativeToolMode, ReactMode, choose_mode, make_mode
from core.agent.trace import Trace, TraceWriter, load_trace, replay_events

__all__ = [
    "FINAL_ANSWER",
    "MODES",
    "ActionStep",
    "Agent",
    "AgentEvent",
    "AgentMemory",
    "AgentMode",
    "AgentResult",
    "AgentToolCall",
    "ModelReplied",
    "NativeToolMode",
    "ReactMode",
    "RunFinished",
    "RunStarted",
    "StepFinished",
    "StepStarted",
    "ToolFinished",
    "Trace",
    "TraceWriter",
    "choose_mode",
    "load_trace",
    "make_mode",
    "replay_events",
]
