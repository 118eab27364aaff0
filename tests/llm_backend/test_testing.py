"""The fake OpenAI-compatible server behaves like a real one towards clients that die or send garbage."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from llm_backend.testing import FakeOpenAIServer


def _address(server: FakeOpenAIServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


def test_a_client_killed_before_its_body_arrived_is_not_a_request() -> None:
    with FakeOpenAIServer() as server:
        with socket.create_connection(_address(server)) as sock:
            head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            sock.sendall(head + b'{"messages": [{"role": "us')  # the process dies here
        time.sleep(0.3)
        assert server.chat_requests() == []
        assert server.requests == []
        # The server still answers the next client.
        reply = httpx.post(f"{server.url}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert reply.json()["choices"][0]["message"]["content"] == "echo: hi"
        assert len(server.chat_requests()) == 1


def test_a_body_that_is_not_a_json_object_is_answered_400_and_not_a_chat_request() -> None:
    with FakeOpenAIServer() as server:
        for body in (b"{not json", b"[1, 2]"):
            reply = httpx.post(f"{server.url}/chat/completions", content=body, headers={"Content-Type": "application/json"})
            assert reply.status_code == 400
            assert "not a JSON object" in reply.json()["error"]["message"]
        assert server.chat_requests() == []
        assert [body for _, body in server.requests] == [{"_raw": "{not json"}, {"_raw": "[1, 2]"}]
