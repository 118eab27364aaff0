"""The response cache and the run store (torn lines, last record wins, compaction)."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.cache import ResponseCache
from evaluation.store import RunStore
from evaluation.types import Request, Response, SampleRecord

GREEDY = Request(kind="chat", body={"messages": [{"role": "user", "content": "hi"}]}, params={"temperature": 0.0, "max_tokens": 5})
SAMPLED = Request(kind="chat", body={"messages": [{"role": "user", "content": "hi"}]}, params={"temperature": 0.7, "max_tokens": 5})
LOGLIK = Request(kind="completion", body={"prompt": "Q? A"}, params={"max_tokens": 0, "echo": True, "logprobs": 1}, continuation_start=2)


def test_deterministic() -> None:
    assert GREEDY.deterministic and LOGLIK.deterministic
    assert not SAMPLED.deterministic
    assert not Request(kind="chat", body={"messages": []}, params={}).deterministic  # server default temperature
    assert not Request(kind="chat", body={"messages": []}, params={"temperature": 0, "n": 3}).deterministic


def test_cache_key_depends_on_model_and_content() -> None:
    assert GREEDY.cache_key("m") == Request(kind="chat", body={"messages": [{"role": "user", "content": "hi"}]}, params={"max_tokens": 5, "temperature": 0.0}).cache_key("m")
    assert GREEDY.cache_key("m") != GREEDY.cache_key("other")
    assert GREEDY.cache_key("m") != SAMPLED.cache_key("m")


def test_cache_roundtrip_persists_and_skips_errors_and_sampling(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with ResponseCache(path) as cache:
        cache.put(GREEDY, "m", Response(text="hello", completion_tokens=2, latency_s=1.5))
        cache.put(SAMPLED, "m", Response(text="random"))
        cache.put(LOGLIK, "m", Response(error="boom"))
        assert len(cache) == 1
    with ResponseCache(path) as cache:  # a new process reads what the first wrote
        hit = cache.get(GREEDY, "m")
        assert hit is not None and hit.text == "hello" and hit.cached and hit.latency_s == 0.0
        assert cache.get(SAMPLED, "m") is None
        assert cache.get(LOGLIK, "m") is None
        assert cache.get(GREEDY, "other-model") is None
        assert (cache.hits, cache.misses) == (1, 2)


def _rec(i: int, error: str | None = None) -> SampleRecord:
    return SampleRecord(sample_id=str(i), index=i, metrics={} if error else {"acc": 1.0}, error=error)


def test_store_repairs_torn_line_and_keeps_last_record(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append(_rec(0, error="timeout"))
    store.append(_rec(1))
    store.append(_rec(0))  # the retry of sample 0 succeeded
    store.close()
    with open(store.samples_path, "a") as fh:
        fh.write('{"sample_id": "2", "ind')  # killed mid-write
    records = RunStore(tmp_path).load_records()
    assert sorted(records) == ["0", "1"]
    assert records["0"].error is None
    assert store.samples_path.read_text().endswith("\n")
    store.compact(sorted(records.values(), key=lambda r: r.index))
    lines = [json.loads(x) for x in store.samples_path.read_text().splitlines()]
    assert [x["sample_id"] for x in lines] == ["0", "1"]


def test_store_refuses_a_different_run(tmp_path: Path) -> None:
    import pytest

    from llm_backend.errors import ConfigError

    store = RunStore(tmp_path)
    store.begin({"task": "a", "model": "m", "fingerprint": "1"})
    store.begin({"task": "a", "model": "m", "fingerprint": "1"})
    with pytest.raises(ConfigError, match="different settings"):
        store.begin({"task": "b", "model": "m", "fingerprint": "2"})
