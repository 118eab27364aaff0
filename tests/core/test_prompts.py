"""The one prompt environment and the versioned YAML loader shared by RAG, agents and evaluation."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from core.agent.prompts import prompts, render
from core.prompts import ENV, compile_expression, load_prompt_file, render_template
from core.rag.prompts import load_template
from evaluation.prompts import render as eval_render
from llm_backend.errors import ConfigError


def test_a_missing_variable_raises_instead_of_rendering_empty() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_template("Q: {{ questoin }}", question="hi")
    with pytest.raises(jinja2.UndefinedError):
        compile_expression("a + b")(a=1)


def test_the_final_newline_is_kept_as_lm_eval_renders() -> None:
    assert render_template("about {{ s }}.\n", s="x") == "about x.\n"
    assert ENV.keep_trailing_newline and not ENV.autoescape


def test_rag_agent_and_evaluation_render_with_the_one_environment() -> None:
    source = "{{ x }}<{{ y | default('d') }}>\n"
    assert load_template("answer").render("en", "quote", sentence="s", number=1)  # RAG goes through it and works
    assert eval_render(source, {"x": "a"}) == "a<d>\n"
    assert render_template(source, x="a") == "a<d>\n"
    assert render("task", task="T") == render_template(prompts()["task"], task="T").strip()


def test_a_prompt_file_gives_its_version_and_mapping(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 3\nhello: 'Hi {{ name }}'\n", encoding="utf-8")
    loaded = load_prompt_file(path)
    assert loaded.version == 3 and loaded.data["hello"] == "Hi {{ name }}"


@pytest.mark.parametrize(
    ("text", "message"),
    [("hello: [", "not valid YAML"), ("hello: hi\n", "must be a mapping with a version"), ("- 1\n", "must be a mapping"),
     ("version: two\n", "must be a whole number")],
)
def test_a_bad_prompt_file_says_which_file_and_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_prompt_file(path, what="agent prompts")
    assert str(path) in str(info.value) and "agent prompts" in str(info.value)


def test_packaged_prompt_files_carry_a_version() -> None:
    assert isinstance(prompts()["version"], int)
    assert load_template("answer").version >= 1 and load_template("rewrite").version >= 1
