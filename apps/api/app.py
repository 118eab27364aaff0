"""The FastAPI application of ``ragent api``: an OpenAI-compatible service in front of ours.

Example::

    app = create_app(Settings.load())                 # then: uvicorn.run(app, host="127.0.0.1", port=8100)
    # any OpenAI client:
    OpenAI(base_url="http://127.0.0.1:8100/v1", api_key="-").chat.completions.create(
        model="kb:ragent-docs", messages=[{"role": "user", "content": "How do I start the server?"}])

With a server key (``RAGENT_API_SERVER_KEY``), every ``/v1`` request needs ``Authorization: Bearer <key>``;
``/health`` stays open. The key is compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from pydantic import SecretStr

from apps.api import chat, routes
from apps.api.errors import ApiError, install_handlers
from apps.api.service import ApiService
from llm_backend.client import ChatClient
from llm_backend.settings import Settings

API_KEY_ENV = "RAGENT_API_SERVER_KEY"
DEFAULT_PORT = 8100


def _key_check(key: SecretStr | None) -> Callable[[Request], Awaitable[None]]:
    """The dependency that checks the bearer key (a no-op without one)."""

    async def check(request: Request) -> None:
        if key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.get_secret_value().encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>' with the key the server was started with "
                f"({API_KEY_ENV}); with the openai client, pass api_key=<key>.",
                type="authentication_error",
                code="invalid_api_key",
            )

    return check


def create_app(settings: Settings | None = None, *, client: ChatClient | None = None, api_key: SecretStr | str | None = None) -> FastAPI:
    """The API app. ``client`` replaces the backend client (tests pass a fake); ``api_key`` turns on bearer auth."""
    settings = settings or Settings.load()
    key = SecretStr(api_key) if isinstance(api_key, str) else api_key
    service = ApiService(settings, client=client)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="ragent API",
        description="OpenAI-compatible chat completions over ragent knowledge bases (kb:<name>), agents (agent:<tools>) "
        "and the backend's models; embeddings from knowledge-base embedders.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_handlers(app)
    app.include_router(routes.health_router)  # open; the /v1 routes check the key
    guarded = [Depends(_key_check(key))]
    app.include_router(routes.router, dependencies=guarded)
    app.include_router(chat.router, dependencies=guarded)
    return app
