"""Conversation JSONL for SFT from data already on disk (nothing is downloaded).

Only *training* splits are used, so that a model fine-tuned here is never evaluated on what it learned: GSM8K's
``train.jsonl`` (7,473 grade-school maths problems with worked answers ending in ``#### N``); the evaluation
harness scores the separate ``test.jsonl``.

Example::

    n = write_conversations(gsm8k_conversations(Path("../shared/data"), limit=500), Path("sft.jsonl"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from llm_backend.errors import ConfigError
from training.data import Message

_CALCULATOR = re.compile(r"<<[^>]*>>")
SOURCES = ("gsm8k",)


def gsm8k_conversations(data_dir: Path, *, limit: int | None = None, system: str | None = None) -> Iterator[list[Message]]:
    """GSM8K train problems as user/assistant turns; the calculator annotations ``<<48/2=24>>`` are removed."""
    path = Path(data_dir).expanduser() / "gsm8k" / "train.jsonl"
    if not path.is_file():
        raise ConfigError(f"GSM8K training split not found at {path}; point --data-dir / RAGENT_DATA at the data folder")
    with path.open(encoding="utf-8") as f:
        count = 0
        for line in f:
            if limit is not None and count >= limit:
                return
            if not line.strip():
                continue
            record = json.loads(line)
            messages: list[Message] = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": record["question"].strip()})
            messages.append({"role": "assistant", "content": _CALCULATOR.sub("", record["answer"]).strip()})
            count += 1
            yield messages


def write_conversations(conversations: Iterable[list[Message]], out: Path) -> int:
    """Write ``{"conversations": [...]}`` lines to ``out``; returns how many were written."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as f:
        for messages in conversations:
            f.write(json.dumps({"conversations": messages}, ensure_ascii=False) + "\n")
            n += 1
    return n
