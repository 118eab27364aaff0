"""Task files, the registry and data loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.data import DataNotFoundError, load_task_data
from evaluation.registry import TaskRegistry, user_tasks_dir
from evaluation.task import load_task_file
from llm_backend.errors import ConfigError

BUILTIN = {"gsm8k", "mmlu", "cmmlu", "ceval", "humaneval", "bfcl"}


def test_builtin_tasks_load() -> None:
    tasks = {t.name: t for t in TaskRegistry().all()}
    assert set(tasks) >= BUILTIN
    for task in tasks.values():
        assert task.sha256 and task.version and task.primary_metric


def test_unknown_task_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'gsm8k'"):
        TaskRegistry().get("gsm8")


def test_invalid_task_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversion: 1\nkind: generate\ndata: {format: jsonl, test: t.jsonl}\nprompt: {text: x, taget: y}\nprimary_metric: m\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*prompt.taget"):
        load_task_file(bad)


def test_user_task_dir_overrides_and_extends(tmp_path: Path, tiny) -> None:
    task_file, _ = tiny
    folder = user_tasks_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "tiny.yaml").write_text(task_file.read_text())
    registry = TaskRegistry(tmp_path)
    assert "tiny" in registry.names()
    assert registry.get("tiny").name == "tiny"
    assert registry.get(str(task_file)).name == "tiny"  # by path too


def test_missing_data_dir_names_expected_file() -> None:
    task = TaskRegistry().get("gsm8k")
    with pytest.raises(DataNotFoundError, match=r"--data-dir.*gsm8k/test.jsonl"):
        load_task_data(task, data_dir=None)


def test_missing_file_names_file_and_where(tmp_path: Path) -> None:
    (tmp_path / "gsm8k").mkdir()
    task = TaskRegistry().get("gsm8k")
    with pytest.raises(DataNotFoundError, match=rf"test.jsonl.*{tmp_path}"):
        load_task_data(task, data_dir=tmp_path)


def _write_ceval(root: Path) -> None:
    header = "id,question,A,B,C,D,answer\n"
    for subject in ("computer_network", "logic"):
        (root / "val").mkdir(parents=True, exist_ok=True)
        (root / "dev").mkdir(parents=True, exist_ok=True)
        (root / "val" / f"{subject}_val.csv").write_text(header + "".join(f"{i},{subject} 题{i}？,甲,乙,丙,丁,{'ABCD'[i % 4]}\n" for i in range(3)), encoding="utf-8")
        (root / "dev" / f"{subject}_dev.csv").write_text("id,question,A,B,C,D,answer,explanation\n0,例题,甲,乙,丙,丁,B,因为\n", encoding="utf-8")


def test_ceval_layout_from_user_folder(tmp_path: Path) -> None:
    _write_ceval(tmp_path / "ceval-exam")
    task = TaskRegistry().get("ceval").with_overrides(fewshot={"n": 1})
    data = load_task_data(task, data_dir=None, dataset_dir=tmp_path / "ceval-exam")
    assert data.groups == ["computer_network", "logic"]
    assert [s.id for s in data.samples[:3]] == ["computer_network/0", "logic/0", "computer_network/1"]  # round-robin
    from evaluation.kinds.choice import MultipleChoiceEvaluator

    ev = MultipleChoiceEvaluator(task)
    ev.prepare(data)
    prompt = ev.requests(data.samples[1])[0].body["prompt"]
    assert prompt.startswith("以下是中国关于逻辑学的单项选择题，请选出其中的正确答案。\n\n例题\nA. 甲\nB. 乙\nC. 丙\nD. 丁\n答案： B\n\n")
    assert prompt.endswith("logic 题0？\nA. 甲\nB. 乙\nC. 丙\nD. 丁\n答案： A")


def test_ceval_missing_folder_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="ceval-exam.zip"):
        load_task_data(TaskRegistry().get("ceval"), data_dir=tmp_path)


def test_limit_per_group_then_limit(tmp_path: Path) -> None:
    _write_ceval(tmp_path / "c")
    task = TaskRegistry().get("ceval")
    data = load_task_data(task, data_dir=None, dataset_dir=tmp_path / "c", limit_per_group=2)
    assert sorted(s.id for s in data.samples) == ["computer_network/0", "computer_network/1", "logic/0", "logic/1"]
    assert [s.index for s in data.samples] == [0, 1, 2, 3]
    data = load_task_data(task, data_dir=None, dataset_dir=tmp_path / "c", limit=1)
    assert [s.id for s in data.samples] == ["computer_network/0"]


def test_shared_sets_load(shared_data: Path) -> None:
    registry = TaskRegistry()
    mmlu = load_task_data(registry.get("mmlu"), data_dir=shared_data, limit_per_group=1)
    assert len(mmlu.samples) == 57 and mmlu.samples[0].doc["group_name"] == "abstract algebra"
    cmmlu = load_task_data(registry.get("cmmlu"), data_dir=shared_data, limit=3)
    assert cmmlu.samples[0].doc["group_name"] == "农学" and "Question" in cmmlu.samples[0].doc
    bfcl = load_task_data(registry.get("bfcl"), data_dir=shared_data, limit_per_group=2)
    assert {s.group for s in bfcl.samples} == {"simple_python", "multiple", "parallel", "irrelevance"}
    assert all(s.doc["possible_answer"] is not None for s in bfcl.samples if s.group != "irrelevance")
    he = load_task_data(registry.get("humaneval"), data_dir=None)
    assert len(he.samples) == 164 and he.samples[0].id == "HumanEval/0"
