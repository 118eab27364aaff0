"""Every error of `ragent api` is OpenAI-shaped with the right status, through the official client; a backend that
dies mid-answer ends the stream with an error event, never a silently truncated answer."""

from __future__ import annotations

import httpx
import openai
import pytest

from llm_backend.testing import FakeOpenAIServer, FakeReply
from tests.apps.api_helpers import QUESTION, api_service, closed_port_url
from tests.apps.conftest import GUIDE_FILES, make_kb


def _error(exc: openai.APIStatusError) -> dict[str, str]:
    body = exc.body
    assert isinstance(body, dict) and {"message", "type", "code"} <= set(body), body
    return body


@pytest.mark.parametrize("model", ["no-such-model", "kb:no-such-kb", "agent:teleport"])
def test_unknown_model_is_404(api: str, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai.OpenAI(base_url=api, api_key="-").chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    error = _error(info.value)
    assert error["code"] == "model_not_found" and model.split(":")[-1] in error["message"]


def test_unknown_kb_names_the_close_one(api: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai.OpenAI(base_url=api, api_key="-").chat.completions.create(model="kb:guid", messages=[{"role": "user", "content": "hi"}])
    assert "Did you mean 'guide'" in _error(info.value)["message"]


def test_unknown_embedder_is_404(api: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        openai.OpenAI(base_url=api, api_key="-").embeddings.create(model="no-embedder", input="x")
    assert _error(info.value)["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "kb:guide"},  # no messages
        {"model": "kb:guide", "messages": [{"role": "system", "content": "no user"}]},
        {"model": "kb:guide", "messages": [{"role": "user", "content": "hi"}], "temperature": 7},
        {"messages": [{"role": "user", "content": "hi"}]},  # no model
    ],
)
def test_invalid_body_is_400(api: str, body: dict[str, object]) -> None:
    response = httpx.post(f"{api}/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_body" and error["message"].startswith("invalid request body")


def test_body_that_is_not_json_is_400(api: str) -> None:
    response = httpx.post(f"{api}/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_body"


def test_unknown_route_is_openai_shaped_404(api: str) -> None:
    response = httpx.get(f"{api}/assistants")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["kb:guide", "fake-model", "agent:calculator"])
def test_backend_down_is_503_with_the_cli_advice(model: str, stream: bool) -> None:
    make_kb("guide", GUIDE_FILES)
    with api_service(closed_port_url(), model="fake-model") as url, pytest.raises(openai.APIStatusError) as info:
        reply = openai.OpenAI(base_url=url, api_key="-", max_retries=0).chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTION}], stream=stream
        )
        list(reply) if stream else None  # type: ignore[call-overload]
    assert info.value.status_code == 503
    error = _error(info.value)
    assert error["code"] == "backend_unavailable" and "ragent serve" in error["message"]


@pytest.mark.parametrize("model", ["kb:guide", "fake-model"])
def test_backend_dying_mid_stream_sends_an_error_event(api: str, backend: FakeOpenAIServer, model: str) -> None:
    # A first sentence arrives whole (the kb answer shows only complete, checked sentences), then the backend dies.
    text = "Run ragent serve --detach to start the model server [1]. Then check it with ragent serve --status [1]."
    backend.script(FakeReply(text=text, drop_after=20, chunk_delay=0.02))
    stream = openai.OpenAI(base_url=api, api_key="-", max_retries=0).chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for c in stream:
            received.append(c.choices[0].delta.content or "")
    assert received and "".join(received) != text  # part of the answer arrived, then the error, not a clean end
    body = info.value.body
    assert isinstance(body, dict) and body["code"] == "stream_interrupted" and "closed the stream" in body["message"]


def test_key_required_when_configured(backend: FakeOpenAIServer) -> None:
    with api_service(backend.url, api_key="s3cret") as url:
        for key in ("wrong", "-"):
            with pytest.raises(openai.AuthenticationError) as info:
                openai.OpenAI(base_url=url, api_key=key).models.list()
            error = _error(info.value)
            assert error["code"] == "invalid_api_key" and "s3cret" not in error["message"]
        assert httpx.post(f"{url}/embeddings", json={"model": "hash", "input": "x"}).status_code == 401
        assert openai.OpenAI(base_url=url, api_key="s3cret").models.list().data


def test_backend_dying_before_the_first_sentence_is_an_http_error(api: str, backend: FakeOpenAIServer) -> None:
    backend.script(FakeReply(text="Run ragent serve --detach to start the model server [1].", drop_after=3, chunk_delay=0.02))
    with pytest.raises(openai.APIStatusError) as info:
        list(openai.OpenAI(base_url=api, api_key="-", max_retries=0).chat.completions.create(
            model="kb:guide", messages=[{"role": "user", "content": QUESTION}], stream=True
        ))
    assert info.value.status_code == 502 and _error(info.value)["code"] == "stream_interrupted"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        ("BackendTimeoutError", 504, "backend_timeout"),
        ("SandboxUnavailableError", 503, "sandbox_unavailable"),
        ("ConfigError", 400, "invalid_request"),
        ("RagentError", 500, "internal_error"),
    ],
)
def test_other_errors_map_to_their_status(error: str, status: int, code: str) -> None:
    import core.sandbox
    import llm_backend.errors
    from apps.api.errors import from_ragent_error

    cls = getattr(llm_backend.errors, error, None) or getattr(core.sandbox, error)
    mapped = from_ragent_error(cls("what failed and what to do"))
    assert (mapped.status, mapped.code) == (status, code) and mapped.message == "what failed and what to do"
