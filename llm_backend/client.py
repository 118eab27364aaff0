"""The one door to a model: every other module reaches an LLM through :class:`OpenAIChatClient`.

This is the only module in the project that imports ``openai``. It speaks to any OpenAI-compatible server (our vLLM
or llama.cpp launcher, a remote vLLM, OpenAI, DeepSeek, SiliconFlow, Ollama) and adds what applications need on top
of the official client: a default model taken from the server, typed results, assembled streaming tool calls, a
concurrency limit, round-robin over replicas, and errors that say what to do.

Retries with exponential backoff (connection errors, 408/409/429/5xx, honouring ``Retry-After``) are the official
client's own, configured through ``Settings.max_retries``; a stream that breaks after it has started is not retried
(the caller has already shown part of the answer) but raises :class:`StreamInterruptedError` carrying the partial
text, so nothing is lost.

Example::

    client = OpenAIChatClient(Settings.load())
    print(client.chat([{"role": "user", "content": "Hello"}]).text)
    for chunk in client.stream([{"role": "user", "content": "你好"}]):
        print(chunk.delta, end="")
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, runtime_checkable

import httpx2
import openai

from llm_backend.errors import (
    BackendError,
    BackendTimeoutError,
    BackendUnavailableError,
    ModelNotFoundError,
    StreamInterruptedError,
)
from llm_backend.payloads import (
    CHAT_FIELDS,
    COMPLETION_FIELDS,
    ChatRequest,
    ChatStreamAssembler,
    build_completion_payload,
    build_rerank_payload,
    parse_chat_response,
    parse_completion_response,
    parse_embeddings_response,
    parse_rerank_response,
    split_known,
)
from llm_backend.settings import Settings
from llm_backend.types import ChatChunk, ChatResult, CompletionResult, Message, RerankResult

log = logging.getLogger(__name__)


@runtime_checkable
class ChatClient(Protocol):
    """What the rest of the project needs from a model. :class:`OpenAIChatClient` and
    :class:`llm_backend.testing.ScriptedChatClient` both satisfy it. ``options`` are those of
    :meth:`ChatRequest.of <llm_backend.payloads.ChatRequest.of>`: ``tools``, ``tool_choice``, ``json_schema``,
    ``stop``, ``model`` and pass-through params (temperature, max_tokens, seed, ...)."""

    def chat(self, messages: Sequence[Message], **options: Any) -> ChatResult: ...

    def stream(self, messages: Sequence[Message], **options: Any) -> Iterator[ChatChunk]: ...

    async def achat(self, messages: Sequence[Message], **options: Any) -> ChatResult: ...


def _server_hint(base_url: str) -> str:
    local = any(h in base_url for h in ("127.0.0.1", "localhost", "0.0.0.0"))
    if local:
        return "start it with `ragent serve` (or `make run`), or point RAGENT_BASE_URL / --base-url at a running server"
    return "check that the server is up and that RAGENT_BASE_URL / --base-url is right"


class OpenAIChatClient:
    """Client for an OpenAI-compatible server, sync and async. Cheap to construct; the HTTP clients are created
    lazily and the default model is looked up on first use."""

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.load(**overrides)
        if settings is not None and overrides:
            self.settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        self.urls = [self.settings.base_url, *self.settings.replica_urls]
        self._rr = itertools.cycle(range(len(self.urls)))
        self._rr_lock = threading.Lock()
        self._sync: list[openai.OpenAI] | None = None
        self._async: list[openai.AsyncOpenAI] | None = None
        self._model: str | None = self.settings.model
        self._sync_slots = threading.BoundedSemaphore(self.settings.concurrency)
        self._async_slots: asyncio.Semaphore | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async_clients_loop: asyncio.AbstractEventLoop | None = None

    # -- plumbing -------------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def _timeout(self) -> httpx2.Timeout:
        return httpx2.Timeout(self.settings.timeout, connect=self.settings.connect_timeout)

    def _pick(self) -> int:
        with self._rr_lock:
            return next(self._rr)

    def _sync_client(self) -> tuple[openai.OpenAI, str]:
        if self._sync is None:
            self._sync = [
                openai.OpenAI(base_url=u, api_key=self.settings.api_key_value(), timeout=self._timeout(), max_retries=self.settings.max_retries)
                for u in self.urls
            ]
        i = self._pick()
        return self._sync[i], self.urls[i]

    def _async_client(self) -> tuple[openai.AsyncOpenAI, str]:
        loop = asyncio.get_running_loop()
        if self._async is not None and self._async_clients_loop is not loop:
            # HTTP connections belong to the event loop that opened them: a new loop (another asyncio.run) needs
            # new clients. The old ones cannot be closed from here (their loop is gone or elsewhere), and the official
            # client's __del__ would schedule their close on *this* loop, which fails with "Event loop is closed".
            _abandon_async_clients(self._async, self._async_clients_loop)
            self._async = None
        self._async_clients_loop = loop
        if self._async is None:
            self._async = [
                openai.AsyncOpenAI(
                    base_url=u,
                    api_key=self.settings.api_key_value(),
                    timeout=self._timeout(),
                    max_retries=self.settings.max_retries,
                    # The SDK's own HTTP client closes itself in __del__ by scheduling a task on whatever loop is
                    # running then: a client dropped after its asyncio.run ended fails on the next loop with "Event
                    # loop is closed". The plain one with the SDK's defaults has no such __del__.
                    http_client=openai.DefaultAsyncHttpxClient(timeout=self._timeout()),
                )
                for u in self.urls
            ]
        i = self._pick()
        return self._async[i], self.urls[i]

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self._sync_slots:
            yield

    @asynccontextmanager
    async def _aslot(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if self._async_slots is None or self._async_loop is not loop:
            # A semaphore belongs to one event loop; make a fresh one when called from a new loop (asyncio.run).
            self._async_slots = asyncio.Semaphore(self.settings.concurrency)
            self._async_loop = loop
        async with self._async_slots:
            yield

    def _translate(self, exc: Exception, url: str, model: str | None = None) -> BackendError:
        """Map the official client's exceptions to ours, with the fix in the message."""
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeoutError(
                f"model server at {url} did not answer within {self.settings.timeout:g} s "
                f"(after {self.settings.max_retries} retries). Raise --timeout / RAGENT_TIMEOUT, or ask for fewer tokens."
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendUnavailableError(f"model server not reachable at {url}: {_server_hint(url)}.")
        if isinstance(exc, openai.NotFoundError) and model is not None and "model" in str(exc).lower():
            try:
                available = self.models()
            except BackendError:
                available = []
            if model not in available:
                return ModelNotFoundError(model, available, url)
        if isinstance(exc, openai.NotFoundError):
            path = exc.request.url.path if getattr(exc, "request", None) is not None else "this endpoint"
            return BackendError(
                f"the server at {url} does not offer {path} (404). Embeddings and rerank need a server that serves an "
                "embedding or reranker model (e.g. `vllm serve BAAI/bge-m3` on a GPU); chat models do not provide them.",
                status_code=404,
            )
        if isinstance(exc, openai.AuthenticationError):
            return BackendError(
                f"the server at {url} rejected the API key (401). Export the right key as RAGENT_API_KEY.", status_code=401
            )
        if isinstance(exc, openai.APIStatusError):
            detail = _error_detail(exc)
            hint = ""
            if exc.status_code == 400 and ("maximum context length" in detail or "max_model_len" in detail or "too long" in detail):
                hint = " The prompt is longer than the model's context: send less context (lower top-k) or serve with a larger --max-model-len."
            elif exc.status_code >= 500 or exc.status_code == 429:
                hint = f" Gave up after {self.settings.max_retries} retries; see the server's log (`ragent serve --status`)."
            return BackendError(f"model server at {url} answered {exc.status_code}: {detail}.{hint}", status_code=exc.status_code)
        if isinstance(exc, openai.OpenAIError):
            return BackendError(f"request to {url} failed: {exc}")
        raise exc

    @contextmanager
    def _translating(self, url: str, model: str | None = None) -> Iterator[None]:
        """Raise the official client's errors as ours (see :meth:`_translate`); usable around an ``await`` too."""
        try:
            yield
        except openai.OpenAIError as exc:
            raise self._translate(exc, url, model) from exc
        except json.JSONDecodeError as exc:  # the SDK lets a body that is not JSON escape as a bare ValueError
            raise BackendError(
                f"model server at {url} answered with a body that is not valid JSON ({exc}). Is {url} an "
                "OpenAI-compatible server? Check RAGENT_BASE_URL / --base-url and the server's log."
            ) from exc

    @staticmethod
    def _chat_kwargs(request: ChatRequest, model: str, *, stream: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``chat.completions.create`` (non-standard fields in ``extra_body``)."""
        kwargs, extra = split_known(request.payload(model, stream=stream), CHAT_FIELDS)
        return {**kwargs, "extra_body": extra or None}

    @staticmethod
    def _completion_request(
        prompt: str, model: str, max_tokens: int, echo: bool, logprobs: int | None, stop: Sequence[str] | None, params: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """Keyword arguments for ``completions.create``, and the model."""
        payload = build_completion_payload(prompt, model=model, max_tokens=max_tokens, echo=echo, logprobs=logprobs, stop=stop, **params)
        kwargs, extra = split_known(payload, COMPLETION_FIELDS)
        return {**kwargs, "extra_body": extra or None}, payload["model"]

    @staticmethod
    @contextmanager
    def _stream_guard(url: str, assembler: ChatStreamAssembler) -> Iterator[None]:
        """A stream that breaks after it started raises :class:`StreamInterruptedError` with the partial text."""
        try:
            yield
        except (httpx2.HTTPError, openai.OpenAIError, json.JSONDecodeError) as exc:
            raise _interrupted(url, assembler, exc) from exc

    @staticmethod
    def _stream_end(url: str, assembler: ChatStreamAssembler) -> ChatChunk:
        """The final chunk; a stream that ended without a ``finish_reason`` was cut off."""
        if assembler.finish_reason is None:
            raise _interrupted(url, assembler, None)
        return assembler.final_chunk()

    # -- models ---------------------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Names of the models the server serves."""
        client, url = self._sync_client()
        with self._translating(url):
            return [m.id for m in client.models.list().data]

    async def amodels(self) -> list[str]:
        client, url = self._async_client()
        with self._translating(url):
            page = await client.models.list()
        return [m.id for m in page.data]

    @property
    def model(self) -> str:
        """The model requests go to: the configured one, else the first one the server lists."""
        if self._model is None:
            names = self.models()
            if not names:
                raise BackendError(f"the server at {self.base_url} serves no models; pass one with --model.")
            self._model = names[0]
        return self._model

    async def _amodel(self) -> str:
        if self._model is None:
            names = await self.amodels()
            if not names:
                raise BackendError(f"the server at {self.base_url} serves no models; pass one with --model.")
            self._model = names[0]
        return self._model

    def health(self) -> bool:
        """True when the server answers ``/models``."""
        try:
            self.models()
            return True
        except BackendError:
            return False

    # -- chat -----------------------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[Message], **options: Any) -> ChatResult:
        """One chat completion. ``options`` are :meth:`ChatRequest.of`'s: ``tools``, ``tool_choice`` (``"auto"``,
        ``"required"``, ``"none"`` or a tool's name), ``json_schema`` (output matching that schema), ``stop``,
        ``model``; other params (temperature, max_tokens, seed, vLLM extras such as top_k) pass through."""
        request = ChatRequest.of(messages, **options)
        model = request.model or self.model
        client, url = self._sync_client()
        with self._slot(), self._translating(url, model):
            response = client.chat.completions.create(**self._chat_kwargs(request, model))
        return parse_chat_response(response.model_dump())

    async def achat(self, messages: Sequence[Message], **options: Any) -> ChatResult:
        """Async twin of :meth:`chat`; at most ``settings.concurrency`` requests are in flight at once."""
        request = ChatRequest.of(messages, **options)
        model = request.model or await self._amodel()
        client, url = self._async_client()
        async with self._aslot():
            with self._translating(url, model):
                response = await client.chat.completions.create(**self._chat_kwargs(request, model))
        return parse_chat_response(response.model_dump())

    def stream(self, messages: Sequence[Message], **options: Any) -> Iterator[ChatChunk]:
        """Stream a chat completion (``options`` as for :meth:`chat`): text deltas as they arrive, then one final
        chunk with ``finish_reason``, ``usage`` and any assembled ``tool_calls``. Raises
        :class:`StreamInterruptedError` (with ``partial``) when the connection drops before the server finished."""
        request = ChatRequest.of(messages, **options)
        model = request.model or self.model
        client, url = self._sync_client()
        assembler = ChatStreamAssembler()
        with self._slot():
            with self._translating(url, model):
                response = client.chat.completions.create(**self._chat_kwargs(request, model, stream=True))
            with self._stream_guard(url, assembler), response:
                for raw in response:
                    if (chunk := assembler.feed(raw.model_dump())) is not None:
                        yield chunk
        yield self._stream_end(url, assembler)

    async def astream(self, messages: Sequence[Message], **options: Any) -> AsyncIterator[ChatChunk]:
        """Async twin of :meth:`stream`."""
        request = ChatRequest.of(messages, **options)
        model = request.model or await self._amodel()
        client, url = self._async_client()
        assembler = ChatStreamAssembler()
        async with self._aslot():
            with self._translating(url, model):
                response = await client.chat.completions.create(**self._chat_kwargs(request, model, stream=True))
            with self._stream_guard(url, assembler):
                async with response:
                    async for raw in response:
                        if (chunk := assembler.feed(raw.model_dump())) is not None:
                            yield chunk
        yield self._stream_end(url, assembler)

    # -- completions (log-likelihood scoring) ---------------------------------------------------------------------
    def completion(
        self, prompt: str, *, max_tokens: int = 16, echo: bool = False, logprobs: int | None = None, stop: Sequence[str] | None = None, **params: Any
    ) -> CompletionResult:
        """A ``/v1/completions`` request. ``completion(ctx + cont, echo=True, logprobs=1, max_tokens=0)`` gives the
        prompt's token log-probabilities for multiple-choice scoring."""
        kwargs, model = self._completion_request(prompt, params.pop("model", None) or self.model, max_tokens, echo, logprobs, stop, params)
        client, url = self._sync_client()
        with self._slot(), self._translating(url, model):
            response = client.completions.create(**kwargs)
        return parse_completion_response(response.model_dump())

    async def acompletion(
        self, prompt: str, *, max_tokens: int = 16, echo: bool = False, logprobs: int | None = None, stop: Sequence[str] | None = None, **params: Any
    ) -> CompletionResult:
        """Async twin of :meth:`completion`."""
        kwargs, model = self._completion_request(prompt, params.pop("model", None) or await self._amodel(), max_tokens, echo, logprobs, stop, params)
        client, url = self._async_client()
        async with self._aslot():
            with self._translating(url, model):
                response = await client.completions.create(**kwargs)
        return parse_completion_response(response.model_dump())

    # -- embeddings and rerank ------------------------------------------------------------------------------------
    def embed(self, texts: Sequence[str], *, model: str | None = None, batch_size: int = 64) -> list[list[float]]:
        """Embeddings from the server's ``/v1/embeddings`` (needs an embedding model served, e.g. bge-m3)."""
        name = model or self.model
        client, url = self._sync_client()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            with self._slot(), self._translating(url, name):
                response = client.embeddings.create(model=name, input=batch, encoding_format="float")
            vectors.extend(parse_embeddings_response(response.model_dump()))
        return vectors

    def rerank(self, query: str, documents: Sequence[str], *, model: str | None = None, top_n: int | None = None) -> list[RerankResult]:
        """Scores from the server's ``/rerank`` endpoint (vLLM serving a cross-encoder), best first."""
        name = model or self.model
        client, url = self._sync_client()
        body = build_rerank_payload(query, documents, model=name, top_n=top_n)
        with self._slot(), self._translating(url, name):
            data = client.post("/rerank", cast_to=object, body=body)
        if not isinstance(data, dict):
            raise BackendError(f"rerank endpoint at {url} returned {type(data).__name__}, not a JSON object")
        return parse_rerank_response(data)

    def close(self) -> None:
        """Close the sync HTTP connections (async ones: :meth:`aclose`)."""
        for c in self._sync or []:
            c.close()
        self._sync = None

    async def aclose(self) -> None:
        """Close the async HTTP connections; call before the event loop ends to avoid warnings."""
        for c in self._async or []:
            await c.close()
        self._async = None

    async def __aenter__(self) -> OpenAIChatClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _abandon_async_clients(clients: list[openai.AsyncOpenAI], loop: asyncio.AbstractEventLoop | None) -> None:
    """Release async clients that belong to another event loop without touching the current one.

    Their own loop, if it still runs (another thread), closes them; otherwise their sockets are closed directly
    and the clients are marked closed, so that garbage collection schedules nothing on the running loop.
    """
    for c in clients:
        if loop is not None and loop.is_running() and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(c.close(), loop)
            continue
        inner = c._client  # the httpx2.AsyncClient; the official client offers no synchronous close
        pool = getattr(getattr(inner, "_transport", None), "_pool", None)
        for conn in list(getattr(pool, "_connections", []) or []):
            stream = getattr(getattr(conn, "_connection", None), "_network_stream", None)
            sock = stream.get_extra_info("socket") if stream is not None else None
            raw = getattr(sock, "_sock", sock)  # asyncio wraps the socket in a TransportSocket without close()
            if raw is not None:
                with contextlib.suppress(OSError):
                    raw.close()
        inner._state = httpx2._client.ClientState.CLOSED


def _error_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else body.get("message")
        if msg:
            return str(msg)
    return str(exc.message)


def _interrupted(url: str, assembler: ChatStreamAssembler, exc: Exception | None) -> StreamInterruptedError:
    partial = "".join(assembler.text)
    cause = f" ({type(exc).__name__}: {exc})" if exc else ""
    return StreamInterruptedError(
        f"the model server at {url} closed the stream before the answer was finished{cause}, after "
        f"{len(partial)} characters. The partial answer is kept; retry, and if it repeats check the server's log "
        "(`ragent serve --status`).",
        partial=partial,
    )
