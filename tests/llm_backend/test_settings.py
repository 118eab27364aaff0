"""Settings resolve defaults < YAML < environment < flags, and never leak the API key."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_backend.errors import ConfigError
from llm_backend.settings import Settings


def test_defaults(tmp_path: Path) -> None:
    s = Settings.load()
    assert s.base_url == "http://127.0.0.1:8000/v1"
    assert s.engine == "vllm"
    assert s.api_key is None and s.api_key_value() == "EMPTY"


def test_precedence_yaml_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("base_url: http://yaml:1/v1/\nmodel: from-yaml\nconcurrency: 3\n")
    monkeypatch.setenv("RAGENT_CONFIG", str(cfg))
    s = Settings.load()
    assert (s.base_url, s.model, s.concurrency) == ("http://yaml:1/v1", "from-yaml", 3)
    monkeypatch.setenv("RAGENT_MODEL", "from-env")
    assert Settings.load().model == "from-env"
    assert Settings.load(model="from-flag", concurrency=None).model == "from-flag"
    assert Settings.load(model="from-flag", concurrency=None).concurrency == 3  # None flags are ignored


def test_yaml_in_home_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGENT_HOME", str(tmp_path))
    (tmp_path / "config.yaml").write_text("port: 8123\n")
    assert Settings.load().port == 8123


def test_api_key_from_environment_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    s = Settings.load()
    assert s.api_key_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(s)
    assert "sk-secret-123" not in str(s.public_dict())
    assert s.public_dict()["api_key_set"] is True
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api_key: sk-in-file\n")
    monkeypatch.setenv("RAGENT_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="RAGENT_API_KEY"):
        Settings.load()


def test_bad_config_messages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base_ulr: http://x\n")
    monkeypatch.setenv("RAGENT_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match="did you mean 'base_url'|Did you mean 'base_url'"):
        Settings.load()
    cfg.write_text("port: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Settings.load()
    monkeypatch.setenv("RAGENT_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load()
    monkeypatch.delenv("RAGENT_CONFIG")
    with pytest.raises(ConfigError, match="port"):
        Settings.load(port=70000)


def test_data_dir_from_ragent_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RAGENT_DATA", str(tmp_path))
    assert Settings.load().data_dir == tmp_path
    assert Settings.load(data_dir="/elsewhere").data_dir == Path("/elsewhere")
