"""``ragent api``: an OpenAI-compatible HTTP service over knowledge bases, agents and the backend's models.

- :func:`apps.api.app.create_app` builds the FastAPI app; :mod:`apps.api.chat` routes chat completions
  (:mod:`apps.api.kb_chat`, :mod:`apps.api.agent_chat`, pass-through); :mod:`apps.api.routes` serves ``/health``,
  ``/v1/models`` and ``/v1/embeddings``; :mod:`apps.api.errors` shapes every error as OpenAI does.
"""

from apps.api.app import API_KEY_ENV, DEFAULT_PORT, create_app

__all__ = ["API_KEY_ENV", "DEFAULT_PORT", "create_app"]
