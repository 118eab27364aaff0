"""One exception root for the whole project, with messages that say what failed and what to do.

Every layer (knowledge, core, evaluation, apps) raises subclasses of :class:`RagentError`, so callers (the CLI,
the Streamlit pages) can catch one type and show ``str(error)`` to a person instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RagentError(Exception):
    """Root of every error this project raises on purpose. ``str(e)`` is meant for a person to read."""


class ConfigError(RagentError):
    """A setting, flag or file is wrong; the message names it and the fix."""


class MissingDependencyError(RagentError):
    """An optional package is not installed; the message names the ``pip install`` that fixes it."""

    def __init__(self, package: str, purpose: str, pip_name: str | None = None) -> None:
        self.package = package
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed. "
            f"Install it with: pip install {pip_name or package}"
        )


class BackendError(RagentError):
    """The model server answered with an error we cannot recover from (bad request, server fault after retries)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class BackendUnavailableError(BackendError):
    """The model server cannot be reached (not started, wrong port, crashed)."""


class BackendTimeoutError(BackendError):
    """The model server did not answer in time."""


class ModelNotFoundError(BackendError):
    """The requested model is not served by the backend; lists the served ones."""

    def __init__(self, model: str, available: Iterable[str], base_url: str) -> None:
        self.model = model
        self.available = list(available)
        super().__init__(
            f"model {model!r} is not served at {base_url}. "
            + (f"Served models: {', '.join(self.available)}. " if self.available else "The server lists no models. ")
            + did_you_mean(model, self.available)
            + "Pass one of them with --model or set RAGENT_MODEL.",
            status_code=404,
        )


class StreamInterruptedError(BackendError):
    """The connection dropped in the middle of a streamed answer. ``partial`` keeps what had arrived."""

    def __init__(self, message: str, *, partial: str) -> None:
        self.partial = partial
        super().__init__(message)


class EngineStartError(RagentError):
    """An inference engine process failed to start; the message carries the tail of its log."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"Did you mean 'x'? "`` for the closest choice, or ``""`` when nothing is close.

    >>> did_you_mean("gsm8", ["gsm8k", "mmlu"])
    "Did you mean 'gsm8k'? "
    """
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f"Did you mean {close[0]!r}? " if close else ""
