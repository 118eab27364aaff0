"""Extractors on hand-checked cases (the expected values were worked out by hand from lm-eval's semantics)."""

from __future__ import annotations

import pytest

from evaluation.extract import INVALID, choice_letter, code_block, extract_all, last_number, regex, run_pipeline
from evaluation.task import FilterStep
from llm_backend.errors import ConfigError

GSM_STRICT = r"#### (\-?[0-9\.\,]+)"
GSM_FLEX = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She makes 9 * 2 = $18.\n#### 18", "18"),
        ("#### -3", "-3"),
        ("#### 1,234.5", "1,234.5"),
        ("first #### 5 then #### 7", "5"),  # group_select 0: the first match
        ("the answer is 18", INVALID),
        ("####18", INVALID),  # the space is required
    ],
)
def test_gsm8k_strict(text: str, expected: str) -> None:
    assert regex(text, pattern=GSM_STRICT) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 + 4 = 7 eggs, so $14.", "$14."),  # last match, the regex keeps $ and the period (the metric strips them)
        ("I think 5", "5"),  # single digit: second alternative
        ("x = 12 and y = 3", "3"),
        ("no numbers here", INVALID),
        ("#### 1,000", "1,000"),
    ],
)
def test_gsm8k_flexible(text: str, expected: str) -> None:
    assert regex(text, pattern=GSM_FLEX, group_select=-1) == expected


def test_regex_tuple_takes_first_nonempty_group_and_strips() -> None:
    assert regex("a= 42 ", pattern=r"(b)?=( 42 )") == "42"


def test_regex_group_select_out_of_range_is_fallback() -> None:
    assert regex("1 2", pattern=r"\d", group_select=5, fallback="none") == "none"


def test_regex_flags() -> None:
    assert regex("ANSWER: b", pattern=r"answer: (\w)", flags="i") == "b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("It costs $1,234.50.", "1234.50"), ("-7 degrees", "-7"), ("from 3 to 10.", "10"), ("none", INVALID)],
)
def test_last_number(text: str, expected: str) -> None:
    assert last_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("The answer is (B).", "B"), ("Answer: C", "C"), ("A", "A"), ("Because of DNA, the answer is D", "D"), ("none", INVALID)],
)
def test_choice_letter(text: str, expected: str) -> None:
    assert choice_letter(text) == expected


def test_code_block_prefers_python_fence() -> None:
    text = "Here:\n```text\nnot code\n```\n```python\ndef f():\n    return 1\n```\nDone."
    assert code_block(text) == "def f():\n    return 1\n"


def test_code_block_unterminated_fence_and_plain_text() -> None:
    assert code_block("```python\ndef f():\n    return 2") == "def f():\n    return 2"
    assert code_block("def g(): pass") == "def g(): pass"
    assert code_block("```\nx = 1\n```") == "x = 1\n"


def test_pipeline_order_and_lm_eval_spelling() -> None:
    steps = [FilterStep(function="regex", regex_pattern=r"answer is (\w+)"), FilterStep(function="lowercase")]
    assert run_pipeline("The answer is PARIS", steps) == "paris"


def test_extract_all_without_filters_returns_text() -> None:
    assert extract_all("raw", {}) == {"none": "raw"}


def test_unknown_filter_says_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="did you mean 'regex'|Did you mean 'regex'"):
        run_pipeline("x", [FilterStep(function="regexp")])
