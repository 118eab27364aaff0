"""RAG and agent evaluation on in-process fakes (the retrieval and the agent loop are the real ones)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluation.kinds.rag import CachingChatClient, corpus_of, strip_citations
from evaluation.registry import TaskRegistry
from evaluation.runner import RunOptions, run_task
from evaluation.store import RunStore
from evaluation.types import Response
from llm_backend.settings import Settings
from llm_backend.testing import FakeReply, ScriptedChatClient

SQUAD = {
    "version": "t",
    "data": [
        {"title": "游戏", "paragraphs": [{"id": "P1", "context": "玩家以水枪泡封敌人。生命数耗完即算为踢爆。若游戏中离，则4分钟内不得进行配对。",
                                         "qas": [{"id": "P1_QUERY_0", "question": "生命数耗完即算为什么？", "answers": [{"text": "踢爆", "answer_start": 0}]},
                                                 {"id": "P1_QUERY_1", "question": "游戏中离多少分钟内不得配对？", "answers": [{"text": "4分钟", "answer_start": 0}]}]}]},
        {"title": "城市", "paragraphs": [{"id": "P2", "context": "北京是中华人民共和国的首都，位于华北平原。",
                                         "qas": [{"id": "P2_QUERY_0", "question": "中国的首都是哪里？", "answers": [{"text": "北京", "answer_start": 0}]}]}]},
    ],
}


def test_strip_citations() -> None:
    assert strip_citations("踢爆[1]。") == "踢爆。"
    assert strip_citations("Paris [1, 2] is big 【3】") == "Paris is big"


def test_corpus_and_gold_for_squad() -> None:
    task = TaskRegistry().get("rag_cmrc2018")
    docs = [{"id": "q1", "context_id": "P1", "context": "a", "title": "t"}, {"id": "q2", "context_id": "P1", "context": "a", "title": "t"}]
    passages, gold = corpus_of(task, docs)
    assert [p["id"] for p in passages] == ["P1"] and gold == {"q1": ["P1"], "q2": ["P1"]}


def _rag_reply(messages: list[dict[str, Any]]) -> str:
    text = messages[-1]["content"]
    if "faithfulness" in (messages[0]["content"] if messages else "") or "Is every factual claim" in text:
        return json.dumps({"supported": "北京" not in text})  # the judge doubts one answer
    question = text.split("问题：", 1)[-1]
    if "生命数" in question:
        return "踢爆 [1]"
    if "首都" in question:
        return "北京是首都 [1]"
    return "4分钟 [1]"


def test_rag_run(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "cmrc2018"
    folder.mkdir(parents=True)
    (folder / "cmrc2018_trial.json").write_text(json.dumps(SQUAD, ensure_ascii=False), encoding="utf-8")
    settings = Settings.load(home=tmp_path / "home", data_dir=tmp_path / "data")
    client = ScriptedChatClient(default=_rag_reply)
    result = run_task(TaskRegistry().get("rag_cmrc2018"), client=client, settings=settings, options=RunOptions(concurrency=2))
    assert result.counts["errors"] == 0
    assert result.metrics["recall@5"].value == 1.0 and result.metrics["mrr"].value == 1.0
    assert result.metrics["answer_em"].value == pytest.approx(2 / 3)  # "北京是首都" is not exactly "北京"
    assert result.metrics["faithfulness"].value == pytest.approx(2 / 3) and result.metrics["faithfulness"].n == 3
    rec = {r.sample_id: r for r in RunStore(Path(result.run_dir)).read_samples()}
    assert rec["P1_QUERY_0"].extracted == {"answer": "踢爆"} and rec["P1_QUERY_0"].extra["gold_passages"] == ["P1"]
    # Answers and verdicts are greedy: a rerun is served from the cache.
    again = ScriptedChatClient(default=_rag_reply)
    run_task(TaskRegistry().get("rag_cmrc2018"), client=again, settings=settings, options=RunOptions(rerun=True))
    assert again.calls == []


def test_caching_client_stores_greedy_answers(tmp_path: Path) -> None:
    from evaluation.cache import ResponseCache

    fake = ScriptedChatClient(["one", "two"])
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        client = CachingChatClient(fake, cache, "m")
        assert client.chat([{"role": "user", "content": "q"}], temperature=0.0).text == "one"
        assert client.chat([{"role": "user", "content": "q"}], temperature=0.0).text == "one"
        assert client.chat([{"role": "user", "content": "q"}], temperature=0.8).text == "two"
        assert len(fake.calls) == 2 and cache.get(client.requests[0], "m") == Response(text="one", cached=True, completion_tokens=1, prompt_tokens=10, finish_reason="stop")


def test_agent_run_scores_final_answers(tmp_path: Path, shared_data: Path) -> None:
    questions = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[:2]]
    golds = [q["answer"].split("####")[-1].strip() for q in questions]
    # Native tool mode: the model calls the calculator, then final_answer (right for the first question only).
    script: list[Any] = [
        FakeReply(tool_calls=[{"name": "calculator", "arguments": {"expression": "(16 - 3 - 4) * 2"}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": f"She makes ${golds[0]}."}}]),
        FakeReply(tool_calls=[{"name": "final_answer", "arguments": {"answer": "It takes 2 bolts."}}]),
    ]
    client = ScriptedChatClient(script)
    settings = Settings.load(home=tmp_path / "home", data_dir=shared_data)
    task = TaskRegistry().get("agent_gsm8k").with_overrides(options={"tools": ["calculator"], "max_steps": 3, "mode": "native"})
    result = run_task(task, client=client, settings=settings, options=RunOptions(limit=2, concurrency=1))
    assert result.metrics["exact_match,last-number"].value == 0.5
    assert result.metrics["steps"].value == pytest.approx(1.5)
    recs = RunStore(Path(result.run_dir)).read_samples()
    assert recs[0].extra["tool_calls"][0] == "calculator" and recs[0].extra["stop_reason"] == "final_answer"
    assert recs[0].extracted == {"last-number": golds[0]}
