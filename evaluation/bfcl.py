"""BFCL (Berkeley Function Calling Leaderboard) for Python categories: prompts, output decoding and the AST checker.

This mirrors ``bfcl-eval`` 2026.3.23 (``bfcl_eval/model_handler/utils.py`` and
``bfcl_eval/eval_checker/ast_eval/ast_checker.py``) so that our verdict on a model output equals the official one;
``benchmarks/eval_fidelity.py`` checks that on real outputs. Two deliberate differences, both on outputs no
well-formed answer produces: arithmetic in arguments is evaluated only over literals (the official decoder calls
``eval`` on model text), and only Python categories are supported (no Java/JavaScript type converters).

Two ways to ask: ``prompt`` mode (BFCL's default system prompt; the model answers ``[func(a=1), ...]`` as text) and
``fc`` mode (native tool calls through the chat API's ``tools``).
"""

from __future__ import annotations

import ast
import copy
import json
import operator
import re
from collections.abc import Callable
from typing import Any

# -- prompts -------------------------------------------------------------------------------------------------------

PYTHON_HINT = " Note that the provided function is in Python 3 syntax."

# BFCL's DEFAULT_SYSTEM_PROMPT_FORMAT: ret_fmt=python, no tool-call tag, JSON function docs, plaintext, classic.
_SYSTEM_PROMPT = (
    "You are an expert in composing functions."
    "You are given a question and a set of possible functions. Based on the question, you will need to make one or more "
    "function/tool calls to achieve the purpose. If none of the functions can be used, point it out. If the given question "
    "lacks the parameters required by the function, also point it out."
    "\n\n"
    "You should only return the function calls in your response.\n\nIf you decide to invoke any of the function(s), you "
    "MUST put it in the format of [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]."
    "  You SHOULD NOT include any other text in the response."
    "\n\n"
    "At each turn, you should try your best to complete the tasks requested by the user within the current turn. Continue "
    "to output functions to call until you have fulfilled the user's request to the best of your ability. Once you have no "
    "more functions to call, the system will consider the current turn complete and proceed to the next turn or task."
    "\n\n"
    "Here is a list of functions in json format that you can invoke.\n{functions}\n"
)

GORILLA_TO_OPENAPI = {
    "integer": "integer", "number": "number", "float": "number", "string": "string", "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "dict": "object", "object": "object", "tuple": "array", "any": "string",
    "byte": "integer", "short": "integer", "long": "integer", "double": "number", "char": "string", "ArrayList": "array",
    "Array": "array", "HashMap": "object", "Hashtable": "object", "Queue": "array", "Stack": "array",
}


def with_python_hint(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function docs as BFCL shows them to the model for Python categories (a hint appended to each description)."""
    out = copy.deepcopy(functions)
    for item in out:
        item["description"] = item.get("description", "") + PYTHON_HINT
    return out


def system_prompt(functions: list[dict[str, Any]]) -> str:
    """BFCL's default system prompt with the function docs as indented JSON."""
    return _SYSTEM_PROMPT.format(functions=json.dumps(functions, indent=4))


def prompt_messages(question: list[dict[str, Any]], functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for prompt mode: BFCL's system prompt first (merged into a system message the question has)."""
    messages = copy.deepcopy(question)
    prompt = system_prompt(functions)
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = prompt + "\n\n" + messages[0]["content"]
    else:
        messages.insert(0, {"role": "system", "content": prompt})
    return messages


def _cast_to_openai_type(properties: dict[str, Any]) -> dict[str, Any]:
    for key, value in properties.items():
        if "type" not in value:
            properties[key]["type"] = "string"
        else:
            var_type = value["type"]
            if var_type == "float":
                properties[key]["format"] = "float"
                properties[key]["description"] = properties[key].get("description", "") + " This is a float type value."
            properties[key]["type"] = GORILLA_TO_OPENAPI.get(var_type, "string")
        if properties[key]["type"] in ("array", "object"):
            if "properties" in properties[key]:
                properties[key]["properties"] = _cast_to_openai_type(properties[key]["properties"])
            elif "items" in properties[key]:
                items = properties[key]["items"]
                items["type"] = GORILLA_TO_OPENAPI[items["type"]]
                if items["type"] == "array" and "items" in items:
                    items["items"]["type"] = GORILLA_TO_OPENAPI[items["items"]["type"]]
                elif items["type"] == "object" and "properties" in items:
                    items["properties"] = _cast_to_openai_type(items["properties"])
    return properties


def to_openai_tools(functions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BFCL function docs as OpenAI ``tools`` (``.`` in names becomes ``_``, BFCL types become JSON Schema types)."""
    tools = []
    for item in copy.deepcopy(functions):
        item["name"] = re.sub(r"\.", "_", item["name"])
        item["parameters"]["type"] = "object"
        item["parameters"]["properties"] = _cast_to_openai_type(item["parameters"].get("properties", {}))
        tools.append({"type": "function", "function": item})
    return tools


# -- decoding ------------------------------------------------------------------------------------------------------

_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


def _literal_arith(node: ast.AST) -> Any:
    """Evaluate arithmetic over literals only (never arbitrary code)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal_arith(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _literal_arith(node.left), _literal_arith(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(right, int | float) and abs(right) > 1000:
            raise ValueError("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    raise ValueError(f"not a literal expression: {ast.unparse(node)}")


def _resolve_value(value: ast.AST) -> Any:
    """bfcl ``resolve_ast_by_type``."""
    if isinstance(value, ast.Constant):
        return "..." if value.value is Ellipsis else value.value
    if isinstance(value, ast.UnaryOp):
        if not isinstance(value.operand, ast.Constant):
            raise ValueError(f"unsupported unary operand: {ast.unparse(value)}")
        operand: Any = value.operand.value
        return -operand  # as the official decoder: any unary operator on a constant negates it
    if isinstance(value, ast.List):
        return [_resolve_value(v) for v in value.elts]
    if isinstance(value, ast.Dict):
        return {_resolve_value(k) if k is not None else None: _resolve_value(v) for k, v in zip(value.keys, value.values, strict=True)}
    if isinstance(value, ast.BinOp):
        return _literal_arith(value)
    if isinstance(value, ast.Name):
        return value.id
    if isinstance(value, ast.Call):
        return ast.unparse(value) if not value.keywords else _resolve_call(value)
    if isinstance(value, ast.Tuple):
        return tuple(_resolve_value(v) for v in value.elts)
    if isinstance(value, ast.Subscript):
        return ast.unparse(value.value) + "[" + ast.unparse(value.slice) + "]"
    raise ValueError(f"Unsupported AST type: {type(value)}")


def _resolve_call(elem: ast.Call) -> dict[str, dict[str, Any]]:
    parts = []
    func: ast.AST = elem.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    name = ".".join(reversed(parts))
    return {name: {kw.arg: _resolve_value(kw.value) for kw in elem.keywords if kw.arg is not None}}


def decode_python_calls(text: str) -> list[dict[str, dict[str, Any]]]:
    """bfcl ``default_decode_ast_prompting``: ``"[f(a=1), g(b='x')]"`` -> ``[{"f": {"a": 1}}, {"g": {"b": "x"}}]``.
    Raises ``ValueError`` / ``SyntaxError`` when the text is not a list of calls."""
    text = text.strip("`\n ")
    if not text.startswith("["):
        text = "[" + text
    if not text.endswith("]"):
        text = text + "]"
    parsed = ast.parse(text.strip().strip("'"), mode="eval")
    if isinstance(parsed.body, ast.Call):
        return [_resolve_call(parsed.body)]
    elts = getattr(parsed.body, "elts", None)
    if elts is None:
        raise ValueError("not a list of function calls")
    calls = []
    for elem in elts:
        if not isinstance(elem, ast.Call):
            raise ValueError("not a list of function calls")
        calls.append(_resolve_call(elem))
    return calls


def decode_tool_calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """Native tool calls (``{"name", "arguments": json}``) to BFCL's decoded form."""
    return [{c["name"]: json.loads(c["arguments"]) if isinstance(c["arguments"], str) else c["arguments"]} for c in tool_calls]


def is_call_list(decoded: Any) -> bool:
    """bfcl ``is_function_calling_format_output``."""
    if not isinstance(decoded, list):
        return False
    return all(isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), dict) for item in decoded)


def is_empty(decoded: Any) -> bool:
    """bfcl ``is_empty_output``: no call at all (what an irrelevance question wants)."""
    if not is_call_list(decoded):
        return True
    return len(decoded) == 0 or (len(decoded) == 1 and len(decoded[0]) == 0)


# -- checking ------------------------------------------------------------------------------------------------------

PYTHON_TYPES: dict[str, type] = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list, "dict": dict, "any": str}
NESTED_TYPES = ("array", "tuple")


def _fail(error: str, error_type: str) -> dict[str, Any]:
    return {"valid": False, "error": [error], "error_type": error_type}


def _possible_answer_type(possible: list[Any]) -> type | None:
    for answer in possible:
        if answer != "":
            return type(answer)
    return None


def _type_check(param: str, value: Any, possible: list[Any], expected_desc: str, expected: type, nested: type | None) -> dict[str, Any]:
    is_variable = False
    possible_type = _possible_answer_type(possible)
    if possible_type is not None and possible_type != expected:
        is_variable = True
    if type(value) is expected:
        value = list(value) if isinstance(value, list | tuple) else value
        if nested is None:
            return {"valid": True, "error": [], "is_variable": is_variable}
        for item in possible:
            ok = True
            if isinstance(item, list):
                for v in value:
                    if not _type_check(param, v, item, str(nested), nested, None)["valid"]:
                        ok = False
                        break
            if ok:
                return {"valid": True, "error": [], "is_variable": is_variable}
    if possible_type is not None and type(value) is possible_type:
        return {"valid": True, "error": [], "is_variable": True}
    return {**_fail(f"Incorrect type for parameter {param!r}. Expected type {expected_desc}, got {type(value).__name__}.", "type_error:simple"), "is_variable": False}


def standardize(text: str) -> str:
    """bfcl ``standardize_string``: drop spaces and ``,./-_*^``, lower-case, single to double quotes."""
    return re.sub(r"[ \,\.\/\-\_\*\^]", "", text).lower().replace("'", '"')


def _string_check(param: str, value: str, possible: list[Any]) -> dict[str, Any]:
    if standardize(value) not in [standardize(p) for p in possible if isinstance(p, str)]:
        return _fail(f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible}.", "value_error:string")
    return {"valid": True, "error": []}


def _list_check(param: str, value: list[Any], possible: list[Any]) -> dict[str, Any]:
    std_value = [standardize(v) if isinstance(v, str) else v for v in value]
    std_possible = [[standardize(x) if isinstance(x, str) else x for x in p] for p in possible]
    if std_value not in std_possible:
        return _fail(f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible}.", "value_error:list/tuple")
    return {"valid": True, "error": []}


def _dict_check(param: str, value: dict[str, Any], possible_answers: list[Any]) -> dict[str, Any]:
    result: dict[str, Any] = _fail("no possible answer", "dict_checker:unclear")
    for possible in possible_answers:
        if possible == "":
            continue
        result = {"valid": False, "error": [], "error_type": "dict_checker:unclear"}
        ok = True
        for key, v in value.items():
            if key not in possible:
                result = _fail(f"Unexpected dict key parameter: '{key}'.", "value_error:dict_key")
                ok = False
                break
            std_v = standardize(v) if isinstance(v, str) else v
            std_possible = [standardize(x) if isinstance(x, str) else x for x in possible[key]]
            if std_v not in std_possible:
                result = _fail(f"Invalid value for parameter {key!r}: {v!r}.", "value_error:dict_value")
                ok = False
                break
        for key, v in possible.items():
            if key not in value and "" not in v:
                result = _fail(f"Missing dict key parameter: '{key}'.", "value_error:dict_key")
                ok = False
                break
        if ok:
            return {"valid": True, "error": []}
    return result


def _list_dict_check(param: str, value: list[Any], possible_answers: list[Any]) -> dict[str, Any]:
    result = _fail("no possible answer", "list_dict_checker:unclear")
    for answer in possible_answers:
        ok = True
        if len(value) != len(answer):
            result = _fail("Wrong number of dictionaries in the list.", "value_error:list_dict_count")
            continue
        for i, item in enumerate(value):
            result = _dict_check(param, item, [answer[i]])
            if not result["valid"]:
                ok = False
                break
        if ok:
            return {"valid": True, "error": []}
    return result


def check_call(func_description: dict[str, Any], model_output: dict[str, Any], possible_answer: dict[str, Any], *, underscore_names: bool = False) -> dict[str, Any]:
    """bfcl ``simple_function_checker`` for Python: one decoded call against one ground-truth call."""
    possible = next(iter(possible_answer.values()))
    func_name = func_description["name"]
    param_details = func_description["parameters"]["properties"]
    required = func_description["parameters"].get("required", [])
    if underscore_names and "." in func_name:
        func_name = re.sub(r"\.", "_", func_name)
    if func_name not in model_output:
        return _fail(f"Function name {func_name!r} not found in model output.", "simple_function_checker:wrong_func_name")
    params = model_output[func_name]
    for p in required:
        if p not in params:
            return _fail(f"Missing required parameter: {p!r}.", "simple_function_checker:missing_required")
    for param, value in params.items():
        if param not in param_details or param not in possible:
            return _fail(f"Unexpected parameter: {param!r}.", "simple_function_checker:unexpected_param")
        expected_desc = param_details[param]["type"]
        expected = PYTHON_TYPES[expected_desc]
        nested = PYTHON_TYPES[param_details[param]["items"]["type"]] if expected_desc in NESTED_TYPES else None
        if expected_desc == "tuple" and type(value) is tuple:
            value = list(value)
        if expected_desc == "float" and type(value) is int:
            value = float(value)
        checked = _type_check(param, value, possible[param], expected_desc, expected, nested)
        if not checked["valid"]:
            return checked
        if not checked["is_variable"]:
            if expected is dict:
                result = _dict_check(param, value, possible[param])
                if not result["valid"]:
                    return result
                continue
            if expected is list and nested is dict:
                result = _list_dict_check(param, value, possible[param])
                if not result["valid"]:
                    return result
                continue
            if expected is str:
                result = _string_check(param, value, possible[param])
                if not result["valid"]:
                    return result
                continue
            if expected is list:
                result = _list_check(param, value, possible[param])
                if not result["valid"]:
                    return result
                continue
        if value not in possible[param]:
            return _fail(f"Invalid value for parameter {param!r}: {value!r}. Expected one of {possible[param]}.", "value_error:others")
    for param in possible:
        if param not in params and "" not in possible[param]:
            return _fail(f"Optional parameter {param!r} not provided and not marked as optional.", "simple_function_checker:missing_optional")
    return {"valid": True, "error": []}


def _find(functions: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((f for f in functions if f["name"] == name), None)


def check_calls(
    functions: list[dict[str, Any]], decoded: list[dict[str, Any]], possible_answer: list[dict[str, Any]], category: str, *, underscore_names: bool = False
) -> dict[str, Any]:
    """bfcl ``ast_checker``: parallel (any order), multiple (one of several functions) or simple."""
    if "parallel" in category:
        if len(decoded) != len(possible_answer):
            return _fail("Wrong number of functions.", "parallel_function_checker_no_order:wrong_count")
        matched: list[int] = []
        for i, answer in enumerate(possible_answer):
            description = _find(functions, next(iter(answer)))
            if description is None:
                return _fail(f"no function doc for {next(iter(answer))}", "parallel_function_checker_no_order:cannot_find_match")
            result: dict[str, Any] = _fail("no candidate", "parallel_function_checker_no_order:cannot_find_match")
            for index, item in enumerate(decoded):
                if index in matched:
                    continue
                result = check_call(description, item, answer, underscore_names=underscore_names)
                if result["valid"]:
                    matched.append(index)
                    break
            if not result["valid"]:
                return _fail(f"Could not find a matching function for index {i} of possible answers.", "parallel_function_checker_no_order:cannot_find_match")
        return {"valid": True, "error": []}
    if "multiple" in category:
        if len(decoded) != len(possible_answer):
            return _fail("Wrong number of functions.", "multiple_function_checker:wrong_count")
        description = _find(functions, next(iter(possible_answer[0])))
        if description is None:
            return _fail("no function doc for the expected call", "multiple_function_checker:wrong_func_name")
        return check_call(description, decoded[0], possible_answer[0], underscore_names=underscore_names)
    if len(decoded) != 1:
        return _fail("Wrong number of functions.", "simple_function_checker:wrong_count")
    return check_call(functions[0], decoded[0], possible_answer[0], underscore_names=underscore_names)


def verdict(
    category: str, functions: list[dict[str, Any]], possible_answer: list[dict[str, Any]] | None, decode: Callable[[], list[dict[str, Any]]], *, underscore_names: bool = False
) -> tuple[bool, dict[str, Any]]:
    """Decode an output and judge it as BFCL's eval runner does; returns ``(valid, details)``."""
    try:
        decoded = decode()
        decode_error = None
    except Exception as exc:  # the model did not write a call list: a miss, or a success for irrelevance
        decoded, decode_error = None, f"{type(exc).__name__}: {exc}"
    if "irrelevance" in category or "relevance" in category:
        has_call = decode_error is None and not is_empty(decoded)
        ok = not has_call if "irrelevance" in category else has_call
        return ok, {"decoded": decoded, "decode_error": decode_error}
    if decode_error is not None:
        return False, {"decoded": None, "error": f"Invalid syntax. Failed to decode AST. {decode_error}", "error_type": "ast_decoder:decoder_failed"}
    if not is_call_list(decoded):
        return False, {"decoded": str(decoded), "error": "Did not output in the specified format.", "error_type": "ast_decoder:decoder_wrong_output_format"}
    assert decoded is not None
    result = check_calls(functions, decoded, possible_answer or [], category, underscore_names=underscore_names)
    return bool(result["valid"]), {"decoded": decoded, **({"error": "; ".join(map(str, result.get("error", []))), "error_type": result.get("error_type")} if not result["valid"] else {})}
