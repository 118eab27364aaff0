"""RAG evaluation: retrieval against gold passages, the answer against gold answers, faithfulness by an LLM judge.

The corpus is every passage of the dataset (CMRC2018 paragraphs, ClapNQ gold passages pooled), indexed in memory
with the project's own retriever (``core.rag`` BM25 by default). For each question:

1. retrieval: ``recall@k``, ``mrr`` and ``ndcg@k`` of the retrieved passage ids against the gold ones;
2. answer: ``core.rag.answer`` (the product pipeline: relevance filter, token budget, cited answer), scored with
   EM / F1 against the gold answers after removing ``[n]`` citation markers (CMRC2018's official scorer for
   Chinese, SQuAD's for English);
3. faithfulness: a judge request (JSON-constrained ``{"supported": bool}``) asks whether every claim of the answer
   is supported by the passages the answer was given. Refusals ("not in the passages") are not judged.

Model calls go through a caching wrapper, so greedy answers and verdicts are cached like any other request; a failed
call makes the sample an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from evaluation import metrics as m
from evaluation.cache import ResponseCache
from evaluation.data import TaskData, passage_id
from evaluation.kinds.base import EvalContext
from evaluation.task import TaskSpec
from evaluation.types import Request, Response, Sample, SampleRecord
from llm_backend.errors import ConfigError, MissingDependencyError
from llm_backend.types import ChatChunk, ChatResult, Message, Usage

log = logging.getLogger(__name__)

JUDGE_SCHEMA = {"type": "object", "properties": {"supported": {"type": "boolean"}}, "required": ["supported"]}
JUDGE_PROMPT = (
    "You check answers for faithfulness. Below are numbered passages and an answer written from them.\n\n"
    "{passages}\n\nAnswer:\n{answer}\n\n"
    "Is every factual claim in the answer supported by the passages? Citation markers like [1] are not claims. "
    'Reply with JSON: {{"supported": true}} or {{"supported": false}}.'
)
_CITATION = re.compile(r"\s*[\[【]\s*\d+(?:\s*[,，、]\s*\d+)*\s*[\]】]")

RetrieverFactory = Callable[[list[dict[str, Any]]], Any]


def strip_citations(text: str) -> str:
    """Remove ``[1]`` / ``[1, 2]`` / ``【1】`` markers before comparing an answer with gold answers."""
    return _CITATION.sub("", text).strip()


def corpus_of(task: TaskSpec, docs: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The passages (id, title, text) of the whole dataset, and the gold passage ids per sample id."""
    passages: dict[str, dict[str, Any]] = {}
    gold: dict[str, list[str]] = {}
    for doc in docs:
        sid = str(doc["id"])
        if task.data.format == "squad":
            pid = str(doc["context_id"])
            passages.setdefault(pid, {"id": pid, "title": doc.get("title", ""), "text": doc["context"]})
            gold[sid] = [pid]
        else:
            ids = []
            for p in doc.get("passages", []):
                pid = p.get("id") or passage_id(p.get("title", ""), p.get("text", ""))
                passages.setdefault(pid, {"id": pid, "title": p.get("title", ""), "text": p.get("text", "")})
                ids.append(pid)
            gold[sid] = ids
    return list(passages.values()), gold


def bm25_retriever(passages: list[dict[str, Any]]) -> Any:
    """The default retriever: ``core.rag``'s BM25 (jieba for Chinese) over whole passages."""
    try:
        from core.rag.retrievers import BM25Retriever
        from knowledge.lexical import BM25Index
        from knowledge.types import Chunk
    except ImportError as exc:  # pragma: no cover - core/rag is part of the project
        raise MissingDependencyError("core.rag", "RAG evaluation", "the project's core/rag package") from exc
    chunks = [Chunk(id=p["id"], text=p["text"], meta={"title": p.get("title", ""), "source": p.get("title", "")}) for p in passages]
    return BM25Retriever(BM25Index.build(chunks))


class CachingChatClient:
    """A synchronous ``ChatClient`` for code that drives the model itself (``core.rag.answer``): greedy requests
    are answered from and stored in the evaluation cache; anything else goes to the real client."""

    def __init__(self, client: Any, cache: ResponseCache | None, model: str) -> None:
        self.client = client
        self.cache = cache
        self.model = model
        self.requests: list[Request] = []

    def _request(self, messages: Sequence[Message], params: dict[str, Any]) -> Request:
        return Request(kind="chat", body={"messages": [dict(x) for x in messages]}, params={k: v for k, v in params.items() if v is not None})

    def chat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        request = self._request(messages, params)
        self.requests.append(request)
        if self.cache is not None and (hit := self.cache.get(request, self.model)) is not None:
            return ChatResult(text=hit.text, usage=Usage(hit.prompt_tokens, hit.completion_tokens), finish_reason=hit.finish_reason, model=self.model)
        result: ChatResult = self.client.chat(messages, **params)
        if self.cache is not None:
            self.cache.put(request, self.model, Response(text=result.text, prompt_tokens=result.usage.prompt_tokens,
                                                         completion_tokens=result.usage.completion_tokens, finish_reason=result.finish_reason))
        return result

    def stream(self, messages: Sequence[Message], **params: Any) -> Iterator[ChatChunk]:
        result = self.chat(messages, **params)
        yield ChatChunk(delta=result.text)
        yield ChatChunk(finish_reason=result.finish_reason, usage=result.usage)

    async def achat(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        return await asyncio.to_thread(self.chat, messages, **params)


class RagEvaluator:
    """``kind: rag``. ``options``: ``k`` (passages retrieved, default 5), ``answer_metric`` (``cmrc`` or
    ``squad``), ``judge`` (default true), ``judge_model`` (default: the evaluated model), ``context_tokens``."""

    def __init__(self, task: TaskSpec, retriever_factory: RetrieverFactory | None = None) -> None:
        self.task = task
        self.retriever_factory = retriever_factory or bm25_retriever
        self.retriever: Any = None
        self.gold: dict[str, list[str]] = {}
        self.passages: dict[str, dict[str, Any]] = {}
        metric = str(task.options.get("answer_metric", "squad"))
        if metric not in ("cmrc", "squad"):
            raise ConfigError(f"{task.name}: options.answer_metric must be 'cmrc' or 'squad', not {metric!r}")
        self.em, self.f1 = (m.cmrc_em, m.cmrc_f1) if metric == "cmrc" else (m.squad_em, m.squad_f1)

    @property
    def k(self) -> int:
        return int(self.task.options.get("k", 5))

    def prepare(self, data: TaskData) -> None:
        """Index every passage of the dataset (not only the evaluated samples' ones)."""
        passages, self.gold = corpus_of(self.task, data.corpus or [dict(s.doc) for s in data.samples])
        self.passages = {p["id"]: p for p in passages}
        self.retriever = self.retriever_factory(passages)

    def requests(self, sample: Sample) -> list[Request]:
        return []  # the answer requests are made by core.rag.answer

    def judge_request(self, sources: Sequence[Any], answer: str) -> Request:
        """The faithfulness question for one answer (pure)."""
        passages = "\n\n".join(f"[{s.number}] {s.text}" for s in sources)
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 20}
        if self.task.options.get("judge_model"):
            params["model"] = self.task.options["judge_model"]
        return Request(kind="chat", body={"messages": [{"role": "user", "content": JUDGE_PROMPT.format(passages=passages, answer=answer)}],
                                          "json_schema": JUDGE_SCHEMA}, params=params)

    async def evaluate(self, sample: Sample, ctx: EvalContext) -> SampleRecord:
        from core.rag import answer as rag_answer

        doc = sample.doc
        question = str(doc["question"])
        gold_ids = self.gold.get(sample.id, [])
        answers = [a for a in doc.get("answers", []) if a]
        rec = SampleRecord(sample_id=sample.id, index=sample.index, group=sample.group, target=answers, prompt=question)
        hits = await asyncio.to_thread(self.retriever.retrieve, question, self.k)
        retrieved = [h.chunk_id for h in hits]
        rec.metrics = {
            f"recall@{self.k}": m.recall_at_k(retrieved, gold_ids, self.k),
            "mrr": m.mrr(retrieved, gold_ids),
            f"ndcg@{self.k}": m.ndcg_at_k(retrieved, gold_ids, self.k),
        }
        client = CachingChatClient(ctx.client, ctx.cache, ctx.model)
        try:
            result = await asyncio.to_thread(
                rag_answer, question, retriever=self.retriever, client=client, k=self.k,
                context_tokens=int(self.task.options.get("context_tokens", 1000)), max_tokens=self.task.generation.max_tokens,
            )
        except (ConfigError, MissingDependencyError):
            raise
        except Exception as exc:  # a failed model call: this sample's error
            rec.error = f"{type(exc).__name__}: {exc}"
            return rec
        text = strip_citations(result.text)
        rec.responses = [{"text": result.text, "found": result.found, "sources": [s.chunk_id for s in result.sources]}]
        rec.prompt_tokens, rec.completion_tokens = result.usage.prompt_tokens, result.usage.completion_tokens
        rec.extracted = {"answer": text}
        rec.extra = {"retrieved": retrieved, "gold_passages": gold_ids}
        if answers:
            rec.metrics["answer_em"] = self.em(text, answers)
            rec.metrics["answer_f1"] = self.f1(text, answers)
        if self.task.options.get("judge", True) and result.found and result.sources:
            verdict = await ctx.send(self.judge_request(result.sources, text))
            if verdict.error:
                rec.error = f"judge request failed: {verdict.error}"
                return rec
            try:
                supported = json.loads(verdict.text)["supported"]
                rec.metrics["faithfulness"] = float(bool(supported))
            except (json.JSONDecodeError, KeyError, TypeError):
                rec.extra["judge_unparsed"] = verdict.text[:200]  # left out of the faithfulness average
            rec.responses.append(verdict.to_dict())
        return rec
