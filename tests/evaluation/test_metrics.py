"""Metrics on hand-checked cases."""

from __future__ import annotations

import math

import pytest

from evaluation import metrics as m

GSM_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]


@pytest.mark.parametrize(
    ("pred", "ref", "expected"),
    [
        ("18", "Janet sells 9 eggs.\n#### 18", 1.0),
        ("$1,000.", "#### 1000", 1.0),
        ("1000.5", "#### 1000", 0.0),
        ("[invalid]", "#### 5", 0.0),
        ("18.", "#### 18", 1.0),
    ],
)
def test_exact_match_gsm8k_normalisation(pred: str, ref: str, expected: float) -> None:
    assert m.exact_match(pred, ref, regexes_to_ignore=GSM_IGNORE, ignore_case=True) == expected


def test_exact_match_options() -> None:
    assert m.exact_match("Paris!", "paris", ignore_case=True, ignore_punctuation=True) == 1.0
    assert m.exact_match("Paris!", "paris", ignore_case=True) == 0.0
    assert m.exact_match("abc123", "abc", ignore_numbers=True) == 1.0


def test_acc_and_acc_norm() -> None:
    assert m.acc([-3.0, -1.0, -2.0], 1) == 1.0
    assert m.acc([-1.0, -1.0], 1) == 0.0  # ties go to the first option, as numpy.argmax
    # acc_norm divides by characters: -4/4 = -1 beats -3/1 = -3
    assert m.acc_norm([-3.0, -4.0], ["a", "abcd"], 1) == 1.0
    assert m.acc([-3.0, -4.0], 1) == 0.0


def test_squad() -> None:
    assert m.squad_normalize("The  Eiffel-Tower!") == "eiffeltower"
    assert m.squad_em("the Eiffel Tower", ["Eiffel Tower"]) == 1.0
    # "in paris france" vs "paris": common 1, precision 1/3, recall 1 -> F1 = 0.5
    assert m.squad_f1("in Paris, France", ["Paris"]) == pytest.approx(0.5)
    assert m.squad_f1("London", ["Paris", "London"]) == 1.0
    assert m.squad_f1("x", []) == 0.0


def test_cmrc() -> None:
    assert m.cmrc_segment("踢爆abc 12") == ["踢", "爆", "abc", "12"]
    assert m.cmrc_em("踢爆。", ["踢爆"]) == 1.0
    # "4分钟内" vs "4分钟": segments [4,分,钟,内] / [4,分,钟]: LCS 3, P 3/4, R 1 -> F1 = 6/7
    assert m.cmrc_f1("4分钟内", ["4分钟"]) == pytest.approx(6 / 7)
    assert m.cmrc_f1("无关", ["踢爆"]) == 0.0


def test_retrieval_metrics() -> None:
    retrieved = ["d3", "d1", "d7", "d2"]
    assert m.recall_at_k(retrieved, ["d1", "d2"], 2) == 0.5
    assert m.recall_at_k(retrieved, ["d1", "d2"], 4) == 1.0
    assert m.mrr(retrieved, ["d1"]) == 0.5
    assert m.mrr(retrieved, ["d9"]) == 0.0
    # gold d1 at rank 2 of k=3: DCG 1/log2(3); ideal 1/log2(2) = 1
    assert m.ndcg_at_k(retrieved, ["d1"], 3) == pytest.approx(1 / math.log2(3))
    assert m.ndcg_at_k(["d1", "d2"], ["d1", "d2"], 2) == pytest.approx(1.0)


def test_pass_at_k() -> None:
    assert m.pass_at_k(1, 1, 1) == 1.0
    assert m.pass_at_k(1, 0, 1) == 0.0
    assert m.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # 1 - C(8,2)/C(10,2) = 1 - 28/45
    assert m.pass_at_k(10, 2, 2) == pytest.approx(1 - 28 / 45)


def test_mean_stderr() -> None:
    assert m.mean_stderr([1.0]) is None
    # values 0,1,0,1: mean .5, sample sd sqrt(1/3), stderr sqrt(1/3)/2
    assert m.mean_stderr([0.0, 1.0, 0.0, 1.0]) == pytest.approx(math.sqrt(1 / 3) / 2)


def test_unknown_metric() -> None:
    from llm_backend.errors import ConfigError

    with pytest.raises(ConfigError, match="exact_match"):
        m.text_metric("exact_mtch")
