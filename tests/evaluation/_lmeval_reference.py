"""Runs inside .venv-bench (lm-eval installed): lm-eval's own prompts, filters and exact match on given inputs.

Usage: python _lmeval_reference.py <request.json>; prints JSON. Used by test_reference_lmeval.py.
Request: {"data_dir", "work", "gsm8k_limit", "mmlu_subjects", "mmlu_limit", "mmlu_fewshot", "texts", "refs"}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import _lmeval


def main() -> None:
    req = json.loads(Path(sys.argv[1]).read_text())
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.tasks import TaskManager, get_task_dict

    work = Path(req["work"])
    gsm = _lmeval.write_gsm8k_task(Path(req["data_dir"]), work)
    _lmeval.write_mmlu_tasks(Path(req["data_dir"]), work)
    tm = TaskManager(include_path=str(work))
    out: dict[str, object] = {}

    task = get_task_dict([gsm], tm)[gsm]
    task.set_fewshot_seed(1234)
    task.build_all_requests(limit=req["gsm8k_limit"], apply_chat_template=True, fewshot_as_multiturn=True,
                            chat_template=lambda history, add_generation_prompt=True: json.dumps(history, ensure_ascii=False))
    out["gsm8k_prompts"] = {str(i.doc_id): json.loads(i.args[0]) for i in task.instances}
    out["gsm8k_gen_kwargs"] = task.instances[0].args[1]

    mmlu: dict[str, list[str]] = {}
    wanted = [f"mmlu_local_{s}" for s in req["mmlu_subjects"]]
    tasks = get_task_dict(wanted, tm)
    for name, t in tasks.items():
        t.set_config("num_fewshot", req["mmlu_fewshot"])
        t.set_fewshot_seed(1234)
        t.build_all_requests(limit=req["mmlu_limit"])
        subject = name[len("mmlu_local_"):]
        for inst in t.instances:
            mmlu.setdefault(f"{subject}/{inst.doc_id}", []).append(inst.args[0] + inst.args[1])
    out["mmlu_prompts"] = mmlu

    strict = RegexFilter(regex_pattern=r"#### (\-?[0-9\.\,]+)")
    flexible = RegexFilter(regex_pattern=r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)
    texts = req["texts"]
    out["strict"] = [r[0] for r in strict.apply([[t] for t in texts], [None] * len(texts))]
    out["flexible"] = [r[0] for r in flexible.apply([[t] for t in texts], [None] * len(texts))]
    ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
    out["em_strict"] = [float(exact_match_hf_evaluate([p], [r], regexes_to_ignore=ignore, ignore_case=True)["exact_match"]) for p, r in zip(out["strict"], req["refs"], strict=True)]
    out["em_flexible"] = [float(exact_match_hf_evaluate([p], [r], regexes_to_ignore=ignore, ignore_case=True)["exact_match"]) for p, r in zip(out["flexible"], req["refs"], strict=True)]
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
