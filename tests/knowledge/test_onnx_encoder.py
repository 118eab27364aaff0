"""The ONNX engine of MiniLM: the same vectors as sentence-transformers (the reference), cached export, fallback."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from knowledge import onnx_encoder
from knowledge.embedders import MiniLMEmbedder
from knowledge.onnx_encoder import OnnxSentenceEncoder, OnnxUnavailableError, check_mean_pooling_model
from knowledge.tokenizer import minilm_model_dir
from llm_backend.errors import ConfigError

TEXTS = [
    "",
    "hello",
    "Mount Logan is the highest mountain in Canada.",
    "深度学习是机器学习的一个分支，Transformer 用注意力机制。",
    "word " * 600,  # far over the 256-token limit: truncated like sentence-transformers truncates
    "The Transformer uses attention. " * 20,
    *[f"sentence {i}: cats, dogs and {'very ' * (i % 7)}long tails" for i in range(37)],
]


def test_onnx_vectors_equal_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_model_dir()), device="cpu").encode(TEXTS, batch_size=32, normalize_embeddings=True)
    emb = MiniLMEmbedder(engine="onnx", batch_size=16)
    ours = emb.embed_documents(TEXTS)
    assert emb.engine == "onnx" and emb.name == "minilm"
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5
    assert np.allclose(emb.embed_query(TEXTS[2]), reference[2], atol=1e-5)
    # Order and batching do not change a text's vector.
    assert np.allclose(emb.embed_documents(TEXTS[::-1])[::-1], ours, atol=1e-6)
    assert np.allclose(MiniLMEmbedder(engine="onnx", batch_size=3).embed_documents(TEXTS), ours, atol=1e-6)
    assert emb.embed_documents([]).shape == (0, 384)


def test_a_cached_export_is_loaded_not_made_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = OnnxSentenceEncoder.for_model(minilm_model_dir(), tmp_path / "a")  # exported now, or earlier in this process
    assert first.onnx_path.is_file() and first.onnx_path.name == f"{onnx_encoder.cache_key(minilm_model_dir())}.onnx"
    assert OnnxSentenceEncoder.for_model(minilm_model_dir(), tmp_path / "a") is first  # one encoder per process
    (tmp_path / "b").mkdir()
    shutil.copy(first.onnx_path, tmp_path / "b" / first.onnx_path.name)
    monkeypatch.setattr(onnx_encoder, "_sessions", {})  # as in a new process

    def no_export(*_: object) -> dict[str, int]:
        raise AssertionError("exported again although the file is cached")

    monkeypatch.setattr(onnx_encoder, "export", no_export)
    again = OnnxSentenceEncoder.for_model(minilm_model_dir(), tmp_path / "b")
    assert again is not first and again.onnx_path.parent == tmp_path / "b"
    assert np.allclose(again.encode(["a cat"]), first.encode(["a cat"]), atol=1e-6)


def test_a_damaged_cached_file_is_exported_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    good = OnnxSentenceEncoder.for_model(minilm_model_dir(), tmp_path / "a")
    damaged = tmp_path / "b" / good.onnx_path.name
    damaged.parent.mkdir()
    damaged.write_bytes(good.onnx_path.read_bytes()[:1000])  # a file cut short
    exports: list[Path] = []

    def copy_good(_model_dir: Path, target: Path) -> dict[str, int]:
        exports.append(target)
        shutil.copy(good.onnx_path, target)
        return {}

    monkeypatch.setattr(onnx_encoder, "_sessions", {})
    monkeypatch.setattr(onnx_encoder, "export", copy_good)
    again = OnnxSentenceEncoder.for_model(minilm_model_dir(), tmp_path / "b")
    assert exports == [damaged]
    assert np.allclose(again.encode(["a cat"]), good.encode(["a cat"]), atol=1e-6)


def test_auto_falls_back_to_torch_with_a_warning_and_onnx_says_what_to_do(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> dict[str, int]:
        raise OnnxUnavailableError("the ONNX export needs onnx (No module named 'onnx')")

    monkeypatch.setattr(onnx_encoder, "_sessions", {})
    monkeypatch.setattr(onnx_encoder, "export", broken)
    with caplog.at_level(logging.WARNING):
        auto = MiniLMEmbedder()
        vectors = auto.embed_documents(["a cat", "a dog"])
    assert auto.engine == "torch" and vectors.shape == (2, 384)
    assert any("runs on torch" in r.getMessage() and "No module named 'onnx'" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="RAGENT_MINILM_ENGINE=torch"):
        MiniLMEmbedder(engine="onnx").embed_query("a cat")


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGENT_MINILM_ENGINE", "torch")
    assert MiniLMEmbedder().engine == "torch"
    monkeypatch.setenv("RAGENT_MINILM_ENGINE", "gpu")
    with pytest.raises(ConfigError, match="unknown MiniLM engine 'gpu'.*auto, onnx, torch"):
        MiniLMEmbedder()
    assert MiniLMEmbedder(quantize=True, engine="onnx").engine == "torch"  # int8 is a torch transformation


def test_only_mean_pooling_folders_are_accepted(tmp_path: Path) -> None:
    assert check_mean_pooling_model(minilm_model_dir()) == 256
    folder = tmp_path / "cls-model"
    shutil.copytree(minilm_model_dir(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.write_text(json.dumps({**config, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(OnnxUnavailableError, match="mean pooling"):
        check_mean_pooling_model(folder)
    with pytest.raises(OnnxUnavailableError, match="not a readable"):
        check_mean_pooling_model(tmp_path)
