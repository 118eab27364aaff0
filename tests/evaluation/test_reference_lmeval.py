"""Reference tests against lm-evaluation-harness itself (run in .venv-bench): the same prompts (GSM8K chat turns with
the same sampled few-shot examples; MMLU contexts and continuations, 0- and 5-shot), the same extracted answers and
the same exact-match verdicts on hand-picked model outputs. Also checks that our gsm8k.yaml says what lm-eval's does."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from evaluation.data import load_task_data
from evaluation.extract import extract_all
from evaluation.kinds.choice import MultipleChoiceEvaluator
from evaluation.kinds.generate import GenerateEvaluator, score_text
from evaluation.registry import TaskRegistry

TEXTS = [
    "She sells 9 eggs and makes 9 * 2 = $18.\n#### 18",
    "The answer is $1,250.50.",
    "#### -7\nbut then 8",
    "no number at all",
    "4 apples, then 12, finally 30.",
    "#### 3,000",
    "So the total is 5.",
    "Total: 10 + 5 = 15\n#### 15.",
]
REFS = ["x\n#### 18", "y\n#### 1250.50", "z\n#### -7", "w\n#### 0", "v\n#### 30", "u\n#### 3000", "t\n#### 5", "s\n#### 15"]


def test_gsm8k_yaml_matches_lm_eval(bench_python: Path) -> None:
    tasks_dir = subprocess.run([str(bench_python), "-c", "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"], capture_output=True, text=True, check=True).stdout.strip()
    ref = yaml.safe_load((Path(tasks_dir) / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    ours = TaskRegistry().get("gsm8k")
    assert ours.prompt.text == ref["doc_to_text"] and ours.prompt.target == ref["doc_to_target"]
    assert ours.fewshot.n == ref["num_fewshot"] and ours.generation.stop == ref["generation_kwargs"]["until"]
    metric = ref["metric_list"][0]
    spec = ours.metrics[0].args()
    assert spec["regexes_to_ignore"] == metric["regexes_to_ignore"] and spec["ignore_case"] == metric["ignore_case"]
    filters = {f["name"]: f["filter"][0] for f in ref["filter_list"]}
    assert ours.filters["strict-match"][0].args()["pattern"] == filters["strict-match"]["regex_pattern"]
    assert ours.filters["flexible-extract"][0].args()["pattern"] == filters["flexible-extract"]["regex_pattern"]
    assert ours.filters["flexible-extract"][0].args()["group_select"] == filters["flexible-extract"]["group_select"]


def test_prompts_and_extraction_equal_lm_eval(shared_data: Path, bench_python: Path, tmp_path: Path) -> None:
    subjects = ["abstract_algebra", "high_school_geography"]
    request = {"data_dir": str(shared_data), "work": str(tmp_path / "tasks"), "gsm8k_limit": 6, "mmlu_subjects": subjects, "mmlu_limit": 3,
               "mmlu_fewshot": 5, "texts": TEXTS, "refs": REFS}
    req_file = tmp_path / "req.json"
    req_file.write_text(json.dumps(request))
    script = Path(__file__).with_name("_lmeval_reference.py")
    proc = subprocess.run([str(bench_python), str(script), str(req_file)], capture_output=True, text=True, timeout=600,
                          env={"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    ref = json.loads(proc.stdout)

    registry = TaskRegistry()
    gsm = registry.get("gsm8k")
    data = load_task_data(gsm, data_dir=shared_data, limit=6)
    ev = GenerateEvaluator(gsm)
    ev.prepare(data)
    for sample in data.samples:
        assert ev.requests(sample)[0].body["messages"] == ref["gsm8k_prompts"][sample.id]
    assert ref["gsm8k_gen_kwargs"]["until"] == ev.requests(data.samples[0])[0].params["stop"]

    mmlu = registry.get("mmlu").with_overrides(fewshot={"n": 5}, data={"include_groups": subjects})
    mdata = load_task_data(mmlu, data_dir=shared_data, limit_per_group=3)
    mev = MultipleChoiceEvaluator(mmlu)
    mev.prepare(mdata)
    assert len(mdata.samples) == len(ref["mmlu_prompts"]) == 6
    for sample in mdata.samples:
        assert [r.body["prompt"] for r in mev.requests(sample)] == ref["mmlu_prompts"][sample.id]

    for text, gold, strict, flex, em_s, em_f in zip(TEXTS, REFS, ref["strict"], ref["flexible"], ref["em_strict"], ref["em_flexible"], strict=True):
        extracted, metrics = score_text(gsm, text, gold)
        assert extract_all(text, gsm.filters) == {"strict-match": strict, "flexible-extract": flex}
        assert extracted == {"strict-match": strict, "flexible-extract": flex}
        assert metrics == {"exact_match,strict-match": em_s, "exact_match,flexible-extract": em_f}
