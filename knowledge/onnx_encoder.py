"""BERT-family encoders run by ONNX Runtime: export once, fuse, cache, mean-pool. MiniLM lives here; the
multilingual e5 engine (:mod:`knowledge.e5_onnx`) shares the export, the cache and the pooling.

The model's own weights are exported once with ``torch.onnx`` (eager attention, so that ONNX Runtime's BERT
optimizer can fuse each layer's attention, GELU and layer norms), fused by ``onnxruntime.transformers.optimizer``
and cached under the data home (e.g. ``models/minilm-onnx/<key>.onnx``; the key covers the source weights and the
torch, onnx and onnxruntime versions); a cached file ONNX Runtime cannot load is exported again. Everything stays
fp32: MiniLM's vectors equal the sentence-transformers ones within ~1e-6 (tests check it against the torch path),
so knowledge bases and the embedding cache keep the name ``minilm`` whichever engine wrote them.

Encoding needs neither torch nor sentence-transformers: the tokenizer is the model's ``tokenizer.json`` through the
``tokenizers`` library, truncated at the model's ``max_seq_length``; texts are sorted by length and padded per
batch (as sentence-transformers does), mean-pooled over the attention mask and L2-normalised.

Why not ``SentenceTransformer(backend="onnx")``: it needs ``optimum-onnx``, whose current release pins
``transformers<4.58`` (this environment runs transformers 5), and its export leaves attention unfused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger(__name__)

EXPORT_VERSION = "1"
"""Bumped when the export recipe changes, so that cached files are rebuilt."""

_sessions: dict[str, Any] = {}
_sessions_lock = threading.RLock()
T = TypeVar("T")


class OnnxUnavailableError(RuntimeError):
    """The ONNX engine cannot run here (a package is missing or the export failed); the message says why."""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def check_mean_pooling_model(model_dir: Path) -> int:
    """The ``max_seq_length`` of a sentence-transformers folder laid out as Transformer -> mean Pooling ->
    Normalize (what this encoder reproduces); :class:`OnnxUnavailableError` for any other layout."""
    try:
        modules = [m.get("type", "") for m in json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))]
        pooling = _read_json(model_dir / "1_Pooling" / "config.json")
        st_config = _read_json(model_dir / "sentence_bert_config.json")
    except (OSError, ValueError) as exc:
        raise OnnxUnavailableError(f"{model_dir} is not a readable sentence-transformers folder: {exc}") from exc
    expected = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling", "sentence_transformers.models.Normalize"]
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    )
    if modules != expected or not mean_only or st_config.get("do_lower_case"):
        raise OnnxUnavailableError(f"{model_dir}: only Transformer + mean pooling + Normalize models are supported by the ONNX engine")
    return int(st_config.get("max_seq_length") or 512)


def cache_key(model_dir: Path) -> str:
    """Names the exported file: changes with the source weights or with any package that shapes the export."""
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    parts = [EXPORT_VERSION, str(model_dir.resolve()), str(stat.st_size), str(stat.st_mtime_ns)]
    parts += library_versions()
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def library_versions() -> list[str]:
    """``package=version`` of every package that shapes an export (part of the cache keys)."""
    return [f"{p}={_version(p)}" for p in ("torch", "onnx", "onnxruntime", "transformers")]


def _quiet_new_loggers(known: set[str]) -> None:
    for name in set(logging.root.manager.loggerDict) - known:  # the optimizer's modules log each pass at INFO
        if not name.startswith(("knowledge", "llm_backend", "core", "apps", "evaluation")):
            logging.getLogger(name).setLevel(logging.WARNING)


def export_bert(bert: Any, target: Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Export a transformers BERT module (eager attention) to ``target`` (written atomically), fused by ONNX
    Runtime's BERT optimizer; returns the fused-operator counts. Inputs ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (batch x tokens, int64); output ``last_hidden_state``."""
    known_loggers = set(logging.root.manager.loggerDict)
    try:
        import onnx  # noqa: F401  (torch.onnx needs it)
        import torch
        from onnxruntime.transformers import optimizer
    except ImportError as exc:
        raise OnnxUnavailableError(f"the ONNX export needs torch, transformers, onnx and onnxruntime ({exc}); run `make install`") from exc
    _quiet_new_loggers(known_loggers)

    class _LastHidden(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    example = torch.ones((2, 8), dtype=torch.int64)
    dims = {0: "batch", 1: "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # the TorchScript exporter's notes on indexing and deprecation
            torch.onnx.export(
                _LastHidden(bert.eval()), (example, example, torch.zeros_like(example)), str(raw),
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": dims, "attention_mask": dims, "token_type_ids": dims, "last_hidden_state": dims},
                opset_version=17, dynamo=False,
            )
        known_loggers = set(logging.root.manager.loggerDict)
        fused = optimizer.optimize_model(
            str(raw), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1, use_gpu=False,
        )
        _quiet_new_loggers(known_loggers)
        stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
        out = Path(tmp) / "fused.onnx"
        fused.save_model_to_file(str(out))
        os.replace(out, target)
    return stats


def export(model_dir: Path, target: Path) -> dict[str, int]:
    """Export ``model_dir``'s BERT to ``target`` (written atomically) and fuse it; returns the fused-operator counts."""
    try:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise OnnxUnavailableError(f"the ONNX export needs transformers ({exc}); run `make install`") from exc
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of an ingest's progress bar
    config = _read_json(model_dir / "config.json")
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    return export_bert(bert, target, num_heads=int(config.get("num_attention_heads", 0)), hidden_size=int(config.get("hidden_size", 0)))


def run_export(what: str, make: Callable[[Path], dict[str, int]], path: Path, seconds: str) -> None:
    """``make(path)``, said once at warning level (what the CLI shows: why this first use pauses); any failure of
    the exporter becomes :class:`OnnxUnavailableError` (the caller may fall back to another engine)."""
    log.warning("converting %s to ONNX Runtime once (about %s); cached at %s", what, seconds, path)
    try:
        stats = make(path)
    except OnnxUnavailableError:
        raise
    except Exception as exc:
        raise OnnxUnavailableError(f"exporting {what} to ONNX failed: {type(exc).__name__}: {exc}") from exc
    log.info("ONNX export fused %s", stats)


def _export_logged(model_dir: Path, path: Path) -> None:
    what = model_dir.parent.name if model_dir.name == "model" else model_dir.name
    run_export(what, lambda target: export(model_dir, target), path, "10 s")


def load_cached(path: Path, build: Callable[[Path], None], open_: Callable[[Path], T]) -> T:
    """The object ``open_(path)`` opens, one per process and file name (the name carries the cache key): ``build(path)`` first when the file is missing,
    and again (after a warning) when the cached file cannot be opened, e.g. cut short on disk."""
    with _sessions_lock:
        cached = _sessions.get(path.name)  # the name carries the key: one per process and model
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        if not path.is_file():
            build(path)
        try:
            obj = open_(path)
        except OnnxUnavailableError:
            raise
        except Exception as exc:
            log.warning("the cached ONNX model %s cannot be loaded (%s); exporting it again", path, exc)
            path.unlink(missing_ok=True)
            build(path)
            obj = open_(path)
        _sessions[path.name] = obj
        return obj


def loaded_model(name: str) -> Any:
    """The object :func:`load_cached` holds for the file called ``name`` in this process, or None."""
    with _sessions_lock:
        return _sessions.get(name)


def make_session(path: Path, *, threads: int = 0, spin: bool = True) -> Any:
    """An ONNX Runtime CPU session on ``path`` with every graph optimisation; ``threads`` intra-op threads (0: one
    per core); ``spin=False`` lets idle threads sleep (better when the cores are shared)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise OnnxUnavailableError(f"the ONNX engine needs onnxruntime ({exc}); run `make install`") from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def mean_pool(session: Any, inputs: set[str], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The model's last hidden state averaged over the unmasked tokens, ``(batch, dim)`` fp32, not normalised."""
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    hidden = session.run(None, {k: v for k, v in feeds.items() if k in inputs})[0]
    weights = mask[..., None].astype(np.float32)
    return np.asarray((hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None), dtype=np.float32)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    return np.asarray(vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None), dtype=np.float32)


class OnnxSentenceEncoder:
    """Encodes texts like ``SentenceTransformer.encode(normalize_embeddings=True)`` for a mean-pooling BERT folder."""

    def __init__(self, model_dir: Path, onnx_path: Path, max_seq_length: int) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise OnnxUnavailableError(f"the ONNX engine needs tokenizers ({exc}); run `make install`") from exc
        self.model_dir, self.onnx_path, self.max_seq_length = model_dir, onnx_path, max_seq_length
        self._session = make_session(onnx_path)
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_seq_length)
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0, pad_token="[PAD]")
        self._tokenizer = tokenizer

    @classmethod
    def for_model(cls, model_dir: Path, cache_dir: Path) -> OnnxSentenceEncoder:
        """The encoder of ``model_dir``, exporting it into ``cache_dir`` the first time; one per process and model."""
        max_seq_length = check_mean_pooling_model(model_dir)
        path = cache_dir / f"{cache_key(model_dir)}.onnx"
        return load_cached(path, lambda p: _export_logged(model_dir, p), lambda p: cls(model_dir, p, max_seq_length))

    def encode(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors; longest texts first in batches of ``batch_size``."""
        if not texts:
            raise ValueError("encode() needs at least one text")
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            pooled = l2_normalise(mean_pool(self._session, self._inputs, ids, mask))
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[idx] = pooled
        assert out is not None
        return out
