"""What every page shares: settings, the model client, the backend status indicator, the knowledge-base
selector, and heavy objects built once per process (``st.cache_resource``: retrievers, tokenizer, rerankers).

The model server is found the way every ``ragent`` command finds it: ``Settings.load()`` (``RAGENT_BASE_URL``,
``RAGENT_MODEL``, ``$RAGENT_HOME/config.yaml``...). Nothing heavy happens at import time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from llm_backend.errors import BackendError, RagentError
from llm_backend.settings import Settings

if TYPE_CHECKING:
    from knowledge.registry import KnowledgeBaseRegistry
    from knowledge.tokenizer import TokenCounter
    from knowledge.types import Retriever
    from llm_backend.client import OpenAIChatClient

log = logging.getLogger(__name__)

KB_STATE = "kb"
"""Session-state key of the knowledge base chosen on any page."""
KB_ENV = "RAGENT_APP_KB"
"""Environment variable naming the knowledge base selected at start (``ragent app --with-default-kb`` sets it)."""
STATUS_TTL_S = 5.0


# -- settings and clients --------------------------------------------------------------------------------------------
def load_settings() -> Settings:
    """The resolved settings, with the URL of the server ``ragent serve`` started when none is configured (as the
    CLI does); a broken config stops the page with its message."""
    from llm_backend.launcher import discovered_base_url

    try:
        settings = Settings.load()
        url = discovered_base_url(settings)
        return settings if url == settings.base_url else settings.model_copy(update={"base_url": url})
    except RagentError as exc:
        st.error(f"**The configuration cannot be read.** {exc}")
        st.stop()
        raise  # unreachable: st.stop() raises


@st.cache_resource(show_spinner=False, max_entries=8)
def _client(base_url: str, model: str | None, home: str, _settings: Settings) -> OpenAIChatClient:
    from llm_backend.client import OpenAIChatClient

    return OpenAIChatClient(_settings)


def chat_client(settings: Settings, model: str | None = None) -> OpenAIChatClient:
    """The shared client for ``settings`` (one per base URL and model). Retries are capped at one so a server
    that is down is reported within seconds."""
    chosen = model or settings.model
    tuned = settings.model_copy(update={"max_retries": min(settings.max_retries, 1), "model": chosen})
    return _client(settings.base_url, chosen, str(settings.home), tuned)


@st.cache_data(ttl=STATUS_TTL_S, show_spinner=False)
def backend_status(base_url: str, api_key_set: bool = False) -> dict[str, Any]:
    """``{"ok": bool, "models": [...], "message": str}`` for the server at ``base_url`` (cached a few seconds)."""
    from llm_backend.client import OpenAIChatClient

    settings = Settings.load(base_url=base_url, max_retries=0, connect_timeout=2.0, timeout=5.0)
    try:
        models = OpenAIChatClient(settings).models()
    except BackendError as exc:
        return {"ok": False, "models": [], "message": str(exc)}
    if not models:
        return {"ok": False, "models": [], "message": f"the server at {base_url} serves no models; start one with `ragent serve`."}
    return {"ok": True, "models": models, "message": f"{', '.join(models)} at {base_url}"}


def status_indicator(settings: Settings) -> dict[str, Any]:
    """Show the model server's state in the sidebar (with the fix when it is down) and return it."""
    status = backend_status(settings.base_url, settings.api_key is not None)
    with st.sidebar:
        if status["ok"]:
            st.success(f"Model server up: {status['message']}", icon=":material/check_circle:")
        else:
            st.error(f"**Model server down.** {status['message']}", icon=":material/error:")
    return status


def page_start(**state_defaults: Any) -> tuple[Settings, dict[str, Any], Any]:
    """What every page does first: load the settings, show the model server's state in the sidebar, and give the
    session-state keys their first values (``state_defaults``, set only when missing). Returns
    ``(settings, status, st.session_state)``."""
    settings = load_settings()
    status = status_indicator(settings)
    state = st.session_state
    for key, value in state_defaults.items():
        state.setdefault(key, value)
    return settings, status, state


def server_down_message(status: dict[str, Any]) -> None:
    """The main-area message when a page needs the model server and it is down."""
    st.error(f"**The model server is not reachable, so this cannot run now.** {status['message']}", icon=":material/cloud_off:")


def show_error(exc: Exception, what: str) -> None:
    """One readable message for a failure (our errors carry the fix in their text)."""
    if isinstance(exc, RagentError):
        st.error(f"**{what} failed.** {exc}", icon=":material/error:")
    else:
        log.exception("%s failed", what)
        st.error(f"**{what} failed** with an unexpected error ({type(exc).__name__}: {exc}). See the app's log for details.")


# -- knowledge bases ---------------------------------------------------------------------------------------------------
def kb_registry(settings: Settings) -> KnowledgeBaseRegistry:
    """The knowledge-base registry of the data home (cheap: nothing is opened)."""
    from knowledge.registry import KnowledgeBaseRegistry

    return KnowledgeBaseRegistry(settings.home, models_dir=settings.models_dir)


def select_kb(names: list[str], *, label: str = "Knowledge base", allow_none: bool = False, key: str = KB_STATE) -> str | None:
    """A selectbox of knowledge bases that remembers the choice across pages (and honours ``RAGENT_APP_KB``)."""
    pending = st.session_state.pop(f"{key}_pending", None)
    if pending in names:
        st.session_state[key] = pending
    options: list[str | None] = [None, *names] if allow_none else list(names)
    current = st.session_state.get(key)
    if current not in options:
        preferred = None if allow_none else os.environ.get(KB_ENV)
        st.session_state[key] = preferred if preferred in names else (options[0] if options else None)
    if not options:
        return None
    choice = st.selectbox(label, options, key=key, format_func=lambda n: "(none)" if n is None else str(n))
    return choice


def request_kb(name: str, key: str = KB_STATE) -> None:
    """Select ``name`` in the knowledge-base selectbox at the next run (the widget's own key cannot be set after
    it was drawn)."""
    st.session_state[f"{key}_pending"] = name


def kb_version(settings: Settings, name: str) -> str:
    """Changes whenever the knowledge base's manifest does (so cached retrievers are rebuilt after an ingest)."""
    path = Path(settings.home) / "kb" / name / "manifest.json"
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_mtime_ns}-{stat.st_size}"


@st.cache_resource(show_spinner="Opening the knowledge base…", max_entries=8)
def _retriever(home: str, name: str, mode: str, version: str) -> Retriever:
    from core.rag import open_retriever

    return open_retriever(name, mode=mode, settings=Settings.load(home=Path(home)))


def retriever(settings: Settings, name: str, mode: str, version: str | None = None) -> Retriever:
    """The retriever of knowledge base ``name`` in ``mode``, built once per ``version`` of the base (default: its
    current version, see :func:`kb_version`)."""
    return _retriever(str(settings.home), name, mode, version or kb_version(settings, name))


@st.cache_resource(show_spinner=False, max_entries=4)
def tokenizer(models_dir: str) -> TokenCounter:
    """The chat model's tokenizer (or the packaged fallback), to fit passages into the prompt budget."""
    from knowledge.tokenizer import default_tokenizer

    return default_tokenizer(Path(models_dir))


@st.cache_resource(show_spinner="Loading the reranker…", max_entries=2)
def cross_encoder(path: str) -> Any:
    """A cross-encoder reranker from a local folder, loaded once."""
    from core.rag import CrossEncoderReranker

    reranker = CrossEncoderReranker(path)
    reranker.warm_up()
    return reranker
