"""The answerability assessment: refuse (with the closest quotation), quote or answer, with a scripted model and a
fake embedder whose closeness is set per test; the figures and names of a question that no passage states; the real e5 on
ClapNQ questions at both ends of the scale; the relevance gate's cross-lingual rule."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from core.rag.answer import answer
from core.rag.answerable import REFUSE_BELOW, Assessment, answerability, assess, e5_of, missing_specifics, shared_e5
from core.rag.context import CROSS_LINGUAL_RELEVANCE, DENSE_RELEVANCE, is_relevant
from core.rag.grounding import REFUSAL_PHRASES, Segment, says_nothing_new
from knowledge.tokenizer import default_tokenizer
from knowledge.types import Hit
from llm_backend.testing import ScriptedChatClient

EN_HITS = [
    Hit("e1", "The app listens on port 8501 by default. Use --port to change it.", 0.8, {"source": "/guide/app.md", "section": "The app", "bm25_score": 2.0}),
    Hit("e2", "The model server listens on port 8000; the app talks to it.", 0.4, {"source": "/guide/serving.md", "bm25_score": 1.0}),
]
DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "clapnq"


class FixedRetriever:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def retrieve(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


class CloseEmbedder:
    """An "e5" whose cosine between the question and the first passage is ``closeness`` (the others lower)."""

    name = "e5"

    def __init__(self, closeness: float) -> None:
        self.closeness = closeness
        self.calls = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        c = self.closeness
        first = np.array([c, np.sqrt(1 - c * c), 0.0])
        rest = np.array([0.0, 0.0, 1.0])
        return np.stack([first if i == 0 else rest for i in range(len(texts))])

    def embed_query(self, text: str) -> np.ndarray:
        return np.array([1.0, 0.0, 0.0])


def ask(client: ScriptedChatClient, question: str = "Which port does the app use?", closeness: float = 0.9, **options: object) -> object:
    return answer(question, retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer(), answerability=True,
                  embedder=CloseEmbedder(closeness), **options)  # type: ignore[arg-type]


def test_answerability_rises_with_closeness_and_coverage() -> None:
    assert answerability(0.80, 0.5) < REFUSE_BELOW < answerability(0.90, 0.5)
    assert answerability(0.86, 0.0) < answerability(0.86, 1.0)
    a = assess("Which port does the app use?", [h.text for h in EN_HITS], CloseEmbedder(0.9))
    assert a.closeness == pytest.approx(0.9) and a.coverage == 1.0 and not a.missing and not a.refuses()
    assert Assessment(0.9, 0.9, 1.0, ("1848",)).refuses() and Assessment(0.2, 0.8, 1.0).refuses()


def test_missing_specifics_are_the_questions_figures_and_names_no_passage_states() -> None:
    belgian = "The Belgian Revolution broke out on 25 August 1830 in Brussels."
    assert missing_specifics("why did revolutions break out in 1830 and 1848", [belgian]) == ["1848"]
    assert missing_specifics("why did revolutions break out in 1830", [belgian]) == []
    assert missing_specifics("2 facts about the great wall of china", ["The wall is long."]) == []  # one digit: not specific
    assert missing_specifics("what changed in version 12", ["Version 12 added plugins."]) == []
    assert missing_specifics("when was the last time it cost 1,500 dollars", ["In 1999 it cost 1500 dollars."]) == []  # same value
    guide = ["Run ragent serve on each machine; vLLM spreads a model over GPUs with Ray."]
    assert missing_specifics("How do I deploy ragent on Kubernetes with Helm charts?", guide) == ["Kubernetes", "Helm"]
    assert missing_specifics("How do I spread a model over several GPUs with Ray?", guide) == []  # GPUs, Ray: stated
    assert missing_specifics("What is the capital of Australia?", guide) == ["Australia"]  # the first word is no name
    assert missing_specifics("I run ragent serve. How do I spread it over GPUs? Which Ray version?", guide) == []  # sentences' first words


def test_a_low_score_refuses_without_asking_for_the_answer() -> None:
    client = ScriptedChatClient([AssertionError("the answer must not be asked for")])
    result = ask(client, closeness=0.80)
    assert result.answerability is not None and result.answerability < REFUSE_BELOW  # type: ignore[attr-defined]
    assert any(p in result.text for p in REFUSAL_PHRASES) and not client.calls  # type: ignore[attr-defined]
    # the refusal ends with the closest passage sentence, marked as a quotation and cited, so the user can judge
    kinds = [s.kind for s in result.segments]  # type: ignore[attr-defined]
    assert kinds == ["model", "quote"] and "port 8501" in result.segments[1].text  # type: ignore[attr-defined]
    assert [c.number for c in result.citations] == [1] and not result.citations[0].inferred  # type: ignore[attr-defined]
    assert result.text == "".join(s.text for s in result.segments) and result.segments[1].text.startswith("\nPassage [1] says")  # type: ignore[attr-defined]
    assert result.found and [c.number for c in result.sources] == [1, 2]  # type: ignore[attr-defined]
    kept = ScriptedChatClient(["The app uses port 8501 by default [1]."])
    assert ask(kept, closeness=0.80, refuse_below=0.001).text.startswith("The app uses port 8501")  # type: ignore[attr-defined]


def test_a_figure_no_passage_states_refuses_and_is_named() -> None:
    client = ScriptedChatClient([AssertionError("the answer must not be asked for")])
    result = ask(client, "Which port did the app use in 2019?", closeness=0.95)
    assert result.text.startswith("No passage mentions 2019, so the passages do not contain the answer.")  # type: ignore[attr-defined]
    assert "port 8501" in result.segments[-1].text  # type: ignore[attr-defined]


def test_a_high_score_turns_the_models_refusal_into_a_quotation() -> None:
    client = ScriptedChatClient(["The passages do not contain the answer."])
    deltas: list[str] = []
    result = ask(client, on_delta=deltas.append)
    assert not any(p in result.text for p in REFUSAL_PHRASES)  # type: ignore[attr-defined]
    assert result.text == 'Passage [1] says: "The app listens on port 8501 by default." [1]'  # type: ignore[attr-defined]
    assert [s.kind for s in result.segments] == ["quote"] and "".join(deltas) == result.text  # type: ignore[attr-defined]
    assert [c.number for c in result.citations] == [1]  # type: ignore[attr-defined]


def test_a_score_in_between_keeps_the_models_refusal() -> None:
    client = ScriptedChatClient(["The passages do not contain the answer."])
    result = ask(client, refuse_below=0.01, quote_above=0.999)
    assert result.text == "The passages do not contain the answer." and not result.citations  # type: ignore[attr-defined]


def test_a_high_score_lets_the_model_answer_in_one_call() -> None:
    client = ScriptedChatClient(["The app uses port 8501 by default [1]."])
    result = ask(client)
    assert result.text == "The app uses port 8501 by default [1]." and len(client.calls) == 1  # type: ignore[attr-defined]
    assert client.calls[0]["stream"] is True and result.answerability > 0.9  # type: ignore[attr-defined]


def test_scripted_clients_are_not_assessed_by_default() -> None:
    client = ScriptedChatClient(["The app uses port 8501 by default [1]."])
    embedder = CloseEmbedder(0.5)
    result = answer("Which port does the app use?", retriever=FixedRetriever(EN_HITS), client=client, tokenizer=default_tokenizer(), embedder=embedder)  # type: ignore[arg-type]
    assert len(client.calls) == 1 and result.answerability is None and embedder.calls == 0


def test_the_retrievers_own_e5_is_found_through_wrappers() -> None:
    own = CloseEmbedder(0.9)

    class Dense:
        embedder = own

    class Hybrid:
        dense = Dense()

    class Locked:
        inner = Hybrid()

    assert e5_of(Locked()) is own
    assert e5_of(FixedRetriever([])) is shared_e5()  # none of its own: the process's shared one (not loaded until used)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/clapnq")
def test_real_e5_scores_gold_passages_above_the_cut_and_unrelated_ones_below() -> None:
    """Reference check with the real e5 on ClapNQ dev questions the benchmark scores, at both ends of the scale: the
    gold passage of "who has played chad dimera" and of "where is mount logan" against the related passages that do
    not answer "where was final scene of expendables 3 filmed" and "new york times manhattan center"."""

    def rows(kind: str) -> list[dict[str, object]]:
        return [json.loads(line) for line in (DATA / f"clapnq_dev_{kind}.jsonl").read_text(encoding="utf-8").splitlines()[:10]]

    def score(row: dict[str, object]) -> Assessment:
        return assess(str(row["input"]), [str(p["text"]) for p in row["passages"]][:4], shared_e5())  # type: ignore[attr-defined]

    answerable, unanswerable = rows("answerable"), rows("unanswerable")
    for row in (answerable[6], answerable[8]):
        assert not score(row).refuses(), row["input"]
    for row in (unanswerable[1], unanswerable[7]):
        assert score(row).refuses(), row["input"]
    assert score(unanswerable[0]).missing == ("1848",)


def test_an_answer_that_repeats_the_question_ends_with_a_quotation() -> None:
    assert says_nothing_new("who has played chad dimera on days of our lives", [Segment("Chad DiMera has played Chad Dimera on Days of Our Lives [1].")])
    assert not says_nothing_new("Which port does the app use?", [Segment("The app uses port 8501 [1].")])
    assert says_nothing_new("Why are answers slow on a CPU?", [Segment("The passage states that answers are slow on a CPU [3].")])
    assert not says_nothing_new("Why are answers slow on a CPU?", [Segment("The passage states that prompt processing is the slow part on a CPU [3].")])
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


def test_passages_in_another_language_are_not_assessed() -> None:
    zh = [Hit("z", "第五章的 SFT 阶段在 BelleGroup 350万条中文指令上训练了 24 小时。", 0.9, {"source": "/book/ch5.md", "bm25_score": 2.0})]
    client = ScriptedChatClient(["The passages do not contain the answer."])
    embedder = CloseEmbedder(0.1)
    result = answer("How long was the SFT stage trained on BelleGroup?", retriever=FixedRetriever(zh), client=client, tokenizer=default_tokenizer(),
                    answerability=True, embedder=embedder)  # type: ignore[arg-type]
    assert len(client.calls) == 1 and embedder.calls == 0  # not assessed: calibrated on passages in the question's language
    assert result.answerability is None
    assert result.segments[0].kind == "quote" and "24 小时" in result.text  # the model's refusal became a quotation


def test_chinese_questions_are_not_refused_by_the_assessment() -> None:
    zh = [Hit("z", "应用默认监听 8501 端口。", 0.9, {"source": "/guide/app.md", "bm25_score": 2.0})]
    client = ScriptedChatClient(["应用默认使用 8501 端口 [1]。"])
    embedder = CloseEmbedder(0.1)
    result = answer("应用默认用哪个端口？", retriever=FixedRetriever(zh), client=client, tokenizer=default_tokenizer(), answerability=True, embedder=embedder)  # type: ignore[arg-type]
    assert "8501" in result.text and embedder.calls == 0
