"""Tools from typed Python functions: ``@tool`` derives the JSON schema from type hints and the docstring and
validates arguments before the call.

A tool fault (bad arguments, an exception inside the tool) comes back from :meth:`Tool.run` as a
:class:`ToolOutput` with ``error`` set and a message for the model that names the tool, the arguments and the
problem. Infrastructure faults (the model server, the sandbox mechanism, configuration) are raised.

Example::

    @tool
    def word_count(text: str, unique: bool = False) -> int:
        '''Count the words in a text.

        Args:
            text: the text to count.
            unique: count each distinct word once.
        '''
        words = text.split()
        return len(set(words)) if unique else len(words)

    word_count("a b a")                      # 3: still a plain function
    word_count.run({"text": "a b a", "unique": True}).content   # "2"
    word_count.run({"txt": "a"}).error       # names the missing 'text' and the unexpected 'txt'
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, overload

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.sandbox import SandboxUnavailableError
from core.tools.docstrings import parse_docstring
from llm_backend.errors import BackendError, ConfigError, MissingDependencyError, RagentError

log = logging.getLogger(__name__)

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    BackendError,
    SandboxUnavailableError,
    ConfigError,
    MissingDependencyError,
)
"""Exceptions a tool lets through instead of reporting them to the model: nothing the model can fix."""


class ToolError(RagentError):
    """Raised by a tool for an expected failure (a path outside the allowed folder, a division by zero); the
    message is shown to the model as the observation."""


class ToolArgumentError(ValueError):
    """The arguments do not match the tool's schema; the message lists every problem."""


@dataclass(frozen=True)
class ToolOutput:
    """What a tool call produced. ``content`` is the observation text for the model; ``error`` is set when the call
    failed (bad JSON, invalid arguments, the tool raised); ``value`` is the Python return value on success."""

    content: str
    error: str | None = None
    value: Any = None
    fault: str | None = None
    """``"invalid_arguments"`` (bad JSON or schema mismatch), ``"unknown_tool"`` or ``"tool_error"`` (it raised)."""

    @property
    def ok(self) -> bool:
        """True when the call succeeded."""
        return self.error is None


def format_value(value: Any) -> str:
    """Render a tool's return value as observation text: strings as they are, the rest as JSON when possible."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$ref``s and drop pydantic's ``title`` keys: small models and grammar engines do best with a plain,
    self-contained schema."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node and node["$ref"].startswith("#/$defs/"):
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return walk({**target, **extra})
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs"):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: walk(sub) for name, sub in value.items()}
            else:
                out[key] = walk(value)
        return out

    cleaned = walk(schema)
    if not isinstance(cleaned, dict):  # pragma: no cover - a schema is always an object
        raise TypeError("schema must be an object")
    return cleaned


def _format_validation_error(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "missing":
            problems.append(f"missing required argument {loc!r}")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unexpected argument {loc!r}")
        else:
            problems.append(f"argument {loc!r}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(problems)


class Tool:
    """A callable the model can use: ``name``, ``description``, JSON-schema ``parameters`` and the function.

    Build one with :func:`tool` (from a typed function) or :meth:`from_schema` (from an existing JSON schema).
    Calling the tool calls the function; :meth:`run` validates model-written arguments first and never raises for
    a tool fault.
    """

    def __init__(
        self,
        name: str,
        description: str,
        parameters: dict[str, Any],
        fn: Callable[..., Any] | None,
        *,
        args_model: type[BaseModel] | None = None,
        lenient: bool = True,
    ) -> None:
        if not name or not all(c.isalnum() or c in "_-" for c in name):
            raise ValueError(f"tool name {name!r} must be letters, digits, '_' or '-' (the OpenAI function-name rule)")
        self.name = name
        self.description = description
        self.parameters = parameters
        self.fn = fn
        self.args_model = args_model
        self.lenient = lenient
        self._validator: Any = None

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.fn is None:
            raise TypeError(f"tool {self.name!r} has a schema but no function")
        return self.fn(*args, **kwargs)

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> Tool:
        """Build a tool from a typed function: parameters from its signature and type hints, descriptions from its
        docstring (Google, reST or NumPy style)."""
        doc = parse_docstring(inspect.getdoc(fn))
        hints = typing.get_type_hints(fn, include_extras=True)
        fields: dict[str, Any] = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {fn.__name__!r}: *{pname} / **{pname} parameters cannot be described to a model")
            annotation = hints.get(pname, Any)
            if pname not in hints:
                log.warning("tool %s: parameter %r has no type hint; the model will be told it accepts anything", fn.__name__, pname)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (annotation, Field(default, description=doc.params.get(pname) or None))
        model_name = "".join(part.capitalize() for part in (name or fn.__name__).split("_")) + "Args"
        args_model = pydantic.create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        parameters = _clean_schema(args_model.model_json_schema())
        parameters.setdefault("properties", {})
        parameters.setdefault("required", [])
        parameters["additionalProperties"] = False
        text = description or doc.description or (name or fn.__name__).replace("_", " ")
        return cls(name or fn.__name__, text, parameters, fn, args_model=args_model)

    @classmethod
    def from_schema(
        cls, name: str, description: str, parameters: Mapping[str, Any], fn: Callable[..., Any] | None = None
    ) -> Tool:
        """A tool from an existing JSON schema (an OpenAI function definition, a LangChain tool, a benchmark's
        function). Arguments are validated with ``jsonschema``."""
        return cls(name, description, dict(parameters), fn)

    # -- schema ---------------------------------------------------------------------------------------------------
    def to_openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry: ``{"type": "function", "function": {name, description, parameters}}``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    # -- validation and running -----------------------------------------------------------------------------------
    def unknown_arguments(self, arguments: Mapping[str, Any]) -> list[str]:
        """Names in ``arguments`` that the schema does not define (when it allows no others)."""
        if self.args_model is None and self.parameters.get("additionalProperties", True) is not False:
            return []
        known = self.parameters.get("properties", {})
        return [k for k in arguments if k not in known]

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``arguments`` against the schema and return the keyword arguments for the function (converted to
        the annotated types). Raises :class:`ToolArgumentError` listing every problem.

        Arguments the schema does not define are dropped when ``lenient`` (the default) and everything else is
        valid: small models copy schema words (``"type": "string"``) next to correct arguments, and refusing the
        whole call for that costs a step. They are named in the error when the call is invalid anyway."""
        unknown = self.unknown_arguments(arguments)
        if self.lenient and unknown:
            log.debug("tool %s: ignoring unknown arguments %s", self.name, unknown)
            kept = {k: v for k, v in arguments.items() if k not in unknown}
            try:
                return self.validate_strict(kept)
            except ToolArgumentError as exc:
                raise ToolArgumentError(f"{exc}; " + "; ".join(f"unexpected argument {k!r}" for k in unknown)) from exc
        return self.validate_strict(arguments)

    def validate_strict(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Like :meth:`validate`, but an argument the schema does not define is an error."""
        if self.args_model is not None:
            try:
                parsed = self.args_model.model_validate(dict(arguments))
            except ValidationError as exc:
                raise ToolArgumentError(_format_validation_error(exc)) from exc
            return {key: getattr(parsed, key) for key in type(parsed).model_fields}
        import jsonschema

        if self._validator is None:
            cls = jsonschema.validators.validator_for(self.parameters)
            self._validator = cls(self.parameters)
        errors = sorted(self._validator.iter_errors(dict(arguments)), key=lambda e: list(e.absolute_path))
        if errors:
            raise ToolArgumentError(
                "; ".join(f"argument {'.'.join(map(str, e.absolute_path)) or '(root)'!r}: {e.message}" for e in errors)
            )
        return dict(arguments)

    def run(self, arguments: Mapping[str, Any] | str) -> ToolOutput:
        """Validate and call. ``arguments`` is a dict or the JSON text the model wrote. Tool faults come back as a
        :class:`ToolOutput` with ``error``; :data:`INFRASTRUCTURE_ERRORS` are raised."""
        shown = arguments if isinstance(arguments, str) else json.dumps(dict(arguments), ensure_ascii=False, default=str)
        if isinstance(arguments, str):
            try:
                decoded = json.loads(arguments or "{}")
            except json.JSONDecodeError as exc:
                msg = f"arguments are not valid JSON ({exc.msg} at position {exc.pos})"
                return ToolOutput(f"Error calling {self.name} with {arguments!r}: {msg}. Send a JSON object.", error=msg, fault="invalid_arguments")
            if not isinstance(decoded, dict):
                msg = f"arguments must be a JSON object, got {type(decoded).__name__}"
                return ToolOutput(f"Error calling {self.name} with {arguments!r}: {msg}.", error=msg, fault="invalid_arguments")
            arguments = decoded
        try:
            kwargs = self.validate(arguments)
        except ToolArgumentError as exc:
            msg = f"invalid arguments: {exc}"
            expected = ", ".join(
                f"{k}{'' if k in self.parameters.get('required', []) else '?'}" for k in self.parameters.get("properties", {})
            )
            return ToolOutput(
                f"Error calling {self.name}({shown}): {msg}. Expected arguments: {expected or 'none'}.", error=msg, fault="invalid_arguments"
            )
        if self.fn is None:
            return ToolOutput(f"{self.name}({shown}) accepted (schema-only tool, nothing was run)", value=kwargs)
        try:
            value = self.fn(**kwargs)
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception as exc:
            msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ToolError) else str(exc)
            log.debug("tool %s raised", self.name, exc_info=True)
            return ToolOutput(f"Error calling {self.name}({shown}): {msg}", error=msg, fault="tool_error")
        return ToolOutput(format_value(value), value=value)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, description: str | None = None
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Decorator: turn a typed function into a :class:`Tool` (``@tool`` or ``@tool(name=..., description=...)``)."""
    if fn is not None:
        return Tool.from_function(fn, name=name, description=description)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, description=description)

    return wrap
