"""The data that flows through a benchmark run: ``Sample -> Request -> Response -> SampleRecord -> RunResult``.

Everything here is plain, JSON-ready data. Requests are built by pure functions (``evaluation.kinds``), sent by one
function (``evaluation.send``), and scored by pure functions again, so each step can be tested by comparing values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

RequestKind = Literal["chat", "completion"]


@dataclass(frozen=True)
class Sample:
    """One benchmark item. ``doc`` holds the raw fields from the data source (question, answer, choices...);
    ``group`` is the subject or category for grouped benchmarks (MMLU subjects, BFCL categories)."""

    id: str
    index: int
    doc: Mapping[str, Any]
    group: str | None = None


@dataclass(frozen=True)
class Request:
    """One call to the model, as data.

    ``kind="chat"``: ``body`` holds ``messages`` (and ``tools`` / ``tool_choice`` when set). ``kind="completion"``:
    ``body`` holds ``prompt``; with ``continuation_start`` set, the request scores the log-likelihood of
    ``prompt[continuation_start:]`` given the text before it (``echo`` + ``logprobs``, no generated tokens).
    ``params`` are the sampling parameters passed through to the server (temperature, max_tokens, stop, seed...).
    """

    kind: RequestKind
    body: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    continuation_start: int | None = None
    tag: str = ""

    @property
    def deterministic(self) -> bool:
        """True when the same request always gets the same answer: log-likelihood scoring, or greedy decoding
        (temperature 0, one choice). Only deterministic requests are cached."""
        if self.kind == "completion" and self.continuation_start is not None:
            return True
        temperature = self.params.get("temperature")
        return temperature is not None and float(temperature) == 0.0 and int(self.params.get("n", 1) or 1) == 1

    def cache_key(self, model: str) -> str:
        """SHA-256 of the canonical JSON of everything that determines the answer (model, kind, body, params)."""
        canonical = json.dumps(
            {"model": model, "kind": self.kind, "body": self.body, "params": self.params, "start": self.continuation_start},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for logs and per-sample records)."""
        out: dict[str, Any] = {"kind": self.kind, **dict(self.body), "params": dict(self.params)}
        if self.continuation_start is not None:
            out["continuation_start"] = self.continuation_start
        if self.tag:
            out["tag"] = self.tag
        return out


@dataclass(frozen=True)
class Response:
    """What came back for one :class:`Request`. ``error`` is set (and nothing else is meaningful) when the request
    failed; a failed request makes its sample an error, never a wrong answer."""

    text: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    logprob: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    latency_s: float = 0.0
    cached: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; empty fields are left out to keep records small."""
        data = asdict(self)
        data["tool_calls"] = list(self.tool_calls)
        return {k: v for k, v in data.items() if v not in (None, (), [], "") or k == "text"}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Response:
        """Inverse of :meth:`to_dict`."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["tool_calls"] = tuple(known.get("tool_calls") or ())
        return cls(**known)


@dataclass
class SampleRecord:
    """The score of one sample: what was asked, what came back, what was extracted, and the metric values.

    When any request of the sample failed, ``error`` says why and ``metrics`` is empty: the sample is counted as an
    error and left out of the averages (and retried when the run is resumed).
    """

    sample_id: str
    index: int
    group: str | None = None
    target: Any = None
    prompt: Any = None
    responses: list[dict[str, Any]] = field(default_factory=list)
    extracted: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (one line of ``samples.jsonl``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleRecord:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) are ignored."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class MetricValue:
    """An aggregated metric: mean over scored samples, its standard error, and how many samples it covers."""

    value: float
    stderr: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    """The outcome of a run, written to ``results.json``: scores plus everything needed to reproduce them."""

    run_id: str
    task: dict[str, Any]
    model: str
    server: str
    metrics: dict[str, MetricValue]
    primary_metric: str
    counts: dict[str, int]
    groups: dict[str, dict[str, MetricValue]]
    config: dict[str, Any]
    settings: dict[str, Any]
    provenance: dict[str, Any]
    timings: dict[str, float]
    complete: bool = True
    run_dir: str = ""
    schema: int = 1

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Read back a ``results.json`` dict."""

        def metric_map(raw: Mapping[str, Any]) -> dict[str, MetricValue]:
            return {k: MetricValue(**v) for k, v in raw.items()}

        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["metrics"] = metric_map(data.get("metrics") or {})
        fields["groups"] = {g: metric_map(m) for g, m in (data.get("groups") or {}).items()}
        return cls(**fields)

    @property
    def primary(self) -> MetricValue | None:
        """The task's headline metric, if it was computed."""
        return self.metrics.get(self.primary_metric)
