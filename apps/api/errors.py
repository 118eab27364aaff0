"""OpenAI-shaped errors: every failure leaves the service as ``{"error": {"message", "type", "code"}}`` with the
status code an OpenAI client expects (404 unknown model, 400 invalid body, 401 wrong key, 503 backend down).

The messages are the project's own (:class:`~llm_backend.errors.RagentError` says what failed and what to do), so a
client sees the same advice the CLI prints.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_backend.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    ModelNotFoundError,
    RagentError,
    StreamInterruptedError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error this service answers with on purpose: ``status``, OpenAI ``type`` and ``code``, and a message."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error": {"message", "type", "code", "param"}}``."""
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": None}}


def model_not_found(model: str, message: str) -> ApiError:
    """404 for a model name the service does not serve."""
    return ApiError(404, message, type="invalid_request_error", code="model_not_found")


def from_ragent_error(exc: RagentError) -> ApiError:
    """The API error for one of our exceptions (the message is kept: it already says what to do)."""
    from core.sandbox import SandboxUnavailableError
    from knowledge.errors import KnowledgeBaseBusyError, KnowledgeBaseNotFoundError

    message = str(exc)
    if isinstance(exc, ModelNotFoundError | KnowledgeBaseNotFoundError):
        return model_not_found(getattr(exc, "model", ""), message)
    if isinstance(exc, BackendUnavailableError):
        return ApiError(503, message, type="backend_unavailable", code="backend_unavailable")
    if isinstance(exc, BackendTimeoutError):
        return ApiError(504, message, type="backend_timeout", code="backend_timeout")
    if isinstance(exc, StreamInterruptedError):
        return ApiError(502, message, type="backend_error", code="stream_interrupted")
    if isinstance(exc, BackendError):
        status = exc.status_code if exc.status_code and 400 <= exc.status_code < 600 else 502
        return ApiError(status, message, type="backend_error", code=f"backend_{status}")
    if isinstance(exc, SandboxUnavailableError):
        return ApiError(503, message, type="sandbox_unavailable", code="sandbox_unavailable")
    if isinstance(exc, KnowledgeBaseBusyError):
        return ApiError(409, message, type="conflict", code="knowledge_base_busy")
    if isinstance(exc, ConfigError):
        return ApiError(400, message, type="invalid_request_error", code="invalid_request")
    return ApiError(500, message, type="server_error", code="internal_error")


def error_response(error: ApiError) -> JSONResponse:
    """The JSON response for ``error``."""
    return JSONResponse(error.body(), status_code=error.status)


def stream_error_event(exc: BaseException) -> bytes:
    """The SSE event that ends a stream which failed after it started: the official client raises it as an
    ``APIError`` instead of returning a silently truncated answer."""
    error = exc if isinstance(exc, ApiError) else from_ragent_error(exc) if isinstance(exc, RagentError) else internal(exc)
    return f"data: {json.dumps(error.body(), ensure_ascii=False)}\n\n".encode()


def internal(exc: BaseException) -> ApiError:
    """A 500 for an unexpected exception; logged with its traceback, shown as its type and message."""
    log.error("unexpected error while serving a request", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error", code="internal_error")


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{loc or 'body'}: {err.get('msg')}")
    return "invalid request body: " + "; ".join(problems) + ". See the OpenAI API reference for the fields."


def install_handlers(app: FastAPI) -> None:
    """Make every error leave the app OpenAI-shaped."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RagentError)
    async def _ragent_error(request: Request, exc: RagentError) -> JSONResponse:
        return error_response(from_ragent_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(ApiError(400, _validation_message(exc), code="invalid_body"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, f"http_{exc.status_code}")
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(internal(exc))
