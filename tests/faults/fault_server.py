"""A fake model server as a process of its own, to be killed with SIGKILL in the middle of an answer.

``python -m tests.faults.fault_server PORT`` serves the OpenAI API on 127.0.0.1:PORT and prints ``ready`` when it
listens. Every answer streams slowly (0.15 s a token), so a test can kill the process mid-stream: to a question
``2*i?`` it answers ``#### 2i`` (the tiny eval task), to anything else a long sentence."""

from __future__ import annotations

import sys
import time
from typing import Any

from llm_backend.testing import FakeOpenAIServer, FakeReply

SLOW = 0.15


def respond(body: dict[str, Any]) -> FakeReply:
    """The scripted answer for one request body."""
    question = str(body["messages"][-1].get("content") or "")
    print("request", flush=True)  # the test kills the process once it has seen this and some tokens went out
    if "2*" in question and "?" in question:
        i = int(question.rsplit("2*", 1)[1].split("?")[0])
        return FakeReply(text=f"so {2 * i}\n#### {2 * i}", chunk_delay=SLOW, delay=0.6)
    words = "Chroma stores the vectors and BM25 finds the words, so hybrid retrieval finds both kinds of match [1]."
    # A request that is not streamed is answered after a pause, so that it can be killed in the middle too.
    return FakeReply(text=" ".join([words] * 4), chunk_delay=SLOW, delay=0.0 if body.get("stream") else 3.0)


def main() -> None:
    port = int(sys.argv[1])
    with FakeOpenAIServer(responder=respond, port=port):
        print("ready", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
