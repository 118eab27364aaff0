"""Official BFCL verdicts for given model outputs; runs in ``.venv-bench`` where ``bfcl-eval`` is installed with
``--no-deps`` (its full dependency set pulls a CUDA torch). Called by ``eval_fidelity.py``.

Input: a JSON file ``{"data_dir": ..., "items": [{"id", "category", "output", "system_prompt"[, "key"]}]}``.
Output (stdout): ``{"verdicts": {key or id: bool}, "prompt_mismatches": [ids]}`` (``key`` lets a test judge several
outputs for one question).

bfcl-eval's checker module imports its model registry, which imports every provider SDK (anthropic, google,
mistral, ...); none of them is used by the checker, so missing ones are replaced by empty stub modules. The
decoder and checker functions themselves are bfcl-eval's, untouched.
"""

from __future__ import annotations

import copy
import importlib.abc
import importlib.machinery
import json
import sys
import types
from typing import Any
from unittest import mock


def _stub_attribute(module: str, name: str) -> Any:
    """A class for a capitalised name (it may be a base class: a mock there is a metaclass conflict), else a mock."""
    if name[:1].isupper():
        return type(name, (), {
            "__module__": module,
            "__init__": lambda self, *args, **kwargs: None,
            "__getattr__": lambda self, attr: mock.MagicMock(name=f"{module}.{name}.{attr}"),
        })
    return mock.MagicMock(name=f"{module}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolve the named missing packages (and their submodules) to stubs whose attributes are mocks."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []  # type: ignore[attr-defined]
        module.__getattr__ = lambda name: _stub_attribute(spec.name, name)  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        payload = json.load(fh)
    stubs = _StubFinder()
    sys.meta_path.append(stubs)
    for _ in range(100):  # stub each missing provider SDK the model registry imports, one at a time
        try:
            import bfcl_eval.eval_checker.ast_eval.ast_checker  # noqa: F401
            break
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.startswith("bfcl_eval"):
                raise
            stubs.names.add(exc.name.split(".")[0])
            for mod in [m for m in sys.modules if m.startswith("bfcl_eval")]:
                del sys.modules[mod]
    from bfcl_eval.constants.default_prompts import DEFAULT_SYSTEM_PROMPT_FORMAT
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.model_handler.utils import default_decode_ast_prompting, formulate_system_prompt
    from bfcl_eval.utils import (
        _func_doc_language_specific_pre_processing,
        is_empty_output,
        is_function_calling_format_output,
    )

    data_dir = payload["data_dir"]
    entries: dict[str, dict[str, Any]] = {}
    answers: dict[str, Any] = {}
    for category in {i["category"] for i in payload["items"]}:
        with open(f"{data_dir}/BFCL_v4_{category}.json", encoding="utf-8") as fh:
            for line in fh:
                e = json.loads(line)
                entries[e["id"]] = e
        try:
            with open(f"{data_dir}/possible_answer/BFCL_v4_{category}.json", encoding="utf-8") as fh:
                for line in fh:
                    a = json.loads(line)
                    answers[a["id"]] = a["ground_truth"]
        except FileNotFoundError:
            pass

    model_name = "qwen3-8b"  # a prompting ("Prompt") model in the registry: function names are not rewritten
    verdicts: dict[str, bool] = {}
    mismatches: list[str] = []
    for item in payload["items"]:
        entry, category, output = entries[item["id"]], item["category"], item["output"]
        key = item.get("key", item["id"])
        functions_with_hint = _func_doc_language_specific_pre_processing(copy.deepcopy(entry["function"]), category)
        if formulate_system_prompt(DEFAULT_SYSTEM_PROMPT_FORMAT, functions_with_hint) != item.get("system_prompt") and item["id"] not in mismatches:
            mismatches.append(item["id"])
        if "irrelevance" in category:
            try:
                decoded = default_decode_ast_prompting(output)
                has_call = not is_empty_output(decoded)
            except Exception:
                has_call = False
            verdicts[key] = not has_call
            continue
        try:
            decoded = default_decode_ast_prompting(output)
        except Exception:
            verdicts[key] = False
            continue
        if not is_function_calling_format_output(decoded):
            verdicts[key] = False
            continue
        result = ast_checker(entry["function"], decoded, answers[item["id"]], Language.PYTHON, category, model_name)
        verdicts[key] = bool(result["valid"])
    json.dump({"verdicts": verdicts, "prompt_mismatches": mismatches}, sys.stdout)


if __name__ == "__main__":
    main()
