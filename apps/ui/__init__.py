"""The Streamlit app: knowledge-base chat, agent runner and evaluation dashboard (``ragent app``).

``app.py`` is the entry script (``streamlit run apps/ui/app.py``); each page is a script in ``pages/``. The page
scripts stay thin: they parse input, call ``core``/``knowledge``/``evaluation`` and render. Helpers that do not need
Streamlit (chat turns, uploads, background jobs, the default knowledge base) live beside them and are unit-tested.
"""

from pathlib import Path

APP_PATH = Path(__file__).with_name("app.py")
"""The entry script given to ``streamlit run``."""
