"""Grounding: a number or name the passages do not hold never reaches the user; quotations are marked as such."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.rag.answer import answer
from core.rag.grounding import claims, unsupported, zh_number
from knowledge.tokenizer import default_tokenizer
from knowledge.types import Hit
from llm_backend.testing import ScriptedChatClient

BOOK = [
    Hit("v", "我们的 LLaMA2 模型的词汇表大小 vocab_size 为 6144，模型维度 dim 为 768。", 0.9, {"source": "/book/ch5.md", "bm25_score": 3.0}),
    Hit("t", "作者是在 8卡4090 上进行训练的，预训练一共耗时 46 小时，SFT 阶段在 BelleGroup 350万条中文指令训练 24 小时。", 0.7,
        {"source": "/book/ch5.md", "bm25_score": 2.0}),
]


class FixedRetriever:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


def ask(reply: str, question: str = "第五章模型的词汇表大小是多少？") -> tuple[object, list[str]]:
    deltas: list[str] = []
    result = answer(question, retriever=FixedRetriever(BOOK), client=ScriptedChatClient([reply]), on_delta=deltas.append, tokenizer=default_tokenizer())
    return result, deltas


@pytest.mark.parametrize("wrong", ["词汇表大小是 50K [1]。", "词汇表大小是 500 个词。", "SFT 训练了 1.9 个月。", "词表大小为五万。"])
def test_a_figure_no_passage_holds_never_reaches_the_user(wrong: str) -> None:
    result, deltas = ask(wrong)
    shown = "".join(deltas)
    assert shown == result.text  # type: ignore[attr-defined]
    bad = unsupported(wrong, [h.text for h in BOOK])
    assert bad and not any(b in shown for b in bad)
    assert result.dropped == (wrong.replace(" [1]", ""),)  # type: ignore[attr-defined]
    assert [s.kind for s in result.segments] == ["quote"]  # type: ignore[attr-defined]
    assert shown.startswith("资料 [") and "原文：“" in shown
    assert unsupported(shown, [c.text for c in result.citations]) == []  # type: ignore[attr-defined]


def test_the_quotation_is_the_passage_sentence_that_answers() -> None:
    result, _ = ask("词汇表大小是 50K。")
    assert "6144" in result.text and result.text.endswith("[1]")  # type: ignore[attr-defined]
    assert "50K" not in result.text  # type: ignore[attr-defined]


def test_grounded_sentences_pass_and_unsupported_ones_are_replaced() -> None:
    result, deltas = ask("词汇表大小是 6,144。预训练耗时 64 小时。", question="模型的词汇表大小是多少，预训练耗时多久？")
    kinds = [s.kind for s in result.segments]  # type: ignore[attr-defined]
    assert kinds == ["model", "quote"]
    assert deltas[0] == "词汇表大小是 6,144 [1]。"  # shown as soon as it was checked, cited where the figure is
    assert "64 小时" not in result.text and result.dropped == ("预训练耗时 64 小时。",)  # type: ignore[attr-defined]
    assert unsupported(result.text, [c.text for c in result.citations]) == []  # type: ignore[attr-defined]


def test_a_sentence_is_cited_to_the_passage_that_holds_its_figure() -> None:
    result, _ = ask("模型在 BelleGroup 上训练了 24 小时 [1]。", question="模型的词汇表大小是多少，SFT 训练了多久？")
    assert result.text == "模型在 BelleGroup 上训练了 24 小时 [2]。"  # type: ignore[attr-defined]
    assert [c.number for c in result.citations] == [2] and result.citations[0].inferred  # type: ignore[attr-defined]


def test_chinese_numerals_and_number_forms_are_compared_by_value() -> None:
    assert zh_number("十二") == 12 and zh_number("两千") == 2000 and zh_number("三百五十万") == 3_500_000
    assert unsupported("有三百五十万条指令。", [BOOK[1].text]) == []
    assert unsupported("训练了二十四小时。", [BOOK[1].text]) == []
    assert unsupported("用了八张卡。", ["用了 8 张卡"]) == []
    assert unsupported("共 4096 个位置。", ["从2,048翻倍到了4,096。"]) == []
    assert unsupported("模型有 215M 参数。", ["Model has 215.127 M parameters."]) == []  # rounded
    assert unsupported("模型有 216M 参数。", ["Model has 215.127 M parameters."]) == ["216M"]
    assert unsupported("词表 50K。", ["词表 50 个"]) == ["50K"]  # the unit must match


def test_names_and_quoted_strings_are_claims() -> None:
    found = {c.text for c in claims("GPT-4 比 RoBERTa 好，见《Attention is All You Need》。这是一种方法。")}
    assert found == {"GPT-4", "RoBERTa", "Attention is All You Need"}
    assert [c.value for c in claims("一种方法") if c.value is not None] == []  # 一 of 一种 says no quantity
    assert [c.value for c in claims("两种架构")] == [Decimal(2)]
    assert unsupported("LLaMA2 的词表是 6144。", [BOOK[0].text]) == []
    assert unsupported("LLaMA3 的词表是 6144。", [BOOK[0].text]) == ["LLaMA3"]


def test_words_without_figures_pass_and_refusals_cite_nothing() -> None:
    result, _ = ask("资料中没有找到答案。", question="词汇表是怎么训练的？")
    assert result.text == "资料中没有找到答案。" and result.citations == () and result.dropped == ()  # type: ignore[attr-defined]


def test_english_answer_with_wrong_figure_falls_back_to_an_english_quotation() -> None:
    hits = [Hit("e1", "The app listens on port 8501 by default. Use --port to change it.", 0.8, {"source": "/guide/app.md", "bm25_score": 2.0})]
    client = ScriptedChatClient(["The app uses port 8080 by default."])
    result = answer("Which port does the app listen on?", retriever=FixedRetriever(hits), client=client, tokenizer=default_tokenizer())
    assert result.text == 'Passage [1] says: "The app listens on port 8501 by default." [1]'
    assert result.segments[0].kind == "quote" and result.dropped == ("The app uses port 8080 by default.",)


def test_an_answer_without_the_figure_asked_for_ends_with_a_quotation() -> None:
    result, deltas = ask("这个模型的词汇表大小是一个超参数。", question="模型的词汇表大小是多少？")
    assert [s.kind for s in result.segments] == ["model", "quote"]  # type: ignore[attr-defined]
    assert "6144" in result.text and result.dropped == ()  # type: ignore[attr-defined]
    assert "".join(deltas) == result.text  # type: ignore[attr-defined]
    # a question that asks for no figure gets no quotation
    plain, _ = ask("词汇表由分词器决定。", question="模型的词汇表是什么？")
    assert [s.kind for s in plain.segments] == ["model"]  # type: ignore[attr-defined]
