"""A real HTTP server speaking the OpenAI API from a script, for contract tests through the official ``openai`` client.

:class:`FakeOpenAIServer` serves models, chat (with streaming and tool calls), completions with echo logprobs,
embeddings and rerank, driven by a script of :class:`~llm_backend.testing.fake_client.FakeReply` objects that can
delay, fail with a status code, or drop the connection in the middle of a stream.

Test support only: product code never imports this module.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from llm_backend.testing.fake_client import FakeReply, fake_embedding, fake_tokens


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

    def _reply(self, body: dict[str, Any]) -> FakeReply | None:
        """The scripted reply for a chat or completion request after its delay, or None when the request was already
        answered (an unknown model, or a reply scripted as an HTTP error)."""
        if not self._check_model(body):
            return None
        reply = self.fake.next_reply(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            self._error(reply)
            return None
        return reply

    def _chat(self, body: dict[str, Any]) -> None:
        reply = self._reply(body)
        if reply is None:
            return
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else sum(len(fake_tokens(str(m.get("content") or ""))) for m in body.get("messages") or [])
        completion_tokens = reply.completion_tokens if reply.completion_tokens is not None else len(fake_tokens(reply.text))
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
        pieces += [{"content": tok} for tok in fake_tokens(reply.text)]
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
        reply = self._reply(body)
        if reply is None:
            return
        prompt = str(body.get("prompt") or "")
        generated = reply.text if int(body.get("max_tokens") or 0) > 0 else ""
        text = (prompt if body.get("echo") else "") + generated
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": reply.finish_reason or "length"}
        if body.get("logprobs") is not None:
            toks = fake_tokens(text)
            offsets, pos = [], 0
            for t in toks:
                offsets.append(pos)
                pos += len(t)
            lps: list[float | None] = [reply.token_logprobs.get(t, reply.token_logprobs.get(t.strip(), -1.0)) for t in toks]
            if body.get("echo") and lps:
                lps[0] = None  # the first prompt token has no context, as on vLLM
            choice["logprobs"] = {"tokens": toks, "token_logprobs": lps, "text_offset": offsets, "top_logprobs": None}
        n_prompt = len(fake_tokens(prompt))
        self._json(200, {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion", "created": int(time.time()),
            "model": body.get("model"), "choices": [choice],
            "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(fake_tokens(generated)), "total_tokens": n_prompt + len(fake_tokens(generated))},
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
    return [t.strip().lower() for t in fake_tokens(text) if t.strip() and (t.strip().isalnum())]
