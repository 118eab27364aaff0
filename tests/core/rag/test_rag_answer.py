"""The answer pipeline with a scripted model: citations, the token budget, "not found", follow-up rewriting."""

from __future__ import annotations

import pytest

from core.rag.answer import Citation, answer, attribute, build_messages, pack_context, parse_citations, rewrite_query
from core.rag.prompts import load_template
from knowledge.tokenizer import default_tokenizer
from knowledge.types import Hit
from llm_backend.errors import ConfigError
from llm_backend.testing import ScriptedChatClient

HITS = [
    Hit("c1", "LoRA 冻结预训练权重，只训练低秩分解矩阵。", 0.9, {"source": "/book/ch6.md", "title": "第六章", "section": "6.3 LoRA", "bm25_score": 3.0}),
    Hit("c2", "注意力机制计算查询和键的相似度。", 0.5, {"source": "/book/ch2.md", "title": "第二章", "section": "2.1 注意力", "bm25_score": 1.0}),
]


class FixedRetriever:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    def retrieve(self, query: str, k: int) -> list[Hit]:
        self.queries.append(query)
        return self.hits[:k]


def test_cited_answer_streams_and_maps_citations() -> None:
    client = ScriptedChatClient(["LoRA 只训练低秩矩阵 [1]，注意力是另一回事 [2]。"])
    deltas: list[str] = []
    result = answer("LoRA 和注意力的原理是什么？", retriever=FixedRetriever(HITS), client=client, on_delta=deltas.append, tokenizer=default_tokenizer())
    assert "".join(deltas) == result.text
    assert [c.number for c in result.citations] == [1, 2]
    assert result.citations[0].source == "/book/ch6.md" and result.citations[0].section == "6.3 LoRA"
    assert not any(c.inferred for c in result.citations)
    assert result.found and result.language == "zh"
    call = client.calls[0]
    assert call["stream"] is True and call["temperature"] == 0.0
    prompt = call["messages"][1]["content"]
    assert "[1]" in prompt and "低秩分解矩阵" in prompt and "问题：LoRA 和注意力的原理是什么？" in prompt


def test_nothing_relevant_means_no_model_call() -> None:
    client = ScriptedChatClient([AssertionError("the model must not be called")])
    result = answer("今天北京天气怎么样？", retriever=FixedRetriever(HITS), client=client, tokenizer=default_tokenizer())
    assert not result.found and not result.citations and client.calls == []
    assert "没有找到" in result.text
    empty = answer("What is LoRA?", retriever=FixedRetriever([]), client=client)
    assert not empty.found and "Nothing relevant" in empty.text


def test_question_words_do_not_make_a_passage_relevant() -> None:
    from core.rag.answer import term_coverage

    guide = [Hit("t1", "Every error says what failed, with which input, and what to do.", 1.0, {"source": "/guide/troubleshooting.md"})]
    client = ScriptedChatClient([AssertionError("the model must not be called")])
    result = answer("What is the capital of Australia?", retriever=FixedRetriever(guide), client=client, tokenizer=default_tokenizer())
    assert not result.found and client.calls == []
    assert term_coverage("What is the capital of Australia?", guide[0].text) == 0.0
    assert term_coverage("How do I start the model server?", "Start the model server with ragent serve.") == 1.0
    assert term_coverage("What is what?", "what") == 1.0  # a query of question words only keeps them


def test_context_stays_within_the_token_budget() -> None:
    tok = default_tokenizer()
    long_hits = [Hit(f"c{i}", "低秩分解矩阵的句子。" * 40, 1.0, {"source": f"/d{i}.md", "bm25_score": 1.0}) for i in range(6)]
    packed = pack_context(long_hits, 300, tok)
    assert 1 <= len(packed) < 6
    assert sum(tok.count(text) + 12 for _, text in packed) <= 300
    one = pack_context([Hit("big", "词" * 2000, 1.0, {})], 100, tok)
    assert len(one) == 1 and tok.count(one[0][1]) <= 100


def test_parse_citations_variants() -> None:
    sources = [Citation(n, f"c{n}", f"s{n}") for n in (1, 2, 3)]
    assert [c.number for c in parse_citations("a [2] b [1, 3] c 【2】 d [9]", sources)] == [2, 1, 3]
    assert parse_citations("no citations", sources) == ()


def test_uncited_answer_gets_inferred_citations() -> None:
    client = ScriptedChatClient(["LoRA 冻结预训练权重，只训练低秩分解矩阵。"])
    result = answer("LoRA 的原理？", retriever=FixedRetriever(HITS), client=client, tokenizer=default_tokenizer())
    assert [c.number for c in result.citations] == [1] and result.citations[0].inferred
    assert "[1]" in result.text
    text, cited = attribute("The passages do not mention it.", [Citation(1, "c", "s", text="LoRA")])
    assert cited == () and text == "The passages do not mention it."


def test_inferred_citations_go_at_sentence_ends_not_at_copied_line_breaks() -> None:
    sources = [
        Citation(1, "c1", "s", text="Markdown (.md), text (.txt), PDF and HTML, in Chinese or English. Other file types are refused."),
        Citation(2, "c2", "s", text="The app uses port 8501 by default."),
    ]
    reply = "Markdown (.md), text (.txt), PDF and HTML, in Chinese or\nEnglish. Other file types are refused.\n\nThe app uses port 8501 by default."
    text, cited = attribute(reply, sources)
    assert text == (
        "Markdown (.md), text (.txt), PDF and HTML, in Chinese or\nEnglish [1]. Other file types are refused [1].\n\n"
        "The app uses port 8501 by default [2]."
    )
    assert [c.number for c in cited] == [1, 2] and all(c.inferred for c in cited)
    # A numbered list: "1." opens an item, it does not end a sentence.
    listed, _ = attribute("Supported:\n1. Markdown and PDF.\n2. The app uses port 8501.", sources)
    assert listed == "Supported:\n1. Markdown and PDF [1].\n2. The app uses port 8501 [2]."


def test_follow_up_is_rewritten_before_retrieval() -> None:
    client = ScriptedChatClient(["LoRA 微调需要多少显存？", "LoRA 只训练低秩矩阵，显存需求小 [1]。"])
    retriever = FixedRetriever(HITS)
    history = [{"role": "user", "content": "什么是 LoRA？"}, {"role": "assistant", "content": "LoRA 是一种高效微调方法 [1]。"}]
    result = answer("它需要多少显存？", retriever=retriever, client=client, history=history, tokenizer=default_tokenizer())
    assert retriever.queries == ["LoRA 微调需要多少显存？"]
    assert result.query == "LoRA 微调需要多少显存？" and result.question == "它需要多少显存？"
    rewrite_prompt = client.calls[0]["messages"][1]["content"]
    assert "什么是 LoRA？" in rewrite_prompt and "它需要多少显存？" in rewrite_prompt


def test_rewrite_falls_back_on_unusable_output() -> None:
    client = ScriptedChatClient(["", "x" * 1000])
    history = [{"role": "user", "content": "hi"}]
    assert rewrite_query("and then?", history, client) == "and then?"
    assert rewrite_query("and then?", history, client) == "and then?"
    assert rewrite_query("no history", [], ScriptedChatClient([AssertionError()])) == "no history"


def test_templates_are_versioned_and_strict() -> None:
    tpl = load_template("answer")
    assert tpl.version >= 1 and {"zh", "en"} <= set(tpl.languages())
    with pytest.raises(ConfigError, match="failed to render"):
        tpl.render("en", "user", question="q")  # passages missing: StrictUndefined refuses
    messages = build_messages("What is LoRA?", [Citation(1, "c1", "/a.md", section="Intro", text="LoRA text")], "en")
    assert messages[0]["role"] == "system" and "[1] (a.md · Intro)" in messages[1]["content"]
    with pytest.raises(ConfigError, match="not found"):
        load_template("nope")


def test_llm_reranker_orders_by_model_choice() -> None:
    from core.rag.rerankers import LLMReranker

    client = ScriptedChatClient(['{"relevant": [2]}'])
    out = LLMReranker(client).rerank("注意力", HITS, 2)
    assert [h.chunk_id for h in out] == ["c2", "c1"] and "rerank_score" in out[0].meta
    assert client.calls[0]["json_schema"] == LLMReranker.SCHEMA


def test_llm_reranker_prompt_stays_within_its_budget_however_many_hits() -> None:
    from core.rag.rerankers import LLMReranker

    many = [Hit(f"c{i}", "低秩分解矩阵的句子。" * 200, 1.0 - i / 100, {"source": f"/d{i}.md"}) for i in range(30)]
    client = ScriptedChatClient(['{"relevant": [3, 25]}'])  # 25 was not shown: ignored
    out = LLMReranker(client, budget_chars=3000, max_passages=20).rerank("注意力", many, 30)
    prompt = client.calls[0]["messages"][0]["content"]
    assert len(prompt) < 3000 + 20 * 8 + 300  # passages within the budget, plus numbering and the instructions
    assert "[20]" in prompt and "[21]" not in prompt
    assert [h.chunk_id for h in out][:3] == ["c2", "c0", "c1"] and [h.chunk_id for h in out][-1] == "c29"


def test_llm_reranker_uses_the_numbers_of_a_cut_off_reply() -> None:
    from core.rag.rerankers import LLMReranker

    client = ScriptedChatClient(['{"relevant": [2, 1'])
    out = LLMReranker(client).rerank("注意力", HITS, 2)
    assert [h.chunk_id for h in out] == ["c2", "c1"]
    assert client.calls[0]["max_tokens"] == 16 + 4 * len(HITS)


def test_cross_encoder_reranker_with_injected_model() -> None:
    from core.rag.rerankers import CrossEncoderReranker

    class Model:
        def predict(self, pairs, show_progress_bar=False):  # type: ignore[no-untyped-def]
            return [len(p[1]) for p in pairs]

    out = CrossEncoderReranker(model=Model()).rerank("q", HITS, 1)
    assert [h.chunk_id for h in out] == ["c1"]
    with pytest.raises(ConfigError):
        CrossEncoderReranker("/no/such/folder").rerank("q", HITS, 1)


# -- answers that are nothing but citation markers ------------------------------------------------------------------
EN_HITS = [
    Hit("e1", "The app listens on port 8501 by default. Use --port to change it.", 0.8, {"source": "/guide/app.md", "section": "The app", "bm25_score": 2.0}),
    Hit("e2", "The model server listens on port 8000; the app talks to it.", 0.4, {"source": "/guide/serving.md", "bm25_score": 1.0}),
]


def test_marker_only_detects_replies_without_words() -> None:
    from core.rag.answer import marker_only

    for text in ("", "  ", "[2].", "[1] [2] [3]", "[1, 2]。", "【1】", "[2]. [1]"):
        assert marker_only(text), text
    for text in ("It listens on port 8501 [1].", "默认端口是 8501 [1]。", "8501 [1]", "No."):
        assert not marker_only(text), text


def test_marker_only_reply_is_retried_and_never_shown() -> None:
    client = ScriptedChatClient(["[1] [2].", "The app uses port 8501 by default [1]."])
    deltas: list[str] = []
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, on_delta=deltas.append, tokenizer=default_tokenizer())
    assert result.text == "The app uses port 8501 by default [1]." and result.fallback == "retry"
    assert "".join(deltas) == result.text  # the marker-only first reply never reached the screen
    assert [c.number for c in result.citations] == [1] and not result.citations[0].inferred
    assert len(client.calls) == 2
    first, second = (c["messages"][1]["content"] for c in client.calls)
    assert second.startswith(first) and "not an answer" in second and "Which port does the app use?" in second[len(first):]
    assert result.usage.prompt_tokens == 20  # both requests counted


def test_two_marker_only_replies_fall_back_to_a_marked_quotation() -> None:
    client = ScriptedChatClient(["[2].", "[1]"])
    deltas: list[str] = []
    result = answer("Which port does the app use by default?", retriever=FixedRetriever(EN_HITS), client=client, on_delta=deltas.append, tokenizer=default_tokenizer())
    assert result.fallback == "extract" and len(client.calls) == 2
    assert result.text.startswith("(The model gave no answer in words")
    assert '"The app listens on port 8501 by default." [1]' in result.text  # the top passage's best sentence
    assert "".join(deltas) == result.text
    assert [c.number for c in result.citations] == [1]


def test_chinese_fallback_quotes_in_chinese() -> None:
    client = ScriptedChatClient(["[1]。", "[1]"])
    result = answer("LoRA 训练什么？", retriever=FixedRetriever(HITS), client=client, tokenizer=default_tokenizer())
    assert result.fallback == "extract" and result.text.startswith("（模型没有给出文字回答")
    assert "只训练低秩分解矩阵" in result.text and result.text.endswith("[1]")
    assert "只写资料编号不算回答" in client.calls[1]["messages"][1]["content"]


def test_answer_streams_sentence_by_sentence_once_each_is_checked() -> None:
    client = ScriptedChatClient(["[1] The app uses port 8501 [1]. The server uses port 8000 [2]."])
    deltas: list[str] = []
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, on_delta=deltas.append, tokenizer=default_tokenizer())
    assert result.fallback == "" and len(client.calls) == 1
    assert "".join(deltas) == result.text == "[1] The app uses port 8501 [1]. The server uses port 8000 [2]."
    assert deltas == ["[1] The app uses port 8501 [1].", " The server uses port 8000 [2]."]  # one piece per sentence


def test_recover_off_returns_the_reply_as_it_is() -> None:
    client = ScriptedChatClient(["[1] [2]."])
    deltas: list[str] = []
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, on_delta=deltas.append, tokenizer=default_tokenizer(), recover=False, grounded=False)
    assert result.text == "[1] [2]." and result.fallback == "" and len(client.calls) == 1
    assert "".join(deltas) == "[1] [2]."


def test_best_sentence_picks_the_sentence_with_the_query_words() -> None:
    from core.rag.answer import best_sentence

    text = "Chunks are stored in Chroma. The app listens on port 8501 by default. Use --port to change it."
    assert best_sentence("Which port does the app listen on?", text) == "The app listens on port 8501 by default."
    assert best_sentence("量化", "LoRA 冻结权重。QLoRA 还做了量化。其他。") == "QLoRA 还做了量化。"
    assert best_sentence("x", "a" * 1000).endswith(" …")
    # A FAQ heading repeats the question and answers nothing; a sentence hard-wrapped over two lines stays whole.
    faq = (
        "## How do I start the model server?\n\nRun `ragent serve --detach` to start it in the background. Check it with\n"
        "`ragent serve --status` and stop it with `ragent serve --stop`."
    )
    assert best_sentence("How do I start the model server?", faq) == "Run `ragent serve --detach` to start it in the background."
    assert best_sentence("How do I check on and stop the server?", faq) == "Check it with `ragent serve --status` and stop it with `ragent serve --stop`."
    assert best_sentence("anything", "# Only a heading") == "# Only a heading"


def test_citations_carry_the_retriever_score() -> None:
    client = ScriptedChatClient(["The app uses port 8501 [1], the server 8000 [2]."])
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer())
    assert [c.score for c in result.citations] == [0.8, 0.4]
    assert [c.score for c in result.sources] == [0.8, 0.4]
    assert result.citations[0].scores == {"bm25": 2.0}
