"""Errors of the knowledge layer; all are :class:`~llm_backend.errors.RagentError` s with actionable messages."""

from __future__ import annotations

from llm_backend.errors import ConfigError, RagentError


class KnowledgeBaseError(RagentError):
    """A knowledge-base operation failed; the message says which base and what to do."""


class KnowledgeBaseNotFoundError(KnowledgeBaseError):
    """No knowledge base of that name in the registry."""


class KnowledgeBaseExistsError(KnowledgeBaseError):
    """``create`` was asked for a name that is taken."""


class KnowledgeBaseBusyError(KnowledgeBaseError):
    """Another process is ingesting into the same knowledge base."""


class EmbedderMismatchError(ConfigError):
    """A query (or ingestion) used a different embedding model than the one the knowledge base was built with."""
