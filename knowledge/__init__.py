"""Indexing: documents -> chunks -> embeddings -> store, plus the knowledge-base registry and ingestion.

The public entry points are :class:`knowledge.registry.KnowledgeBaseRegistry` and
:class:`knowledge.base.KnowledgeBase`; the data types are in :mod:`knowledge.types`.
"""
