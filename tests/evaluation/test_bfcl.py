"""BFCL decoding and AST checking on hand-checked cases, plus a reference test against bfcl-eval's checker."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evaluation import bfcl

TRIANGLE = {
    "name": "calculate_triangle_area",
    "description": "Area.",
    "parameters": {"type": "dict", "properties": {"base": {"type": "integer"}, "height": {"type": "integer"}, "unit": {"type": "string"}}, "required": ["base", "height"]},
}
TRIANGLE_GT = [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]


def test_decode_python_calls() -> None:
    assert bfcl.decode_python_calls("[f(a=1, b='x')]") == [{"f": {"a": 1, "b": "x"}}]
    assert bfcl.decode_python_calls("math.hypot(x=4, y=-5)") == [{"math.hypot": {"x": 4, "y": -5}}]
    assert bfcl.decode_python_calls("```\n[f(a=[1, 2], b={'k': 2.5}), g(c=2**3)]\n```") == [{"f": {"a": [1, 2], "b": {"k": 2.5}}}, {"g": {"c": 8}}]
    with pytest.raises(SyntaxError):
        bfcl.decode_python_calls("I cannot help with that.")
    with pytest.raises(ValueError):
        bfcl.decode_python_calls("[f(a=__import__('os').getcwd() + 'x')]")  # never evaluated


@pytest.mark.parametrize(
    ("output", "valid"),
    [
        ("[calculate_triangle_area(base=10, height=5)]", True),
        ("[calculate_triangle_area(base=10, height=5, unit='Units')]", True),  # strings compare case-insensitively
        ("[calculate_triangle_area(base=10, height=6)]", False),
        ("[calculate_triangle_area(base=10)]", False),  # missing required
        ("[calculate_triangle_area(base=10, height=5, color='red')]", False),  # unexpected parameter
        ("[calculate_triangle_area(base='10', height=5)]", False),  # wrong type
        ("[area(base=10, height=5)]", False),
        ("[calculate_triangle_area(base=10, height=5), calculate_triangle_area(base=1, height=1)]", False),  # count
        ("The area is 25.", False),
    ],
)
def test_simple_checker(output: str, valid: bool) -> None:
    ok, _ = bfcl.verdict("simple_python", [TRIANGLE], TRIANGLE_GT, lambda: bfcl.decode_python_calls(output))
    assert ok is valid


def test_float_accepts_int_and_optional_params() -> None:
    fn = {"name": "f", "parameters": {"type": "dict", "properties": {"x": {"type": "float"}, "y": {"type": "integer"}}, "required": ["x"]}}
    gt = [{"f": {"x": [2.0], "y": ["", 3]}}]
    assert bfcl.verdict("simple_python", [fn], gt, lambda: [{"f": {"x": 2}}])[0]
    gt_required_y = [{"f": {"x": [2.0], "y": [3]}}]
    assert not bfcl.verdict("simple_python", [fn], gt_required_y, lambda: [{"f": {"x": 2}}])[0]


def test_parallel_any_order_and_multiple() -> None:
    play = {"name": "play", "parameters": {"type": "dict", "properties": {"artist": {"type": "string"}, "minutes": {"type": "integer"}}, "required": ["artist", "minutes"]}}
    gt = [{"play": {"artist": ["Taylor Swift"], "minutes": [20]}}, {"play": {"artist": ["Maroon 5"], "minutes": [15]}}]
    out = "[play(artist='maroon 5', minutes=15), play(artist='taylor swift', minutes=20)]"
    assert bfcl.verdict("parallel", [play], gt, lambda: bfcl.decode_python_calls(out))[0]
    assert not bfcl.verdict("parallel", [play], gt, lambda: bfcl.decode_python_calls("[play(artist='Maroon 5', minutes=15)]"))[0]
    other = {"name": "stop", "parameters": {"type": "dict", "properties": {}, "required": []}}
    assert bfcl.verdict("multiple", [other, play], gt[:1], lambda: bfcl.decode_python_calls("[play(artist='Taylor Swift', minutes=20)]"))[0]


def test_irrelevance() -> None:
    assert bfcl.verdict("irrelevance", [TRIANGLE], None, lambda: bfcl.decode_python_calls("None of the functions fit."))[0]
    assert bfcl.verdict("irrelevance", [TRIANGLE], None, lambda: bfcl.decode_python_calls("[]"))[0]
    assert not bfcl.verdict("irrelevance", [TRIANGLE], None, lambda: bfcl.decode_python_calls("[calculate_triangle_area(base=1, height=2)]"))[0]


def test_fc_mode_tools_and_underscored_names() -> None:
    tools = bfcl.to_openai_tools([{"name": "math.hypot", "description": "d", "parameters": {"type": "dict", "properties": {"x": {"type": "float", "description": "x"}}, "required": ["x"]}}])
    fn = tools[0]["function"]
    assert fn["name"] == "math_hypot" and fn["parameters"]["type"] == "object"
    assert fn["parameters"]["properties"]["x"] == {"type": "number", "description": "x This is a float type value.", "format": "float"}
    desc = {"name": "math.hypot", "parameters": {"type": "dict", "properties": {"x": {"type": "float"}}, "required": ["x"]}}
    calls = [{"name": "math_hypot", "arguments": '{"x": 3}'}]
    assert bfcl.verdict("simple_python", [desc], [{"math.hypot": {"x": [3.0]}}], lambda: bfcl.decode_tool_calls(calls), underscore_names=True)[0]


def test_prompt_messages_put_system_prompt_first() -> None:
    msgs = bfcl.prompt_messages([{"role": "user", "content": "hi"}], [TRIANGLE])
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("You are an expert in composing functions.You are given")
    assert json.dumps([TRIANGLE], indent=4) in msgs[0]["content"] and msgs[1] == {"role": "user", "content": "hi"}


# -- reference: bfcl-eval's own decoder and checker on the same outputs ------------------------------------------

OUTPUTS = [
    "[calculate_triangle_area(base=10, height=5)]",
    "[calculate_triangle_area(base=10, height=5, unit='units')]",
    "[calculate_triangle_area(base=10.0, height=5)]",
    "calculate_triangle_area(base=10, height=5)",
    "[calculate_triangle_area(base=10)]",
    "Sure! The area is 25 square units.",
    "[]",
    "[math.factorial(number=5)]",
    "[math.hypot(x=4, y=5)]",
    "[math.hypot(x=4, y=5, z=0)]",
    "```python\n[algebra.quadratic_roots(a=1, b=-3, c=2)]\n```",
]


def test_verdicts_equal_bfcl_eval(shared_data: Path, bench_python: Path, tmp_path: Path) -> None:
    from evaluation.data import load_task_data
    from evaluation.registry import TaskRegistry

    task = TaskRegistry().get("bfcl")
    data = load_task_data(task, data_dir=shared_data, limit_per_group=12)
    items: list[dict[str, Any]] = []
    ours: dict[str, bool] = {}
    for sample in data.samples:
        for j, output in enumerate(OUTPUTS):
            key = f"{sample.id}#{j}"
            ok, _ = bfcl.verdict(sample.group or "", list(sample.doc["function"]), sample.doc.get("possible_answer"), lambda o=output: bfcl.decode_python_calls(o))
            ours[key] = ok
            prompt = bfcl.prompt_messages(list(sample.doc["question"][0]), bfcl.with_python_hint(list(sample.doc["function"])))[0]["content"]
            items.append({"id": sample.id, "key": key, "category": sample.group, "output": output, "system_prompt": prompt})
    payload = tmp_path / "items.json"
    payload.write_text(json.dumps({"data_dir": str(shared_data / "bfcl"), "items": items}))
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "_bfcl_reference.py"
    out = subprocess.run([str(bench_python), str(script), str(payload), "--by-key"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    reference = json.loads(out.stdout)
    assert reference["prompt_mismatches"] == []
    assert reference["verdicts"] == ours
    assert any(ours.values()) and not all(ours.values())
