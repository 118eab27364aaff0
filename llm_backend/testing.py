"""Test doubles shipped with the package, usable by every layer's tests (and by users' own tests).

- :class:`ScriptedChatClient`: an in-process fake of :class:`~llm_backend.client.ChatClient` that returns scripted
  replies and records the requests it got. For unit tests of code that calls a model.
- :class:`FakeOpenAIServer`: a small real HTTP server that speaks the OpenAI API (models, chat with streaming and tool
  calls, completions with echo logprobs, embeddings, rerank), driven by a script of :class:`FakeReply` objects that
  can delay, fail with a status code, or drop the connection in the middle of a stream. For contract tests through
  the official ``openai`` client.

Example::

    with FakeOpenAIServer([FakeReply(text="Paris"), FakeReply(status=500), "fine"]) as server:
        client = OpenAIChatClient(base_url=server.url, max_retries=0)
        assert client.chat([{"role": "user", "content": "capital?"}]).text == "Paris"
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm_backend.types import ChatChunk, ChatResult, CompletionResult, Message, TokenLogprob, ToolCall, Usage


@dataclass
class FakeReply:
    """One scripted answer. ``tool_calls`` items are ``{"name": ..., "arguments": dict | str}``."""

    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0
    chunk_delay: float = 0.0
    status: int = 200
    error: str = "scripted failure"
    drop_after: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    token_logprobs: dict[str, float] = field(default_factory=dict)
    retry_after: float | None = None

    @classmethod
    def of(cls, value: FakeReply | str) -> FakeReply:
        return value if isinstance(value, FakeReply) else cls(text=value)

    def tool_calls_json(self) -> list[dict[str, Any]]:
        out = []
        for i, call in enumerate(self.tool_calls):
            args = call.get("arguments", {})
            out.append(
                {
                    "id": call.get("id") or f"call_{i}_{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)},
                }
            )
        return out


def _tokens(text: str) -> list[str]:
    """A crude, deterministic tokenizer: words with their leading space, CJK characters, punctuation."""
    return re.findall(r"\s*[\u4e00-\u9fff]|\s*\w+|\s*[^\w\s]|\s+", text)


def fake_embedding(text: str, dim: int = 32) -> list[float]:
    """Deterministic unit vector from hashed character bigrams: similar texts get similar vectors."""
    vec = [0.0] * dim
    padded = f" {text.lower()} "
    for a, b in itertools.pairwise(padded):
        h = int.from_bytes(hashlib.blake2b((a + b).encode(), digest_size=4).digest(), "little")
        vec[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class FakeOpenAIServer:
    """A real HTTP server speaking the OpenAI API from a script. Thread-based; start/stop or use as a context
    manager. ``requests`` records ``(path, json_body)`` of every call for assertions."""

    def __init__(
        self,
        replies: Iterable[FakeReply | str] = (),
        *,
        responder: Callable[[dict[str, Any]], FakeReply | str] | None = None,
        models: Sequence[str] = ("fake-model",),
        embedding_dim: int = 32,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.replies: deque[FakeReply] = deque(FakeReply.of(r) for r in replies)
        self.responder = responder
        self.models = list(models)
        self.embedding_dim = embedding_dim
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for clients, ending in ``/v1``."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://{self._host}:{self._httpd.server_address[1]}/v1"

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    def start(self) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer((self._host, self._port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------------------------------
    def script(self, *replies: FakeReply | str) -> None:
        """Queue more replies (used in order; when the queue is empty the responder, else an echo, answers)."""
        with self._lock:
            self.replies.extend(FakeReply.of(r) for r in replies)

    def next_reply(self, body: dict[str, Any]) -> FakeReply:
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        if self.responder is not None:
            return FakeReply.of(self.responder(body))
        last = ""
        for msg in reversed(body.get("messages") or []):
            if msg.get("role") == "user":
                content = msg.get("content")
                last = content if isinstance(content, str) else json.dumps(content)
                break
        return FakeReply(text=f"echo: {last or body.get('prompt', '')}")

    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the chat completion requests received so far."""
        return [body for path, body in self.requests if path.endswith("/chat/completions") and "_raw" not in body]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr noise in tests
        return

    # -- helpers --------------------------------------------------------------------------------------------------
    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, reply: FakeReply) -> None:
        headers = {"Retry-After": str(reply.retry_after)} if reply.retry_after is not None else {}
        self._json(reply.status, {"error": {"message": reply.error, "type": "fake_error", "code": reply.status}}, headers)

    def _body(self) -> dict[str, Any] | None:
        """The request's JSON body; None when the client went away before sending all of it (a killed process).

        Such a request is neither recorded nor answered, as a real server would not see it. A body that is not JSON
        is recorded as ``{"_raw": text}`` and answered 400."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if len(raw) < length:
            self.close_connection = True
            return None
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            body = {"_raw": raw.decode(errors="replace")}
        self.fake.requests.append((self.path, body))
        return body

    def _check_model(self, body: dict[str, Any]) -> bool:
        model = body.get("model")
        if model and model not in self.fake.models:
            self._json(404, {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError", "code": 404}})
            return False
        return True

    # -- routes ---------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        if self.path in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        elif self.path.endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in self.fake.models]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        with self.fake._lock:
            self.fake.in_flight += 1
            self.fake.max_in_flight = max(self.fake.max_in_flight, self.fake.in_flight)
        try:
            body = self._body()
            if body is None:
                return
            if "_raw" in body:
                self._json(400, {"error": {"message": "the request body is not a JSON object", "type": "BadRequestError", "code": 400}})
                return
            self._route(body)
        except (BrokenPipeError, ConnectionResetError):  # the client went away while we answered
            self.close_connection = True
        finally:
            with self.fake._lock:
                self.fake.in_flight -= 1

    def _route(self, body: dict[str, Any]) -> None:
        if self.path.endswith("/chat/completions"):
            self._chat(body)
        elif self.path.endswith("/completions"):
            self._completion(body)
        elif self.path.endswith("/embeddings"):
            self._embeddings(body)
        elif self.path.endswith("/rerank"):
            self._rerank(body)
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _chat(self, body: dict[str, Any]) -> None:
        if not self._check_model(body):
            return
        reply = self.fake.next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            self._error(reply)
            return
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else sum(len(_tokens(str(m.get("content") or ""))) for m in body.get("messages") or [])
        completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(_tokens(reply.text))
        calls = reply.tool_calls_json()
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
        model = body.get("model") or self.fake.models[0]
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": reply.text if (reply.text or not calls) else None}
            if calls:
                message["tool_calls"] = calls
            self._json(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage,
            })
            return
        pieces: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        pieces += [{"content": tok} for tok in _tokens(reply.text)]
        for i, call in enumerate(calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            pieces.append({"tool_calls": [{"index": i, "id": call["id"], "type": "function", "function": {"name": call["function"]["name"], "arguments": args[:half]}}]})
            pieces.append({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        events = [dict(base, choices=[{"index": 0, "delta": d, "finish_reason": None}]) for d in pieces]
        events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(dict(base, choices=[], usage=usage))
        self._sse(events, reply)

    def _sse(self, events: list[dict[str, Any]], reply: FakeReply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for n, event in enumerate(events):
            if reply.drop_after is not None and n >= reply.drop_after:
                # Abort without the terminating chunk: the client sees an incomplete chunked body.
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self._chunk(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
            if reply.chunk_delay:
                time.sleep(reply.chunk_delay)
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _completion(self, body: dict[str, Any]) -> None:
        if not self._check_model(body):
            return
        reply = self.fake.next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            self._error(reply)
            return
        prompt = str(body.get("prompt") or "")
        generated = reply.text if int(body.get("max_tokens") or 0) > 0 else ""
        text = (prompt if body.get("echo") else "") + generated
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": reply.finish_reason or "length"}
        if body.get("logprobs") is not None:
            toks = _tokens(text)
            offsets, pos = [], 0
            for t in toks:
                offsets.append(pos)
                pos += len(t)
            lps: list[float | None] = [reply.token_logprobs.get(t, reply.token_logprobs.get(t.strip(), -1.0)) for t in toks]
            if body.get("echo") and lps:
                lps[0] = None  # the first prompt token has no context, as on vLLM
            choice["logprobs"] = {"tokens": toks, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": None}
        n_prompt = len(_tokens(prompt))
        self._json(200, {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model"), "choices": [choice],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(_tokens(generated)), "total_tokens": n_prompt + len(_tokens(generated))},
        })

    def _embeddings(self, body: dict[str, Any]) -> None:
        if not self._check_model(body):
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": i, "embedding": fake_embedding(str(t), self.fake.embedding_dim)} for i, t in enumerate(texts)]
        self._json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    def _rerank(self, body: dict[str, Any]) -> None:
        query_terms = set(_words(str(body.get("query") or "")))
        scored: list[tuple[float, int, str]] = []
        for i, doc in enumerate(body.get("documents") or []):
            terms = set(_words(str(doc)))
            scored.append((len(query_terms & terms) / (len(query_terms) or 1), i, str(doc)))
        scored.sort(key=lambda r: r[0], reverse=True)
        results = [{"index": i, "relevance_score": score, "document": {"text": doc}} for score, i, doc in scored]
        if body.get("top_n"):
            results = results[: int(body["top_n"])]
        self._json(200, {"id": f"rerank-{uuid.uuid4().hex[:8]}", "model": body.get("model"), "results": results})


def _words(text: str) -> list[str]:
    return [t.strip().lower() for t in _tokens(text) if t.strip() and (t.strip().isalnum())]


class ScriptedChatClient:
    """In-process fake model: returns scripted :class:`ChatResult` s in order and records each call.

    Replies may be strings, :class:`ChatResult` s, :class:`FakeReply` s (``tool_calls`` honoured) or exceptions
    (raised). When the script runs out, ``default`` answers (an echo of the last user message if not given).

    >>> fake = ScriptedChatClient(["Paris"])
    >>> fake.chat([{"role": "user", "content": "capital of France?"}]).text
    'Paris'
    """

    def __init__(
        self,
        replies: Iterable[str | ChatResult | FakeReply | BaseException] = (),
        *,
        default: Callable[[Sequence[Message]], str | ChatResult] | None = None,
        model: str = "scripted-model",
    ) -> None:
        self.replies: deque[str | ChatResult | FakeReply | BaseException] = deque(replies)
        self.default = default
        self.model = model
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _next(self, messages: Sequence[Message], kwargs: dict[str, Any]) -> ChatResult:
        with self._lock:
            self.calls.append({"messages": [dict(m) for m in messages], **kwargs})
            item = self.replies.popleft() if self.replies else None
        if item is None:
            if self.default is not None:
                item = self.default(messages)
            else:
                last = next((str(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
                item = f"echo: {last}"
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, ChatResult):
            return item
        if isinstance(item, FakeReply):
            calls = tuple(ToolCall(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in item.tool_calls_json())
            return ChatResult(
                text=item.text, tool_calls=calls, finish_reason=item.finish_reason or ("tool_calls" if calls else "stop"),
                usage=Usage(item.prompt_tokens or 10, item.completion_tokens or max(1, len(_tokens(item.text)))), model=self.model,
            )
        return ChatResult(text=item, usage=Usage(10, max(1, len(_tokens(item)))), finish_reason="stop", model=self.model)

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        return self._next(messages, kwargs)

    async def achat(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        return self._next(messages, kwargs)

    def stream(self, messages: Sequence[Message], **kwargs: Any) -> Iterator[ChatChunk]:
        result = self._next(messages, {**kwargs, "stream": True})
        for tok in _tokens(result.text):
            yield ChatChunk(delta=tok)
        yield ChatChunk(finish_reason=result.finish_reason, usage=result.usage, tool_calls=result.tool_calls)

    async def astream(self, messages: Sequence[Message], **kwargs: Any) -> AsyncIterator[ChatChunk]:
        for chunk in self.stream(messages, **kwargs):
            yield chunk

    def completion(self, prompt: str, *, max_tokens: int = 16, echo: bool = False, logprobs: int | None = None, **kwargs: Any) -> CompletionResult:
        result = self._next([{"role": "user", "content": prompt}], {"max_tokens": max_tokens, "echo": echo, "logprobs": logprobs, **kwargs})
        text = (prompt if echo else "") + (result.text if max_tokens > 0 else "")
        toks, pos = [], 0
        for t in _tokens(text):
            toks.append(TokenLogprob(t, -1.0, pos))
            pos += len(t)
        return CompletionResult(text=text, tokens=tuple(toks), usage=result.usage, finish_reason="length")

    async def acompletion(self, prompt: str, **kwargs: Any) -> CompletionResult:
        return self.completion(prompt, **kwargs)

    def embed(self, texts: Sequence[str], *, model: str | None = None, batch_size: int = 64) -> list[list[float]]:
        return [fake_embedding(t) for t in texts]

    def models(self) -> list[str]:
        return [self.model]
