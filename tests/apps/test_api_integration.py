"""Integration: a knowledge base asked through `ragent api` (the real service) on the real model server, with the
official `openai` client, streaming and not; the answer must cite the passage that holds it."""

from __future__ import annotations

import openai
import pytest

from tests.apps.api_helpers import api_service
from tests.apps.conftest import GUIDE_FILES, make_kb

QUESTION = "How do I start the model server in the background?"


@pytest.mark.integration
def test_kb_answer_through_the_api_cites_its_source(real_server_url: str) -> None:
    make_kb("guide", GUIDE_FILES)
    with api_service(real_server_url) as url:
        client = openai.OpenAI(base_url=url, api_key="-", timeout=300)
        reply = client.chat.completions.create(model="kb:guide", messages=[{"role": "user", "content": QUESTION}], max_tokens=80)
        message = reply.choices[0].message
        citations = (message.model_extra or {})["citations"]
        assert citations and citations[0]["source"].endswith("serving.md"), (message.content, citations)
        assert f"[{citations[0]['number']}]" in (message.content or "")
        assert "ragent serve" in (message.content or "") + citations[0]["text"]

        stream = client.chat.completions.create(model="kb:guide", messages=[{"role": "user", "content": QUESTION}], max_tokens=80, stream=True)
        chunks = list(stream)
        final = (chunks[-1].choices[0].delta.model_extra or {}) if chunks[-1].choices else {}
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert any(c["source"].endswith("serving.md") for c in final["citations"]), final
