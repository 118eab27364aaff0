"""``GET /health``, ``GET /v1/models`` and ``POST /v1/embeddings``."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from apps.api.errors import ApiError, model_not_found
from apps.api.schemas import EmbeddingRequest
from apps.api.service import KB_PREFIX, ApiService

router = APIRouter()
health_router = APIRouter()


def _service(request: Request) -> ApiService:
    service: ApiService = request.app.state.service
    return service


@health_router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """``{"status": "ok", "backend": true|false}``: this service is up; ``backend`` says whether the model server
    answers (kb search and embeddings work without it)."""
    service = _service(request)
    backend = await asyncio.to_thread(_backend_ok, service)
    return {"status": "ok", "backend": backend, "knowledge_bases": len(service.knowledge_bases())}


def _backend_ok(service: ApiService) -> bool:
    health = getattr(service.client, "health", None)
    return bool(health()) if callable(health) else True


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The backend's models, ``kb:<name>`` for every knowledge base, and ``agent:<tools>`` presets."""
    ids = await asyncio.to_thread(_service(request).model_ids)
    created = int(time.time())
    return {"object": "list", "data": [{"id": m, "object": "model", "created": created, "owned_by": owner} for m, owner in ids]}


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    """Vectors from a knowledge base's embedder (``kb:<name>``) or an embedder by name (``e5``, ``minilm``, ...);
    other names go to the backend's ``/v1/embeddings``."""
    service = _service(request)
    texts = body.texts()
    if any(not isinstance(t, str) for t in texts):
        raise ApiError(400, "input: give a string or a list of strings (token arrays are not supported)", code="invalid_body")
    async with service.slot():
        vectors = await asyncio.to_thread(_embed, service, body, texts)
    if body.dimensions is not None and vectors.shape[1] != body.dimensions:
        raise ApiError(400, f"dimensions: {body.model!r} gives {vectors.shape[1]}-dimensional vectors, not {body.dimensions}", code="invalid_body")
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)} for i, v in enumerate(vectors)]
    n = sum(len(t.split()) for t in texts)  # our embedders do not report tokens; words are a fair stand-in
    return {"object": "list", "data": data, "model": body.model, "usage": {"prompt_tokens": n, "total_tokens": n}}


def _embed(service: ApiService, body: EmbeddingRequest, texts: list[str]) -> np.ndarray:
    embedder = service.embedder(body.model)
    if embedder is not None:
        if body.input_type == "query":
            return np.stack([embedder.embed_query(t) for t in texts]) if texts else np.zeros((0, 0), np.float32)
        return np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    if body.model.startswith(KB_PREFIX) or body.model not in service.backend_models():
        from knowledge.embedders import EMBEDDER_NAMES

        raise model_not_found(
            body.model,
            f"no embedder or backend model called {body.model!r}. Use a knowledge base's embedder as 'kb:<name>' (knowledge "
            f"bases: {', '.join(service.knowledge_bases()) or 'none yet'}) or an embedder name: {', '.join(EMBEDDER_NAMES)}.",
        )
    return np.asarray(service.client.embed(texts, model=body.model), dtype=np.float32)


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return [float(x) for x in vector]
