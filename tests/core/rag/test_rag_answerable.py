"""The answerability decision with a scripted model: refuse, quote or answer; the judgement's fallbacks; the
relevance gate's cross-lingual rule."""

from __future__ import annotations

import math

import pytest

from core.rag.answer import answer
from core.rag.answerable import judge, p_yes_from
from core.rag.context import CROSS_LINGUAL_RELEVANCE, DENSE_RELEVANCE, is_relevant
from core.rag.grounding import REFUSAL_PHRASES, Segment, says_nothing_new
from knowledge.tokenizer import default_tokenizer
from knowledge.types import Hit
from llm_backend.errors import BackendUnavailableError
from llm_backend.testing import ScriptedChatClient
from llm_backend.types import ChatResult

EN_HITS = [
    Hit("e1", "The app listens on port 8501 by default. Use --port to change it.", 0.8, {"source": "/guide/app.md", "section": "The app", "bm25_score": 2.0}),
    Hit("e2", "The model server listens on port 8000; the app talks to it.", 0.4, {"source": "/guide/serving.md", "bm25_score": 1.0}),
]


class FixedRetriever:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


def verdict(p_yes: float) -> ChatResult:
    """A judgement reply as vLLM sends it: the first token and its top log-probabilities."""
    top = [{"token": "Yes", "logprob": math.log(p_yes)}, {"token": "No", "logprob": math.log(1 - p_yes)}, {"token": "The", "logprob": -9.0}]
    raw = {"choices": [{"message": {"content": "Yes"}, "logprobs": {"content": [{"token": "Yes", "logprob": top[0]["logprob"], "top_logprobs": top}]}}]}
    return ChatResult(text="Yes", raw=raw)


def ask(client: ScriptedChatClient, question: str = "Which port does the app use?", **options: object) -> object:
    return answer(question, retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer(), answerability=True, **options)  # type: ignore[arg-type]


def test_p_yes_reads_yes_against_no_among_the_top_tokens() -> None:
    assert p_yes_from(verdict(0.8).raw) == pytest.approx(0.8)
    zh = {"choices": [{"logprobs": {"content": [{"token": "否", "logprob": -0.1, "top_logprobs": [{"token": "否", "logprob": math.log(0.75)}, {"token": "是", "logprob": math.log(0.25)}]}]}}]}
    assert p_yes_from(zh) == pytest.approx(0.25)
    assert p_yes_from({}) is None  # no log-probabilities: no judgement
    assert p_yes_from({"choices": [{"logprobs": {"content": [{"token": "The", "logprob": -0.1, "top_logprobs": [{"token": "The", "logprob": -0.1}]}]}}]}) is None


def test_judgement_low_refuses_without_asking_for_the_answer() -> None:
    client = ScriptedChatClient([verdict(0.05), AssertionError("the answer must not be asked for")])
    result = ask(client, refuse_below=0.5)
    assert 0.35 < result.answerability < 0.5  # type: ignore[attr-defined]  # P(yes) 0.05, although the passage holds the question's words
    kept = ScriptedChatClient([verdict(0.05), "The app uses port 8501 by default [1]."])
    assert ask(kept).text.startswith("The app uses port 8501")  # type: ignore[attr-defined]  # the default cut (0.35) keeps it
    assert any(p in result.text for p in REFUSAL_PHRASES)  # type: ignore[attr-defined]
    # the refusal ends with the closest passage sentence, marked as a quotation and cited, so the user can judge
    kinds = [s.kind for s in result.segments]  # type: ignore[attr-defined]
    assert kinds == ["model", "quote"] and "port 8501" in result.segments[1].text  # type: ignore[attr-defined]
    assert [c.number for c in result.citations] == [1] and not result.citations[0].inferred  # type: ignore[attr-defined]
    assert result.text == "".join(s.text for s in result.segments) and result.segments[1].text.startswith("\nPassage [1] says")  # type: ignore[attr-defined]
    assert result.found and [c.number for c in result.sources] == [1, 2]  # type: ignore[attr-defined]
    call = client.calls[0]
    assert len(client.calls) == 1 and call["max_tokens"] == 1 and call["logprobs"] is True and call["top_logprobs"] >= 2
    prompt = call["messages"][1]["content"]
    assert prompt.index("port 8501") < prompt.index("Which port does the app use?") < prompt.index("yes or no")  # passages first


def test_judgement_high_turns_the_models_refusal_into_a_quotation() -> None:
    client = ScriptedChatClient([verdict(0.9), "The passages do not contain the answer."])
    deltas: list[str] = []
    result = ask(client, on_delta=deltas.append)
    assert not any(p in result.text for p in REFUSAL_PHRASES)  # type: ignore[attr-defined]
    assert result.text == 'Passage [1] says: "The app listens on port 8501 by default." [1]'  # type: ignore[attr-defined]
    assert [s.kind for s in result.segments] == ["quote"] and "".join(deltas) == result.text  # type: ignore[attr-defined]
    assert [c.number for c in result.citations] == [1]  # type: ignore[attr-defined]


def test_judgement_in_between_keeps_the_models_refusal() -> None:
    client = ScriptedChatClient([verdict(0.5), "The passages do not contain the answer."])
    result = ask(client, refuse_below=0.3, quote_above=0.95)
    assert result.text == "The passages do not contain the answer." and not result.citations  # type: ignore[attr-defined]


def test_judgement_high_lets_the_model_answer() -> None:
    client = ScriptedChatClient([verdict(0.9), "The app uses port 8501 by default [1]."])
    result = ask(client)
    assert result.text == "The app uses port 8501 by default [1]." and len(client.calls) == 2  # type: ignore[attr-defined]
    assert client.calls[1]["stream"] is True


def test_no_logprobs_or_a_server_error_means_no_judgement_not_a_crash() -> None:
    client = ScriptedChatClient(["Yes", "The app uses port 8501 by default [1]."])  # a server without log-probabilities
    result = ask(client)
    assert result.answerability is None and result.text == "The app uses port 8501 by default [1]."  # type: ignore[attr-defined]
    down = ScriptedChatClient([BackendUnavailableError("server down"), "The app uses port 8501 by default [1]."])
    result = ask(down)
    assert result.answerability is None and result.text.startswith("The app uses port 8501")  # type: ignore[attr-defined]
    assert judge(ScriptedChatClient([RuntimeError("boom")]), "q", [], "en").p_yes is None


def test_scripted_clients_are_not_judged_by_default() -> None:
    client = ScriptedChatClient(["The app uses port 8501 by default [1]."])
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer())
    assert len(client.calls) == 1 and result.answerability is None


def test_an_answer_that_repeats_the_question_ends_with_a_quotation() -> None:
    assert says_nothing_new("who has played chad dimera on days of our lives", [Segment("Chad DiMera has played Chad Dimera on Days of Our Lives [1].")])
    assert not says_nothing_new("Which port does the app use?", [Segment("The app uses port 8501 [1].")])
    client = ScriptedChatClient(["The app uses the port [1]."])
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer())
    assert [s.kind for s in result.segments] == ["model", "quote"]
    assert "8501" in result.segments[1].text


def test_cross_lingual_gate_uses_its_own_threshold() -> None:
    cross, same = CROSS_LINGUAL_RELEVANCE["e5"], DENSE_RELEVANCE["e5"]
    assert cross < same
    between = (cross + same) / 2
    zh = Hit("z", "LoRA 冻结预训练权重，只训练低秩分解矩阵。", 0.5, {"dense_score": between, "dense_model": "e5"})
    en = Hit("e", "Low-rank adapters freeze the pre-trained weights.", 0.5, {"dense_score": between, "dense_model": "e5"})
    assert is_relevant("Which matrices does LoRA train?", zh)  # English question, Chinese passage: above the cross-lingual cut
    assert not is_relevant("Which matrices does the method train?", en)  # same language: the stricter cut, no shared words
    low = Hit("z2", "注意力机制计算查询和键的相似度。", 0.5, {"dense_score": cross - 0.02, "dense_model": "e5"})
    assert not is_relevant("Which matrices does LoRA train?", low)
    minilm = Hit("m", "注意力机制计算查询和键的相似度。", 0.5, {"dense_score": 0.39, "dense_model": "minilm"})
    assert not is_relevant("What is attention?", minilm)  # no cross-lingual rule for an English-only embedder


def test_a_sentence_that_repeats_the_prompts_instruction_is_left_out() -> None:
    client = ScriptedChatClient(["Copy numbers and names exactly as the passages write them. The app uses port 8501 [1]."])
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer())
    assert result.text == "The app uses port 8501 [1]."


def test_the_quotation_counts_a_sections_heading_for_its_first_sentence() -> None:
    from core.rag.citations import Citation
    from core.rag.grounding import best_passage_sentence

    faq = "## Which file types can I add to a knowledge base?\n\nMarkdown (.md), text (.txt) and PDF (.pdf). Other types are refused."
    other = 'In the app, use "Create a knowledge base" in the sidebar and "Add files" to upload.'
    found = best_passage_sentence("Which file types can I add to a knowledge base?", [Citation(1, "a", "faq.md", text=other), Citation(2, "b", "faq.md", text=faq)])
    assert found is not None and found[0].number == 2 and found[1] == "Markdown (.md), text (.txt) and PDF (.pdf)."


def test_passages_in_another_language_are_not_refused_by_the_judgement() -> None:
    zh = [Hit("z", "第五章的 SFT 阶段在 BelleGroup 350万条中文指令上训练了 24 小时。", 0.9, {"source": "/book/ch5.md", "bm25_score": 2.0})]
    client = ScriptedChatClient([verdict(0.01), "The passages do not contain the answer."])
    result = answer("How long was the SFT stage trained on BelleGroup?", retriever=FixedRetriever(zh), client=client, tokenizer=default_tokenizer(), answerability=True)
    assert len(client.calls) == 2  # not refused by the judgement: calibrated on passages in the question's language
    assert result.segments[0].kind == "quote" and "24 小时" in result.text  # the model's refusal became a quotation
