"""Entry script of the Streamlit app: ``ragent app`` (or ``streamlit run apps/ui/app.py``).

Three pages: the knowledge-base chat (default), the agent runner and the evaluation dashboard.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run` puts this folder, not the repository, on sys.path; make `import apps...` work from a checkout.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from apps.logs import configure_logging  # noqa: E402

configure_logging()  # RAGENT_LOG_LEVEL, passed on by `ragent app`; library log lines go through our handler

st.set_page_config(page_title="ragent", page_icon=":material/menu_book:", layout="wide")

pages = [
    st.Page("pages/kb_chat.py", title="Knowledge-base chat", icon=":material/forum:", url_path="chat", default=True),
    st.Page("pages/agent_runner.py", title="Agent runner", icon=":material/smart_toy:", url_path="agent"),
    st.Page("pages/eval_dashboard.py", title="Evaluation", icon=":material/leaderboard:", url_path="evaluation"),
]
st.navigation(pages).run()
