"""Benchmarks are data: a versioned YAML file per task, validated into a :class:`TaskSpec`.

A task says where its data lives (relative to the data directory), how a sample becomes a prompt (Jinja templates
rendered with ``StrictUndefined``, so a misspelt field fails loudly instead of rendering as empty), which few-shot
examples to show, how to decode, how to extract the answer (named filter pipelines such as ``strict-match`` and
``flexible-extract``), and which metrics to compute. A new benchmark in a known format needs only such a file.

Example (the built-in ``gsm8k.yaml``, shortened)::

    name: gsm8k
    version: "3.0"
    kind: generate
    data: {format: jsonl, dir: gsm8k, test: test.jsonl, fewshot: train.jsonl}
    prompt: {text: "Question: {{ question }}\\nAnswer:", target: "{{ answer }}"}
    fewshot: {n: 5, sampler: random, seed: 1234}
    generation: {max_tokens: 256, temperature: 0.0, stop: ["Question:", "</s>", "<|im_end|>"]}
    filters:
      strict-match: [{function: regex, pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"}, {function: take_first}]
    metrics: [{name: exact_match, ignore_case: true, regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]}]
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_backend.errors import ConfigError

TaskKind = Literal["generate", "multiple_choice", "code", "function_call", "rag", "agent"]
DataFormat = Literal["jsonl", "json", "csv", "squad", "human_eval", "bfcl", "clapnq"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the samples come from. Paths are relative to ``<data dir>/<dir>``; ``{group}`` in a path is a
    wildcard whose value becomes the sample's group (e.g. ``test/{group}_test.csv`` for MMLU subjects)."""

    format: DataFormat
    dir: str = Field(default="", description="folder inside the data directory")
    test: str = Field(default="", description="evaluation split (file or pattern with {group})")
    fewshot: str | None = Field(default=None, description="split the few-shot examples come from")
    answers: str | None = Field(default=None, description="ground-truth file joined by id (BFCL possible_answer)")
    id_field: str | None = Field(default=None, description="field holding a stable sample id")
    groups: dict[str, str] = Field(default_factory=dict, description="group -> display name (group_name in templates)")
    include_groups: list[str] = Field(default_factory=list, description="only these groups (default: all found)")


class PromptSpec(_Strict):
    """Jinja templates over a sample's fields (plus ``group`` and ``group_name``). Mirrors lm-evaluation-harness:
    ``text`` is ``doc_to_text``, ``target`` is ``doc_to_target``, ``choices`` is ``doc_to_choice``."""

    text: str = ""
    target: str = ""
    choices: list[str] | str | None = None
    description: str | None = None
    system: str | None = None
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    chat: bool = True
    gold: str | None = Field(default=None, description="what metrics compare against; default: the target")


class FewshotSpec(_Strict):
    """Few-shot examples. ``random`` reproduces lm-eval's default sampler (``random.Random(seed).sample`` per
    evaluated sample, in order); ``first_n`` takes the first ``n`` of the few-shot split (per group)."""

    n: int = Field(default=0, ge=0)
    sampler: Literal["random", "first_n"] = "random"
    seed: int = 1234
    as_multiturn: bool = True


class GenerationSpec(_Strict):
    """Decoding parameters for generative tasks; ``temperature: 0`` makes requests cacheable."""

    max_tokens: int = Field(default=256, ge=1)
    temperature: float = 0.0
    top_p: float | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 1234


class FilterStep(BaseModel):
    """One step of an answer-extraction pipeline: ``function`` plus its arguments (see ``evaluation.extract``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    function: str

    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MetricSpec(BaseModel):
    """A metric by name plus its options (e.g. ``exact_match`` with ``ignore_case``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TaskSpec(_Strict):
    """A validated task file. ``source`` and ``sha256`` identify the exact file a run used."""

    name: str
    version: str
    description: str = ""
    kind: TaskKind
    reference: str | None = Field(default=None, description="the reference implementation this task mirrors")
    data: DataSpec
    prompt: PromptSpec = PromptSpec()
    fewshot: FewshotSpec = FewshotSpec()
    generation: GenerationSpec = GenerationSpec()
    filters: dict[str, list[FilterStep]] = Field(default_factory=dict)
    metrics: list[MetricSpec] = Field(default_factory=list)
    primary_metric: str = ""
    options: dict[str, Any] = Field(default_factory=dict, description="kind-specific settings")
    source: str = ""
    sha256: str = ""

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> str:
        return str(value)

    @field_validator("filters", mode="before")
    @classmethod
    def _filter_steps(cls, value: Any) -> Any:
        # Allow the short form `- take_first` for a step without arguments.
        if isinstance(value, dict):
            return {k: [{"function": s} if isinstance(s, str) else s for s in (v or [])] for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if self.kind in ("generate", "multiple_choice") and not self.prompt.text:
            raise ValueError(f"a {self.kind} task needs prompt.text")
        if self.kind == "multiple_choice" and self.prompt.choices is None:
            raise ValueError("a multiple_choice task needs prompt.choices")
        if not self.primary_metric:
            raise ValueError("primary_metric is required (the headline number in reports and the leaderboard)")
        return self

    def with_overrides(self, **changes: Any) -> TaskSpec:
        """A copy with nested fields replaced, e.g. ``with_overrides(fewshot={"n": 0})``."""
        data = self.model_dump()
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return TaskSpec.model_validate(data)


def load_task_file(path: Path) -> TaskSpec:
    """Read and validate one task YAML; errors name the file and the offending field."""
    try:
        raw_text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read task file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(raw_text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"task file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"task file {path} must hold a mapping (name, version, kind, data, ...)")
    data["source"] = str(path)
    data["sha256"] = hashlib.sha256(raw_text.encode("utf-8")).hexdigest()
    try:
        return TaskSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"task file {path} is invalid: {problems}") from exc
