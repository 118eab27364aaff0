"""The knowledge-base chat page, driven by Streamlit's AppTest against the fake OpenAI server."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from apps.ui.jobs import JOBS
from llm_backend.testing import FakeOpenAIServer
from tests.apps.conftest import APP, APP_TIMEOUT, GUIDE_FILES, home, make_kb


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=APP_TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def _texts(elements: object) -> str:
    return "\n".join(str(e.value) for e in elements)  # type: ignore[attr-defined]


def test_without_knowledge_bases_it_says_how_to_create_one(fake_server: FakeOpenAIServer) -> None:
    at = _app()
    assert "no knowledge bases yet" in _texts(at.info)
    assert "Model server up" in _texts(at.sidebar.success)
    assert "fake-model" in _texts(at.sidebar.success)


def test_server_down_is_a_message_with_the_fix_not_a_traceback(server_down: str) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    sidebar = _texts(at.sidebar.error)
    assert "Model server down" in sidebar
    assert server_down in sidebar and "ragent serve" in sidebar
    at.chat_input(key="question").set_value("How do I start the model server?").run()
    assert not at.exception
    errors = _texts(at.error)
    assert "not reachable" in errors and "ragent serve" in errors


def test_empty_knowledge_base_says_so_and_disables_the_question(fake_server: FakeOpenAIServer) -> None:
    make_kb("empty")
    at = _app()
    info = _texts(at.info)
    assert "**empty** is empty" in info or "empty** is empty" in info
    assert "ragent kb ingest empty" in info
    assert at.chat_input(key="question").disabled
    assert not fake_server.chat_requests()


def test_answer_streams_with_numbered_citations_and_source_panels(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    at.chat_input(key="question").set_value("How do I start the model server?").run()
    assert not at.exception, at.exception
    # The model was asked once, streaming, with the retrieved passage in the prompt.
    requests = fake_server.chat_requests()
    assert len(requests) == 1 and requests[0]["stream"] is True
    assert "ragent serve --detach" in requests[0]["messages"][-1]["content"]
    assistant = [m for m in at.chat_message if m.name == "assistant"]
    assert len(assistant) == 1
    answer = _texts(assistant[0].markdown)
    assert "[1]" in answer and "ragent serve --detach" in answer
    panels = [e for e in at.expander if e.label.startswith("[1] ")]
    assert len(panels) == 1
    assert "serving.md" in panels[0].label and "Start the model server" in panels[0].label
    panel_text = _texts(panels[0].markdown) + _texts(panels[0].caption) + _texts(panels[0].code)
    assert "serving.md" in panel_text  # file
    assert "score" in panel_text and "bm25" in panel_text  # retrieval score
    assert "ragent serve --detach" in panel_text  # snippet


def test_history_is_kept_per_session_and_follow_ups_are_rewritten(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    at.chat_input(key="question").set_value("How do I start the model server?").run()
    at.chat_input(key="question").set_value("Which file types can a knowledge base read?").run()
    assert not at.exception, at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    # the follow-up first asked the model for a stand-alone query (the conversation is in that request)
    bodies = fake_server.chat_requests()
    assert len(bodies) == 3
    assert "How do I start the model server?" in str(bodies[1]["messages"])
    # a fresh session starts with an empty conversation
    other = _app()
    assert not [m for m in other.chat_message]
    # "New conversation" clears this session's history
    buttons = [b for b in at.sidebar.button if b.label == "New conversation"]
    buttons[0].click().run()
    assert not [m for m in at.chat_message]


def test_nothing_relevant_is_said_without_calling_the_model(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    at.chat_input(key="question").set_value("quantum chromodynamics lattice gauge").run()
    assert not at.exception
    assert "Nothing relevant" in _texts(at.chat_message[1].markdown)
    assert not fake_server.chat_requests()


def test_a_question_the_passages_do_not_answer_is_said_so_unless_the_toggle_is_off(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    at.chat_input(key="question").set_value("How do I start the model server on Kubernetes?").run()
    assert not at.exception
    assert "No passage mentions Kubernetes" in _texts(at.chat_message[1].markdown)
    assert not fake_server.chat_requests()  # refused before the model was asked, with the closest passage quoted
    other = _app()  # a new session, with the toggle off: the model is asked
    other.toggle(key="refuse").set_value(False).run()
    other.chat_input(key="question").set_value("How do I start the model server on Kubernetes?").run()
    assert not other.exception
    assert len(fake_server.chat_requests()) == 1 and "No passage mentions" not in _texts(other.chat_message[1].markdown)


def test_unsupported_upload_is_refused_with_the_reason_and_good_files_are_added(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    at.file_uploader(key="uploader").set_value([
        ("setup.exe", b"MZ\x90\x00binary", "application/octet-stream"),
        ("notes.md", b"# Notes\n\nThe sandbox uses bubblewrap namespaces.\n", "text/markdown"),
        ("scan.pdf", b"%PDF-1.4 this is not really a pdf", "application/pdf"),
    ])
    submit = [b for b in at.button if b.label == "Add to knowledge base"]
    submit[0].click().run()
    assert not at.exception, at.exception
    errors = _texts(at.error)
    assert "setup.exe" in errors and ".exe files are not supported" in errors and "pdf" in errors
    assert JOBS.wait_all(timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert "Files added" in _texts(at.success)
    warnings = _texts(at.warning)
    assert "scan.pdf" in warnings  # loaded but unreadable: the ingest report's reason is shown
    from knowledge.registry import KnowledgeBaseRegistry

    kb = KnowledgeBaseRegistry(home()).open("guide")
    names = {p.rsplit("/", 1)[-1] for p in kb.manifest.files}
    assert "notes.md" in names and "scan.pdf" not in names and "setup.exe" not in names
    assert (home() / "uploads" / "guide" / "notes.md").is_file()
    assert "3 files" in _texts(at.caption)


def test_empty_upload_selection_says_what_to_do(fake_server: FakeOpenAIServer) -> None:
    make_kb("guide", GUIDE_FILES)
    at = _app()
    next(b for b in at.button if b.label == "Add to knowledge base").click().run()
    assert "choose one or more files first" in _texts(at.error)


def test_create_a_knowledge_base_from_the_sidebar(fake_server: FakeOpenAIServer) -> None:
    at = _app()
    at.sidebar.text_input[0].set_value("my-notes")
    next(b for b in at.sidebar.button if b.label == "Create").click().run()
    assert not at.exception, at.exception
    at.run()
    assert at.sidebar.selectbox(key="kb").value == "my-notes"
    assert "is empty" in _texts(at.info)
    # an invalid name is refused with the rule
    at.sidebar.text_input[0].set_value("bad name!")
    next(b for b in at.sidebar.button if b.label == "Create").click().run()
    assert "invalid knowledge base name" in _texts(at.sidebar.error)


@pytest.mark.parametrize("mode", ["bm25", "hybrid", "dense"])
def test_retrieval_modes_of_an_embedded_knowledge_base(fake_server: FakeOpenAIServer, mode: str) -> None:
    make_kb("guide", GUIDE_FILES, embedder="hash")
    at = _app()
    at.sidebar.radio[0].set_value(mode).run()
    at.chat_input(key="question").set_value("How do I start the model server?").run()
    assert not at.exception, at.exception
    assert any(e.label.startswith("[1] serving.md") for e in at.expander)
