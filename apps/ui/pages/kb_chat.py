"""Knowledge-base chat: choose or create a knowledge base, add files, ask questions, read cited answers."""

from __future__ import annotations

from typing import Any

import streamlit as st

from apps.ui import common
from apps.ui.chat import ChatTurn, answer_markdown, ask, format_scores
from apps.ui.jobs import JOBS, Job
from apps.ui.uploads import make_ingest_work, save_uploads, supported_types_text, upload_dir
from llm_backend.errors import RagentError

EMBEDDERS = {
    "none": "none: BM25 only (fastest to build; good in Chinese and English)",
    "minilm": "minilm: MiniLM dense + BM25 (English)",
    "e5": "e5: multilingual e5 dense + BM25 (best, slow to build on a CPU)",
}
MODES = {"hybrid": "hybrid (dense + BM25)", "dense": "dense (embeddings)", "bm25": "BM25 (words)"}
RERANKERS = {
    "none": "none",
    "llm": "the chat model picks the passages",
    "server": "the server's /rerank endpoint",
    "cross-encoder": "a cross-encoder model folder",
}

settings, status, state = common.page_start(chats={}, ingest_jobs={}, upload_refused={}, ingest_shown=set())
registry = common.kb_registry(settings)


# -- sidebar: knowledge base and retrieval settings ----------------------------------------------------------------------
with st.sidebar:
    st.subheader("Knowledge base")
    names = registry.names()
    kb_name = common.select_kb(names, label="Ask this knowledge base")
    with st.expander("Create a knowledge base", expanded=not names), st.form("create_kb", clear_on_submit=True, border=False):
        new_name = st.text_input("Name", placeholder="my-docs", help="Letters, digits, '.', '_' and '-'.")
        embedder = st.selectbox("Embedder", list(EMBEDDERS), format_func=EMBEDDERS.__getitem__)
        description = st.text_input("Description (optional)")
        if st.form_submit_button("Create", icon=":material/add:"):
            try:
                registry.create(new_name.strip(), embedder=embedder, description=description)
            except RagentError as exc:
                st.error(str(exc))
            else:
                common.request_kb(new_name.strip())
                st.rerun()

    st.subheader("Retrieval")
    k = st.slider("Passages in the prompt (top-k)", 1, 10, 3, key="top_k")
    kb_embedder = None
    if kb_name:
        try:
            kb_embedder = registry.open(kb_name).manifest.embedder
        except RagentError:
            kb_embedder = None
    mode_options = ["bm25"] if kb_embedder == "none" else list(MODES)
    mode = st.radio("Search", mode_options, format_func=MODES.__getitem__, key=f"mode_{kb_embedder}")
    if kb_embedder == "none":
        st.caption("This knowledge base has no embedder, so it is searched by words (BM25) only.")
    rerank = st.selectbox("Rerank", list(RERANKERS), format_func=lambda r: f"{r}: {RERANKERS[r]}" if r != "none" else "none", key="rerank")
    ce_path = st.text_input("Cross-encoder folder", placeholder="~/models/bge-reranker-base") if rerank == "cross-encoder" else ""
    follow_ups = st.toggle("Rewrite follow-up questions", value=True, help="Use the conversation to turn a follow-up into a stand-alone query (one extra model call).")
    refuse = st.toggle(
        "Say so when the passages do not answer", value=True, key="refuse",
        help="English questions: when the passages seem not to answer (e5 closeness and shared words, or a figure or name of the question "
             "that no passage states), say so and quote the closest passage instead of asking the model.",
    )
    with st.expander("Generation"):
        context_tokens = st.slider("Context budget (tokens)", 200, 2000, 800, step=100, help="Prompt processing is the slow part on a CPU: keep it small.")
        max_tokens = st.slider("Longest answer (tokens)", 64, 1024, 320, step=32)
    if kb_name and st.button("New conversation", icon=":material/restart_alt:"):
        state["chats"][kb_name] = []


# -- main area -----------------------------------------------------------------------------------------------------------
st.title("Knowledge-base chat")
if not kb_name:
    st.info("There are no knowledge bases yet. Create one in the sidebar, then add your files (or run `ragent app --with-default-kb` for the user guide).", icon=":material/library_add:")
    st.stop()

try:
    kb = registry.open(kb_name)
    summary = kb.summary()
except RagentError as exc:
    common.show_error(exc, f"Opening knowledge base {kb_name!r}")
    st.stop()
    raise

job: Job | None = JOBS.get(state["ingest_jobs"].get(kb_name))
empty = summary["chunks"] == 0
st.caption(
    f"**{kb_name}** · {summary['files']} files · {summary['chunks']} chunks · embedder {summary['embedder']}"
    + (f" · {summary['description']}" if summary.get("description") else "")
)


def _render_job(job_id: str) -> None:
    current = JOBS.get(job_id)
    if current is None:
        return
    if current.running:
        label = f"Adding files: {current.done} of {current.total}" + (f" · {current.message}" if current.message else "")
        st.progress(current.fraction, text=label)
    elif current.status == "failed":
        st.error(f"**Adding files failed.** {current.error}")
    else:
        st.success(f"Files added: {current.message}", icon=":material/task_alt:")
    for note in current.notes:
        st.warning(f"Not added: {note}", icon=":material/block:")
    if not current.running and job_id not in state["ingest_shown"]:
        # The file and chunk counts above changed: redraw the whole page once.
        state["ingest_shown"].add(job_id)
        st.rerun(scope="app")


with st.expander("Add files", expanded=empty, icon=":material/upload_file:"):
    with st.form("upload", clear_on_submit=True, border=False):
        uploads = st.file_uploader(
            f"Files ({supported_types_text()})", accept_multiple_files=True, key="uploader",
            help="Large files are read in the background: you can keep chatting meanwhile.",
        )
        submitted = st.form_submit_button("Add to knowledge base", icon=":material/upload:", disabled=bool(job and job.running))
    if submitted:
        files = [(f.name, f.getvalue()) for f in uploads or []]
        if not files:
            state["upload_refused"][kb_name] = [("", "choose one or more files first.")]
        else:
            saved = save_uploads(files, upload_dir(settings.home, kb_name))
            state["upload_refused"][kb_name] = [(r.name, r.reason) for r in saved.refused]
            if saved.paths:
                job = JOBS.submit("ingest", f"Adding {len(saved.paths)} files to {kb_name}", make_ingest_work(registry, kb_name, saved.paths))
                state["ingest_jobs"][kb_name] = job.id
    for name, reason in state["upload_refused"].get(kb_name, []):
        st.error(f"**{name}** was not added: {reason}" if name else f"Nothing to add: {reason}", icon=":material/block:")
    if job is not None:
        st.fragment(_render_job, run_every=1.0 if job.running else None)(job.id)

if empty and not (job and job.running):
    st.info(
        f"The knowledge base **{kb_name}** is empty, so there is nothing to answer from yet. Add files above "
        f"({supported_types_text()}), or from a terminal: `ragent kb ingest {kb_name} PATH`.",
        icon=":material/inbox:",
    )


def _render_sources(turn: ChatTurn) -> None:
    sources: list[dict[str, Any]] = turn.get("sources") or []
    if not sources:
        return
    if turn.get("inferred"):
        st.caption("Sources matched to the answer's sentences by their words (the model did not number them itself).")
    for src in sources:
        with st.expander(f"[{src['number']}] {src['label']}", icon=":material/description:"):
            st.markdown(f"**File:** `{src['file']}`")
            if src.get("where"):
                st.markdown(f"**Where:** {src['where']}")
            st.caption(format_scores(src.get("scores") or {}))
            st.code(src.get("snippet") or "", language=None, wrap_lines=True)


def _render_answer(turn: ChatTurn) -> None:
    """The answer text: the model's words plain, quotations of the passages as block quotes, and a note on both."""
    st.markdown(answer_markdown(turn))
    if turn.get("role") == "assistant" and turn.get("sources"):
        quoted = any(s["kind"] == "quote" for s in turn.get("segments") or [])
        note = "Plain text: the model's words; every number and name in them is in the passage cited."
        if quoted:
            note += " Block quotes: the passage's own words, quoted."
        if turn.get("dropped"):
            note += f" {turn['dropped']} sentence(s) stating a number or name no passage holds were left out."
        st.caption(note)


def _render_turn(turn: ChatTurn) -> None:
    with st.chat_message(turn["role"]):
        if turn.get("content"):
            _render_answer(turn)
        if turn.get("error"):
            st.error(turn["error"], icon=":material/error:")
        if turn["role"] == "assistant":
            if turn.get("query") and turn.get("query") != turn.get("question"):
                st.caption(f"Searched for: {turn['query']}")
            _render_sources(turn)


history: list[ChatTurn] = state["chats"].setdefault(kb_name, [])
for past in history:
    _render_turn(past)

question = st.chat_input(
    f"Ask {kb_name} a question" if not empty else "Add files to this knowledge base first", disabled=empty, key="question"
)
if question:
    earlier = list(history)
    user_turn: ChatTurn = {"role": "user", "content": question}
    history.append(user_turn)
    _render_turn(user_turn)
    with st.chat_message("assistant"):
        placeholder = st.empty()
        streamed: list[str] = []

        def _on_delta(delta: str) -> None:
            streamed.append(delta)
            placeholder.markdown("".join(streamed) + " ▌")

        turn: ChatTurn
        if not status["ok"]:
            # Retrieval still works, but the answer needs the model: say so before trying.
            turn = {"role": "assistant", "content": "", "question": question,
                    "error": f"The model server is not reachable, so there is no answer. {status['message']}"}
        else:
            try:
                reranker = None
                if rerank == "cross-encoder":
                    if not ce_path.strip():
                        raise RagentError("give the folder of a cross-encoder model in the sidebar, or choose another reranker.")
                    reranker = common.cross_encoder(ce_path.strip())
                elif rerank != "none":
                    from core.rag import make_reranker

                    reranker = make_reranker(rerank, client=common.chat_client(settings))
                with st.spinner("Searching and reading…"):
                    # While files are being added, keep asking the version of the base the session last used, so
                    # retrieval does not rebuild indexes the ingestion is still writing.
                    versions = state.setdefault("kb_versions", {})
                    current = JOBS.get(state["ingest_jobs"].get(kb_name))
                    if not (current and current.running and versions.get(kb_name)):
                        versions[kb_name] = common.kb_version(settings, kb_name)
                    retriever = common.retriever(settings, kb_name, mode, versions[kb_name])
                    tok = common.tokenizer(str(settings.models_dir))
                turn = ask(
                    question, retriever=retriever, client=common.chat_client(settings), history=earlier if follow_ups else (),
                    reranker=reranker, k=k, context_tokens=context_tokens, max_tokens=max_tokens, tokenizer=tok, on_delta=_on_delta,
                    refuse=refuse,
                )
                turn["question"] = question
            except RagentError as exc:
                partial = getattr(exc, "partial", None) or "".join(streamed)
                turn = {"role": "assistant", "content": partial, "question": question, "error": f"No answer: {exc}"}
            except Exception as exc:  # a bug below us: a message, not a traceback
                common.log.exception("answering %r failed", question)
                turn = {"role": "assistant", "content": "".join(streamed), "question": question,
                        "error": f"No answer: unexpected error ({type(exc).__name__}: {exc}). See the app's log."}
        placeholder.empty()
        if turn.get("content"):
            _render_answer(turn)
        if turn.get("error"):
            st.error(turn["error"], icon=":material/error:")
        if turn.get("query") and turn.get("query") != question:
            st.caption(f"Searched for: {turn['query']}")
        _render_sources(turn)
    history.append(turn)
