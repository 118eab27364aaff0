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

from llm_backend.testing.fake_client import FakeReply, ScriptedChatClient, fake_embedding, fake_tokens
from llm_backend.testing.fake_server import FakeOpenAIServer

__all__ = ["FakeOpenAIServer", "FakeReply", "ScriptedChatClient", "fake_embedding", "fake_tokens"]
