"""Prompt rendering and few-shot selection, faithful to lm-evaluation-harness.

Templates are Jinja, rendered by the project's one prompt environment (:mod:`core.prompts`): ``StrictUndefined``
(a misspelt field raises instead of rendering as empty) and ``keep_trailing_newline`` (as lm-eval). A prompt is built as a list of :class:`Turn` s (system description,
few-shot question/answer pairs, the question) that renders either as one plain-text prompt (for log-likelihood
scoring through ``/v1/completions``) or as chat messages (few-shot pairs as separate turns, lm-eval's
``--apply_chat_template --fewshot_as_multiturn`` default, or collapsed into one user message).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from core.prompts import compile_expression, compile_template
from evaluation.task import TaskSpec
from evaluation.types import Sample
from llm_backend.errors import ConfigError
from llm_backend.types import Message


def render(template: str, doc: Mapping[str, Any], *, where: str = "template") -> str:
    """Render a Jinja ``template`` over the fields of ``doc``; a missing field raises :class:`ConfigError` naming
    the field and the fields that exist."""
    try:
        return compile_template(template).render(**doc)
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"{where} {template!r} uses an undefined field ({exc.message}); the sample has fields: {', '.join(sorted(doc))}") from exc
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{where} {template!r} is not a valid Jinja template: {exc}") from exc


@dataclass(frozen=True)
class Turn:
    """One piece of a prompt: a role, its text, and the delimiter that follows it in plain-text form."""

    role: str
    content: str
    delimiter: str = ""


def maybe_delimit(prefix: str | None, suffix: str | None, delimiter: str = " ") -> str:
    """Join two strings with ``delimiter`` unless one already has whitespace at the join (lm-eval's rule)."""
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    if prefix[-1].isspace() or suffix[0].isspace():
        return prefix + suffix
    return prefix + delimiter + suffix


# -- per-field rendering -------------------------------------------------------------------------------------------
def doc_text(task: TaskSpec, doc: Mapping[str, Any]) -> str:
    """The question part of a sample (lm-eval ``doc_to_text``)."""
    return render(task.prompt.text, doc, where=f"{task.name}: prompt.text")


def doc_choices(task: TaskSpec, doc: Mapping[str, Any]) -> list[str]:
    """The answer options of a multiple-choice sample (lm-eval ``doc_to_choice``): a fixed list, or a Jinja
    expression evaluating to a list."""
    choices = task.prompt.choices
    if choices is None:
        return []
    if isinstance(choices, list):
        return [render(c, doc, where=f"{task.name}: prompt.choices") for c in choices]
    try:
        value = compile_expression(choices)(**doc)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{task.name}: prompt.choices expression {choices!r} failed: {exc}") from exc
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{task.name}: prompt.choices expression {choices!r} must give a list, got {type(value).__name__}")
    return [str(v) for v in value]


def doc_target(task: TaskSpec, doc: Mapping[str, Any]) -> str | int:
    """The reference answer (lm-eval ``doc_to_target``). For multiple choice, the index of the right option (a
    rendered integer, or an option's text looked up in the choices)."""
    value = render(task.prompt.target, doc, where=f"{task.name}: prompt.target")
    if task.kind == "multiple_choice":
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            return int(stripped)
        choices = doc_choices(task, doc)
        if stripped in choices:
            return choices.index(stripped)
        raise ConfigError(f"{task.name}: target {value!r} is neither an index nor one of the choices {choices}")
    return value


def doc_gold(task: TaskSpec, doc: Mapping[str, Any]) -> str | int:
    """What metrics compare against: ``prompt.gold`` when set, else the target."""
    if task.prompt.gold:
        return render(task.prompt.gold, doc, where=f"{task.name}: prompt.gold")
    return doc_target(task, doc)


def _target_text(task: TaskSpec, doc: Mapping[str, Any]) -> str:
    target = doc_target(task, doc)
    if isinstance(target, int):
        return doc_choices(task, doc)[target]
    return target


# -- few-shot selection ----------------------------------------------------------------------------------------------
def select_fewshot(
    task: TaskSpec, samples: Sequence[Sample], pools: Mapping[str | None, Sequence[Mapping[str, Any]]]
) -> dict[str, list[Mapping[str, Any]]]:
    """The few-shot examples of every sample, by sample id.

    ``random`` reproduces lm-eval's default sampler exactly: one ``random.Random(seed)`` per group, consumed by
    ``sample(pool, n)`` for each evaluated sample in file order (so the first N samples get the same shots as
    lm-eval with ``--limit N``). ``first_n`` takes the first ``n`` of the group's pool.
    """
    n = task.fewshot.n
    if n == 0:
        return {s.id: [] for s in samples}
    wanted = {s.id for s in samples}
    # Walk each group's samples in their original order (their ids carry it), consuming the generator as lm-eval.
    by_group: dict[str | None, list[Sample]] = {}
    for s in samples:
        by_group.setdefault(s.group, []).append(s)
    shots: dict[str, list[Mapping[str, Any]]] = {}
    for group, members in by_group.items():
        pool = list(pools.get(group) or [])
        if len(pool) < n:
            raise ConfigError(f"{task.name}: {n} few-shot examples requested but the few-shot split of {group or 'the task'} has {len(pool)}")
        if task.fewshot.sampler == "first_n":
            for s in members:
                shots[s.id] = pool[:n]
            continue
        rnd = random.Random(task.fewshot.seed)
        same_split = task.data.fewshot == task.data.test
        for s in sorted(members, key=_original_order):
            # With the few-shot split equal to the test split, draw one extra and drop the sample itself (lm-eval).
            picked = [d for d in rnd.sample(pool, n + 1) if d != s.doc][:n] if same_split else rnd.sample(pool, n)
            if s.id in wanted:
                shots[s.id] = picked
    return shots


def _original_order(sample: Sample) -> int:
    # Ids are "<row>" or "<group>/<row>" unless the task names an id field; fall back to the load order.
    tail = sample.id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else sample.index


# -- building the prompt -------------------------------------------------------------------------------------------
def build_turns(task: TaskSpec, doc: Mapping[str, Any], shots: Sequence[Mapping[str, Any]]) -> list[Turn]:
    """System/description, few-shot pairs and the question, as lm-eval's ``fewshot_context`` builds them."""
    turns: list[Turn] = []
    description = render(task.prompt.description, doc, where=f"{task.name}: prompt.description") if task.prompt.description else ""
    system = render(task.prompt.system, doc, where=f"{task.name}: prompt.system") if task.prompt.system else None
    system_text = maybe_delimit(system, description, task.prompt.fewshot_delimiter)
    if system_text:
        turns.append(Turn("system", system_text))
    for shot in shots:
        turns.append(Turn("user", doc_text(task, shot), task.prompt.target_delimiter))
        turns.append(Turn("assistant", _target_text(task, shot), task.prompt.fewshot_delimiter))
    turns.append(Turn("user", doc_text(task, doc), ""))
    return turns


def as_text(turns: Sequence[Turn]) -> str:
    """The plain-text prompt: every turn followed by its delimiter."""
    return "".join(t.content + t.delimiter for t in turns)


def as_messages(turns: Sequence[Turn], *, multiturn: bool = True) -> list[Message]:
    """Chat messages. ``multiturn``: few-shot pairs stay separate user/assistant turns; otherwise everything after
    the system message collapses into one user message (lm-eval ``multiturn_to_singleturn``)."""
    if multiturn:
        return [{"role": t.role, "content": t.content} for t in turns]
    system = [t for t in turns[:1] if t.role == "system"]
    rest = list(turns[len(system):])
    text = "".join(t.content + t.delimiter for t in rest[:-1]) + rest[-1].content
    return [{"role": "system", "content": system[0].content}] * bool(system) + [{"role": "user", "content": text}]
