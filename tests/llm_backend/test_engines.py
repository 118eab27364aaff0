"""Engine command lines are pure functions of the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_backend.engines import llamacpp_command, vllm_command
from llm_backend.errors import ConfigError
from llm_backend.model_assets import ResolvedModel
from llm_backend.settings import Settings

HF = ResolvedModel(Path("/models/qwen"), "qwen", "hf", "hermes")
GGUF = ResolvedModel(Path("/models/q.gguf"), "q", "gguf", None)


def test_vllm_on_cpu_uses_measured_settings() -> None:
    cmd = vllm_command(Settings.load(port=8123), HF, gpu=False, executable="vllm")
    assert cmd.argv == [
        "vllm", "serve", "/models/qwen", "--served-model-name", "qwen", "--host", "127.0.0.1", "--port", "8123",
        "--max-model-len", "4096", "--dtype", "bfloat16", "--enforce-eager",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        "--speculative-config", '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}',
    ]
    assert cmd.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert cmd.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert cmd.env["HF_HUB_OFFLINE"] == "1"
    assert cmd.health_path == "/health"


def test_vllm_on_gpus_passes_parallelism_through() -> None:
    settings = Settings.load(tensor_parallel_size=4, pipeline_parallel_size=2, distributed_executor_backend="ray", engine_args=["--gpu-memory-utilization", "0.8"])
    cmd = vllm_command(settings, HF, gpu=True, executable="vllm")
    argv = " ".join(cmd.argv)
    assert "--tensor-parallel-size 4" in argv
    assert "--pipeline-parallel-size 2" in argv
    assert "--distributed-executor-backend ray" in argv
    assert argv.endswith("--gpu-memory-utilization 0.8")
    assert "--dtype auto" in argv and "--enforce-eager" not in argv
    assert not any(k.startswith("VLLM_CPU") for k in cmd.env)


def test_api_key_goes_through_the_environment_not_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGENT_API_KEY", "sk-abc")
    cmd = vllm_command(Settings.load(), HF, gpu=False, executable="vllm")
    assert "sk-abc" not in " ".join(cmd.argv)
    assert cmd.env["VLLM_API_KEY"] == "sk-abc"


def test_speculative_decoding_can_be_turned_off_or_replaced() -> None:
    assert "--speculative-config" not in vllm_command(Settings.load(speculative="none"), HF, gpu=False, executable="vllm").argv
    own = ["--speculative-config", '{"method":"ngram","num_speculative_tokens":2}']
    argv = vllm_command(Settings.load(engine_args=own), HF, gpu=False, executable="vllm").argv
    assert argv.count("--speculative-config") == 1 and argv[-2:] == own


def test_model_without_tool_parser_gets_no_tool_flags() -> None:
    cmd = vllm_command(Settings.load(), ResolvedModel(Path("/m"), "tiny", "hf", None), gpu=False, executable="vllm")
    assert "--enable-auto-tool-choice" not in cmd.argv


def test_llamacpp_command() -> None:
    cmd = llamacpp_command(Settings.load(threads=2, port=9000), GGUF, python="py")
    assert cmd.argv == [
        "py", "-m", "llama_cpp.server", "--model", "/models/q.gguf", "--model_alias", "q", "--host", "127.0.0.1",
        "--port", "9000", "--n_ctx", "4096", "--n_threads", "2",
    ]


def test_engine_and_model_kind_must_match() -> None:
    with pytest.raises(ConfigError, match="GGUF"):
        llamacpp_command(Settings.load(), HF, python="py")
    with pytest.raises(ConfigError, match="Hugging Face"):
        vllm_command(Settings.load(), GGUF, gpu=False, executable="vllm")


def test_context_is_capped_at_the_checkpoint_length() -> None:
    small = ResolvedModel(Path("/m"), "book-model", "hf", None, max_context=512)
    cmd = vllm_command(Settings.load(max_model_len=4096), small, gpu=False, executable="vllm")
    assert cmd.argv[cmd.argv.index("--max-model-len") + 1] == "512"
    assert ResolvedModel(Path("/m"), "m", "hf", None).context_length(4096) == 4096
