"""Prompt rendering and few-shot selection."""

from __future__ import annotations

import random

import pytest

from evaluation.data import load_task_data
from evaluation.kinds.choice import MultipleChoiceEvaluator, split_context
from evaluation.kinds.generate import GenerateEvaluator
from evaluation.prompts import Turn, as_messages, as_text, maybe_delimit, render, select_fewshot
from evaluation.registry import TaskRegistry
from evaluation.types import Sample
from llm_backend.errors import ConfigError


def test_render_is_strict() -> None:
    assert render("Q: {{question}}", {"question": "hi"}) == "Q: hi"
    with pytest.raises(ConfigError, match="undefined field.*question"):
        render("Q: {{questoin}}", {"question": "hi"})


def test_render_keeps_trailing_newline() -> None:
    assert render("about {{s}}.\n\n", {"s": "x"}) == "about x.\n\n"


def test_maybe_delimit() -> None:
    assert maybe_delimit("a", "b") == "a b"
    assert maybe_delimit("a\n", "b") == "a\nb"
    assert maybe_delimit(None, "b") == "b"


def test_turns_as_text_and_messages() -> None:
    turns = [Turn("system", "desc"), Turn("user", "Q1", " "), Turn("assistant", "A1", "\n\n"), Turn("user", "Q2")]
    assert as_text(turns) == "descQ1 A1\n\nQ2"
    assert as_messages(turns) == [
        {"role": "system", "content": "desc"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert as_messages(turns, multiturn=False) == [{"role": "system", "content": "desc"}, {"role": "user", "content": "Q1 A1\n\nQ2"}]


def test_gsm8k_prompt_and_random_shots_match_lm_eval_sampler(shared_data) -> None:
    task = TaskRegistry().get("gsm8k")
    data = load_task_data(task, data_dir=shared_data, limit=3)
    shots = select_fewshot(task, data.samples, data.fewshot)
    # lm-eval's default sampler: one Random(1234), sample(train, 5) per evaluated doc, in order.
    rnd = random.Random(1234)
    pool = data.fewshot[None]
    for sample in data.samples:
        assert shots[sample.id] == rnd.sample(pool, 5)
    evaluator = GenerateEvaluator(task)
    evaluator.prepare(data)
    request = evaluator.requests(data.samples[0])[0]
    messages = request.body["messages"]
    assert len(messages) == 11 and messages[-1]["content"] == f"Question: {data.samples[0].doc['question']}\nAnswer:"
    assert messages[1]["role"] == "assistant" and "####" in messages[1]["content"]
    assert request.params == {"max_tokens": 256, "temperature": 0.0, "stop": ["Question:", "</s>", "<|im_end|>"], "seed": 1234}
    assert request.deterministic


def test_shots_with_limit_equal_shots_without_limit(shared_data) -> None:
    task = TaskRegistry().get("gsm8k")
    small = load_task_data(task, data_dir=shared_data, limit=4)
    big = load_task_data(task, data_dir=shared_data, limit=10)
    a = select_fewshot(task, small.samples, small.fewshot)
    b = select_fewshot(task, big.samples, big.fewshot)
    assert all(a[s.id] == b[s.id] for s in small.samples)


def test_mmlu_prompt_matches_lm_eval_template(shared_data) -> None:
    task = TaskRegistry().get("mmlu").with_overrides(fewshot={"n": 2}, data={"include_groups": ["anatomy"]})
    data = load_task_data(task, data_dir=shared_data, limit=1)
    evaluator = MultipleChoiceEvaluator(task)
    evaluator.prepare(data)
    requests = evaluator.requests(data.samples[0])
    doc = data.samples[0].doc
    dev = data.fewshot["anatomy"]

    def block(d: dict) -> str:
        return f"{d['question'].strip()}\nA. {d['choice0']}\nB. {d['choice1']}\nC. {d['choice2']}\nD. {d['choice3']}\nAnswer:"

    context = (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        + "".join(block(d) + " " + "ABCD"[int(d["answer"])] + "\n\n" for d in dev[:2])
        + block(doc)
    )
    assert [r.body["prompt"] for r in requests] == [context + f" {c}" for c in "ABCD"]
    assert all(r.continuation_start == len(context) for r in requests)
    assert requests[0].params == {"max_tokens": 0, "echo": True, "logprobs": 1, "temperature": 0.0}


def test_split_context_moves_trailing_space() -> None:
    assert split_context("Answer: ", "A") == ("Answer:", " A")
    assert split_context("Answer:", " A") == ("Answer:", " A")


def test_first_n_sampler_per_group() -> None:
    from evaluation.task import TaskSpec

    task = TaskSpec.model_validate({
        "name": "t", "version": "1", "kind": "multiple_choice", "data": {"format": "csv", "test": "{group}.csv", "fewshot": "d/{group}.csv"},
        "prompt": {"text": "{{q}}", "choices": ["A", "B"], "target": "0"}, "fewshot": {"n": 1, "sampler": "first_n"}, "primary_metric": "acc",
    })
    samples = [Sample("x/0", 0, {"q": "1"}, "x"), Sample("y/0", 1, {"q": "2"}, "y")]
    shots = select_fewshot(task, samples, {"x": [{"q": "x0"}, {"q": "x1"}], "y": [{"q": "y0"}]})
    assert shots == {"x/0": [{"q": "x0"}], "y/0": [{"q": "y0"}]}
