"""``@tool``: schemas from type hints and docstrings, validation before the call, faults as observations."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel

from core.tools import Tool, ToolError, tool
from core.tools.docstrings import parse_docstring
from llm_backend.errors import BackendUnavailableError

CALLED: list[dict[str, object]] = []


class Point(BaseModel):
    x: float
    y: float


@tool
def plot(title: str, points: list[Point], style: Literal["line", "dots"] = "line", width: int | None = None) -> str:
    """Draw points on a chart.

    Args:
        title (str): the chart's title.
        points: the points to draw,
            in order.
        style: how to draw them.

    Returns:
        A description of the chart.
    """
    CALLED.append({"title": title, "points": points, "style": style, "width": width})
    return f"{title}: {len(points)} points as {style}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLED.clear()


def test_schema_comes_from_hints_and_google_docstring() -> None:
    spec = plot.to_openai()
    assert spec["type"] == "function"
    fn = spec["function"]
    assert fn["name"] == "plot"
    assert fn["description"] == "Draw points on a chart."
    params = fn["parameters"]
    assert params["required"] == ["title", "points"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["title"] == {"type": "string", "description": "the chart's title."}
    assert props["points"]["description"] == "the points to draw, in order."
    # Nested models are inlined (no $ref), without pydantic's titles.
    item = props["points"]["items"]
    assert item["type"] == "object" and set(item["properties"]) == {"x", "y"} and "title" not in item
    assert props["style"]["enum"] == ["line", "dots"] and props["style"]["default"] == "line"
    assert "$defs" not in json.dumps(params) and "$ref" not in json.dumps(params)


def test_rest_and_numpy_docstrings() -> None:
    rest = parse_docstring("Search.\n\n:param query: what to find\n    in the index\n:type query: str\n:param int k: how many\n:returns: hits")
    assert rest.description == "Search." and rest.params == {"query": "what to find in the index", "k": "how many"}
    numpy = parse_docstring("Do it.\n\nParameters\n----------\nx : int\n    the x\ny : str\n    the y\n\nReturns\n-------\nint")
    assert numpy.description == "Do it." and numpy.params == {"x": "the x", "y": "the y"}


def test_valid_call_converts_arguments_and_formats_the_result() -> None:
    out = plot.run('{"title": "T", "points": [{"x": 1, "y": "2.5"}], "style": "dots"}')
    assert out.ok and out.content == "T: 1 points as dots"
    assert CALLED[0]["points"] == [Point(x=1, y=2.5)]
    assert plot("direct", []) == "direct: 0 points as line"  # still a plain function


def test_invalid_arguments_name_every_problem_and_skip_the_call() -> None:
    out = plot.run({"titel": "T", "points": [{"x": 1}], "style": "bars"})
    assert not out.ok and CALLED == []
    assert out.fault == "invalid_arguments"
    for part in ("missing required argument 'title'", "unexpected argument 'titel'", "points.0.y", "style"):
        assert part in out.content
    assert "plot(" in out.content and "Expected arguments: title, points, style?, width?" in out.content


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"text"'])
def test_malformed_json_is_an_observation(raw: str) -> None:
    out = plot.run(raw)
    assert out.fault == "invalid_arguments" and "plot" in out.content and CALLED == []


def test_a_raising_tool_is_an_observation_with_name_arguments_and_error() -> None:
    @tool
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    out = divide.run({"a": 1, "b": 0})
    assert out.fault == "tool_error"
    assert out.content.startswith('Error calling divide({"a": 1, "b": 0}): ZeroDivisionError')


def test_tool_error_message_is_shown_as_is() -> None:
    @tool
    def picky(word: str) -> str:
        """Refuse everything."""
        raise ToolError(f"{word!r} is not allowed here")

    assert picky.run({"word": "x"}).error == "'x' is not allowed here"


def test_infrastructure_errors_are_raised() -> None:
    @tool
    def remote() -> str:
        """Needs the server."""
        raise BackendUnavailableError("model server not reachable at http://127.0.0.1:9/v1")

    with pytest.raises(BackendUnavailableError):
        remote.run({})


def test_decorator_with_options_and_refusals() -> None:
    @tool(name="add_numbers", description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    assert add.name == "add_numbers" and add.description == "Add two integers."
    assert add.run({"a": "2", "b": 3}).value == 5  # lax conversion of a numeric string
    with pytest.raises(TypeError, match=r"\*args"):

        @tool
        def bad(*args: int) -> int:
            return sum(args)

    with pytest.raises(ValueError, match="OpenAI function-name rule"):
        Tool("has space", "d", {"type": "object"}, None)


def test_tool_from_an_existing_json_schema_is_validated_with_jsonschema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]}
    doubled = Tool.from_schema("double", "Double n.", schema, lambda n: n * 2)
    assert doubled.run({"n": 4}).content == "8"
    bad = doubled.run({"n": 0})
    assert bad.fault == "invalid_arguments"
    assert "argument 'n': 0 is less than the minimum of 1" in bad.content
    assert "required" in doubled.run({}).content
