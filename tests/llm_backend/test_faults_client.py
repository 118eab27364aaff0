"""The fault suite for the one client: a server answering malformed JSON, in a whole answer and in a stream.
(500 then success, 500 to the end, a timeout and a stream cut off are in test_client_contract.py, marked ``fault``.)"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from llm_backend.client import OpenAIChatClient
from llm_backend.errors import BackendError, StreamInterruptedError
from llm_backend.settings import Settings

pytestmark = pytest.mark.fault

MODELS = b'{"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "x"}]}'


class _Malformed(http.server.BaseHTTPRequestHandler):
    """Answers 200 with JSON cut in the middle; a stream gets one good event, then a broken one."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(MODELS)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if b'"stream": true' in body or b'"stream":true' in body:
            good = b'data: {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}\n\n'
            self._send(good + b'data: {"id": "c", "choices": [{"delta": {"content": "lo\n\n', "text/event-stream")
        else:
            self._send(b'{"id": "x", "choices": [{"message": {"content": "hi')


@pytest.fixture
def malformed_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Malformed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_malformed_json_is_a_clear_backend_error(malformed_url: str) -> None:
    client = OpenAIChatClient(Settings.load(base_url=malformed_url, max_retries=0))
    with pytest.raises(BackendError, match="not valid JSON"):
        client.chat([{"role": "user", "content": "hi"}])


def test_malformed_stream_event_keeps_the_partial_text(malformed_url: str) -> None:
    client = OpenAIChatClient(Settings.load(base_url=malformed_url, max_retries=0))
    seen = []
    with pytest.raises(StreamInterruptedError) as info:
        for chunk in client.stream([{"role": "user", "content": "hi"}]):
            seen.append(chunk.delta)
    assert info.value.partial == "Hel" and "".join(seen) == "Hel"
