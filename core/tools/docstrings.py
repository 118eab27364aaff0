"""Read a function's description and its parameters' descriptions from a docstring (Google, reST or NumPy style)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_GOOGLE_ARGS = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments)\s*:\s*$")
_GOOGLE_OTHER = re.compile(r"^(Returns?|Yields?|Raises|Examples?|Notes?|Warnings?|See Also|References|Attributes|Todo)\s*:\s*$")
_GOOGLE_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_REST_FIELD = re.compile(r"^:(\w+)(?:\s+([^:]+?))?\s*:\s*(.*)$")
_NUMPY_RULE = re.compile(r"^-{3,}\s*$")
_NUMPY_ENTRY = re.compile(r"^(\w+)\s*(?::.*)?$")


@dataclass(frozen=True)
class ParsedDocstring:
    """``description``: the text before the first section; ``params``: parameter name -> description."""

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Split a docstring into its description and per-parameter descriptions.

    >>> parse_docstring('''Add numbers.
    ...
    ...     Args:
    ...         a (int): first
    ...         b: second,
    ...             continued
    ...     ''').params
    {'a': 'first', 'b': 'second, continued'}
    """
    if not doc:
        return ParsedDocstring()
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    i = 0
    section: str | None = None
    current: str | None = None
    entry_indent = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        # NumPy style: a title underlined with dashes.
        if stripped and _NUMPY_RULE.match(nxt):
            section = "numpy-params" if stripped.lower() in ("parameters", "other parameters") else "other"
            current = None
            i += 2
            continue
        if _GOOGLE_ARGS.match(stripped) and indent == 0:
            section, current = "google-args", None
            i += 1
            continue
        if _GOOGLE_OTHER.match(stripped) and indent == 0:
            section, current = "other", None
            i += 1
            continue
        rest = _REST_FIELD.match(stripped)
        if rest and indent == 0:
            kind, names, text = rest.groups()
            section, current = "rest", None
            if kind in ("param", "parameter", "arg", "argument", "key", "keyword") and names:
                name = names.split()[-1]
                params[name] = text.strip()
                current = name
            i += 1
            continue
        if section is None:
            description.append(line)
        elif section == "google-args" and stripped:
            entry = _GOOGLE_ENTRY.match(stripped)
            if entry and (current is None or indent <= entry_indent):
                current = entry.group(1).lstrip("*")
                params[current] = entry.group(3).strip()
                entry_indent = indent
            elif current is not None:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "numpy-params" and stripped:
            entry = _NUMPY_ENTRY.match(stripped)
            if indent == 0 and entry:
                current = entry.group(1)
                params[current] = ""
            elif current is not None:
                params[current] = f"{params[current]} {stripped}".strip()
        elif section == "rest" and stripped and current is not None and indent > 0:
            params[current] = f"{params[current]} {stripped}".strip()
        i += 1
    text = "\n".join(description).strip()
    # Doctest examples are for people, not for the model.
    text = text.split("\n>>>", 1)[0].strip()
    return ParsedDocstring(text, params)
