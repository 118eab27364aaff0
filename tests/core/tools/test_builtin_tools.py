"""Built-in tools: calculator (never eval), python (sandboxed), date/time, files (no escape), knowledge-base search,
the registry of names and import paths, and the LangChain adapter."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

import core.tools.knowledge as knowledge_tools
from core.tools import (
    Tool,
    Toolbox,
    calculator,
    current_datetime,
    knowledge_base_tool,
    load_tool,
    make_file_tools,
    make_knowledge_search_tool,
    make_python_tool,
    resolve_tools,
)
from core.tools.arithmetic import evaluate
from core.tools.langchain_adapter import from_langchain, to_langchain
from core.tools.python_tool import print_last_expression, repair_code
from knowledge.types import Hit
from llm_backend.errors import ConfigError

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("2 * (3 + 4) ** 2", "98"), ("1,200 * 15%", "180"), ("0.1 + 0.2", "0.3"), ("10 / 4", "2.5"), ("2^10", "1024"),
     ("sqrt(16) + abs(-2)", "6"), ("16 - 3 - 4 =", "9"), ("7 // 2 + 7 % 2", "4"), ("round(2.567, 2)", "2.57")],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: str) -> None:
    assert calculator.run({"expression": expression}).content == expected


@pytest.mark.parametrize(
    ("expression", "problem"),
    [("__import__('os').system('id')", "not allowed"), ("(1).__class__", "not allowed"), ("open('/etc/passwd')", "not allowed"),
     ("x + 1", "unknown name 'x'"), ("9 ** 9 ** 9", "too large"), ("1 / 0", "division by zero"), ("[1, 2]", "not allowed"),
     ("factorial(10**6)", "at most 10000"), ("2 +", "not a valid arithmetic expression"), ("'a' * 3", "not allowed")],
)
def test_calculator_refuses_everything_but_arithmetic(expression: str, problem: str) -> None:
    out = calculator.run({"expression": expression})
    assert out.fault == "tool_error" and problem in out.content


def test_calculator_never_calls_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def no_eval(*args: object) -> None:
        raise AssertionError("eval was called")

    monkeypatch.setattr(builtins, "eval", no_eval)
    assert evaluate("6 * 7") == 42


def test_python_tool_helpers() -> None:
    assert print_last_expression("x = 2\nx * 21").endswith("print(__ragent_last)")
    assert print_last_expression("print(1)") == "print(1)"
    assert print_last_expression("x = 1") == "x = 1"
    assert repair_code("print(52)}") == "print(52)"
    assert repair_code("d = {1: 2}") == "d = {1: 2}"
    assert repair_code("def f(:") == "def f(:"


@needs_bwrap
def test_python_tool_runs_in_the_sandbox() -> None:
    python = make_python_tool()
    assert python.run({"code": "import math\nx = math.factorial(5)\nx"}).content == "120"
    blocked = python.run({"code": "import os\nos.system('id')"}).content
    assert "violation: blocked by the sandbox: starting other programs is not allowed" in blocked
    failed = python.run({"code": "raise ValueError('boom')"}).content
    assert "ValueError: boom" in failed


def test_current_datetime() -> None:
    out = current_datetime.run({"timezone": "Asia/Shanghai"})
    assert out.ok and "+08:00" in out.content and "Asia/Shanghai" in out.content
    wrong = current_datetime.run({"timezone": "Europe/Berln"})
    assert "Did you mean 'Europe/Berlin'" in wrong.content


def test_file_tools_read_inside_and_refuse_escapes(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("line 1\nline 2\nline 3\n", encoding="utf-8")
    (root / "sub" / "中文.md").write_text("你好", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("top secret", encoding="utf-8")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    read_file, list_files = make_file_tools(root)
    assert read_file.run({"path": "notes.txt", "start_line": 2, "max_lines": 1}).content.startswith("line 2\n[... 1 more lines")
    assert read_file.run({"path": "sub/中文.md"}).content == "你好"
    assert list_files.run({}).content.splitlines() == ["sub/", "link", "notes.txt"]
    for escape in ("../secret.txt", str(tmp_path / "secret.txt"), "link", "sub/../../secret.txt", "/etc/passwd"):
        out = read_file.run({"path": escape})
        assert "outside the allowed folder" in out.content, escape
        assert "top secret" not in out.content
    assert "outside the allowed folder" in list_files.run({"folder": ".."}).content
    with pytest.raises(ConfigError, match="does not exist"):
        make_file_tools(tmp_path / "missing")


class ListRetriever:
    def __init__(self) -> None:
        self.queries: list[tuple[str, int]] = []

    def retrieve(self, query: str, k: int) -> list[Hit]:
        self.queries.append((query, k))
        hits = [Hit("c1", "Attention lets every token look at every other token.", 0.9, {"source": "book/ch2.md", "page": 3}),
                Hit("c2", "Transformers stack attention layers.", 0.5, {"source": "book/ch3.md"})]
        return hits[:k]


def test_knowledge_search_tool_formats_numbered_hits_with_sources() -> None:
    retriever = ListRetriever()
    search = make_knowledge_search_tool(retriever, k=2)
    out = search.run({"query": "attention"})
    assert out.content.splitlines() == [
        "[1] (book/ch2.md, page 3) Attention lets every token look at every other token.",
        "[2] (book/ch3.md) Transformers stack attention layers.",
    ]
    assert retriever.queries == [("attention", 2)]
    assert "No results" in make_knowledge_search_tool(lambda: type("E", (), {"retrieve": lambda s, q, k: []})()).run({"query": "x"}).content


def test_knowledge_base_tool_opens_the_base_lazily_through_core_rag(monkeypatch: pytest.MonkeyPatch) -> None:
    import core.rag

    opened: list[str] = []

    def open_retriever(name: str) -> ListRetriever:
        opened.append(name)
        return ListRetriever()

    monkeypatch.setattr(core.rag, "open_retriever", open_retriever)
    search = knowledge_base_tool("book")
    assert opened == []  # building the tool opens nothing
    assert "[1] (book/ch2.md" in search.run({"query": "attention", "top_k": 1}).content
    search.run({"query": "again"})
    assert opened == ["book"]  # opened once, at the first search
    monkeypatch.setattr(core.rag, "open_retriever", lambda name: object())
    with pytest.raises(ConfigError, match="no retrieve"):
        knowledge_tools.open_knowledge_base("broken")


def test_resolve_tools_by_name_and_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_agent_tools.py").write_text(
        "from core.tools import tool\n\n"
        "def shout(text: str) -> str:\n    '''Upper-case a text.\n\n    Args:\n        text: what to shout.\n    '''\n    return text.upper()\n\n"
        "@tool\ndef whisper(text: str) -> str:\n    '''Lower-case a text.'''\n    return text.lower()\n\n"
        "BOTH = [shout, whisper]\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_agent_tools", None)
    tools = resolve_tools(["calculator,datetime", "my_agent_tools:shout"], files_root=tmp_path)
    assert [t.name for t in tools] == ["calculator", "current_datetime", "shout", "read_file", "list_files"]
    assert tools[2].run({"text": "hi"}).content == "HI"
    assert tools[2].parameters["properties"]["text"]["description"] == "what to shout."
    assert [t.name for t in load_tool("my_agent_tools:BOTH")] == ["shout", "whisper"]
    with pytest.raises(ConfigError, match="Did you mean 'calculator'"):
        resolve_tools(["calculater"])
    with pytest.raises(ConfigError, match="has no 'shoot'"):
        load_tool("my_agent_tools:shoot")
    with pytest.raises(ConfigError, match="cannot import"):
        load_tool("no_such_module_xyz:tool")
    with pytest.raises(ConfigError, match="--kb"):
        resolve_tools(["kb"])


def test_toolbox_refuses_duplicates_and_reports_unknown_tools() -> None:
    with pytest.raises(ConfigError, match="two tools"):
        Toolbox([calculator, calculator])
    box = Toolbox([calculator])
    out = box.call("calc", {"expression": "1"})
    assert out.fault == "unknown_tool" and "Did you mean 'calculator'" in out.content


def test_langchain_adapter_round_trip() -> None:
    lc = to_langchain(calculator)
    assert lc.name == "calculator"
    assert lc.invoke({"expression": "6 * 7"}) == "42"
    assert "expression" in lc.args
    assert lc.invoke({"expression": "1/0"}).startswith("Error calling calculator")
    back = from_langchain(lc)
    assert isinstance(back, Tool) and back.parameters["required"] == ["expression"]
    assert back.run({"expression": "2 + 2"}).content == "4"
    schema_tool = Tool.from_schema("double", "Double n.", {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}, lambda n: n * 2)
    assert to_langchain(schema_tool).invoke({"n": 4}) == "8"


def test_small_model_slips_are_tolerated() -> None:
    assert repair_code("180 - 60 = 120") == "180 - 60"
    assert repair_code("x = 5") == "x = 5"
    assert calculator.run({"expression": "180 - 60 = 120"}).content == "120"
    # Schema words copied next to correct arguments are dropped; a call missing its argument still fails.
    assert calculator.run({"expression": "2 + 2", "type": "string"}).content == "4"
    wrong = calculator.run({"expr": "2 + 2", "type": "string"})
    assert "missing required argument 'expression'" in wrong.content and "unexpected argument 'type'" in wrong.content
    strict = Tool.from_function(lambda expression: expression, name="echo")
    strict.lenient = False
    assert strict.run({"expression": "a", "type": "string"}).fault == "invalid_arguments"
