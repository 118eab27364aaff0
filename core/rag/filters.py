"""Metadata filters, one syntax for every retriever: Chroma's ``where`` subset.

``{"source": "/docs/a.md"}`` (equality), ``{"page": {"$gte": 3}}``, ``{"format": {"$in": ["md", "pdf"]}}``;
several fields must all match. Dense retrieval hands the dict to Chroma; BM25 evaluates it in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llm_backend.errors import ConfigError

Filters = Mapping[str, Any]

_OPS = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
}


def validate_filters(filters: Filters | None) -> None:
    """Raise :class:`ConfigError` for an operator we do not support."""
    for key, cond in (filters or {}).items():
        if key.startswith("$"):
            raise ConfigError(f"filter key {key!r}: give fields directly ({{'source': ..., 'page': ...}}); all must match")
        if isinstance(cond, Mapping):
            for op in cond:
                if op not in _OPS:
                    raise ConfigError(f"filter on {key!r}: unknown operator {op!r}; use one of {', '.join(_OPS)}")


def matches(meta: Mapping[str, Any], filters: Filters | None) -> bool:
    """True when ``meta`` satisfies every condition in ``filters``."""
    if not filters:
        return True
    for key, cond in filters.items():
        value = meta.get(key)
        if isinstance(cond, Mapping):
            for op, arg in cond.items():
                try:
                    if not _OPS[op](value, arg):
                        return False
                except TypeError:
                    return False
        elif value != cond:
            return False
    return True


def parse_filter_args(args: list[str] | None) -> dict[str, Any]:
    """``["source=/a.md", "page=3"]`` (CLI ``--filter``) -> ``{"source": "/a.md", "page": 3}``."""
    out: dict[str, Any] = {}
    for arg in args or []:
        if "=" not in arg:
            raise ConfigError(f"--filter {arg!r}: write KEY=VALUE, e.g. --filter page=3 or --filter format=pdf")
        key, value = arg.split("=", 1)
        parsed: Any = value
        if value.lstrip("-").isdigit():
            parsed = int(value)
        out[key.strip()] = parsed
    return out
