"""Training data: packing, conversation parsing, and the SFT loss mask (against the book's own mask code)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llm_backend.errors import ConfigError
from training.data import (
    IGNORE_INDEX,
    ExampleDataset,
    PadCollator,
    encode_conversation,
    encode_conversations,
    list_text_files,
    load_conversations,
    pack_blocks,
    parse_conversation,
    split_holdout,
)

DATA_DIR = Path(os.environ.get("RAGENT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    """The book's tokenizer_k (ChatML)."""
    from training.tokenizer import load_tokenizer

    path = DATA_DIR / "happy-llm-book" / "tokenizer_k"
    if not path.is_dir():
        pytest.skip(f"the book's tokenizer is not in {DATA_DIR}; set RAGENT_DATA")
    return load_tokenizer(path)


def book_loss_mask(tokenizer, input_ids: list[int]) -> list[int]:  # type: ignore[no-untyped-def]
    """``SFTDataset.generate_loss_mask`` from the book's chapter 5.3.3, verbatim but for style."""
    mask = [0] * len(input_ids)
    a_sequence = tokenizer("<|im_start|>assistant\n")["input_ids"]
    a_length = len(a_sequence)
    n = len(input_ids)
    i = 0
    while i <= n - a_length:
        match = all(input_ids[i + k] == a_sequence[k] for k in range(a_length))
        if match:
            j = None
            for idx in range(i + a_length, n):
                if input_ids[idx] == tokenizer.eos_token_id:
                    j = idx
                    break
            if j is not None:
                start = i + a_length
                end = j
                if start <= end:
                    for pos in range(start, end + 1):
                        if pos < len(mask):
                            mask[pos] = 1
            i += a_length
        else:
            i += 1
    return mask


CONVERSATIONS = [
    [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！我是一个AI助手。"}],
    [
        {"role": "system", "content": "你是一个AI助手"},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "I'm fine, thank you. and you?"},
        {"role": "user", "content": "I'm good too."},
        {"role": "assistant", "content": "That's great to hear!\n\n- 1\n- 2"},
    ],
    [{"role": "user", "content": "1+1=?"}, {"role": "assistant", "content": " 2 "}],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_assistant_only_labels_match_the_books_mask(tok, messages) -> None:  # type: ignore[no-untyped-def]
    example = encode_conversation(tok, messages, max_length=512)
    assert example.input_ids == tok.apply_chat_template(messages, tokenize=True)["input_ids"]
    ours = [int(label != IGNORE_INDEX) for label in example.labels]
    assert ours == book_loss_mask(tok, example.input_ids)
    assert all(label in (IGNORE_INDEX, tid) for label, tid in zip(example.labels, example.input_ids, strict=True))


def test_labels_hold_exactly_the_replies_and_their_end_token(tok) -> None:  # type: ignore[no-untyped-def]
    messages = CONVERSATIONS[1]
    example = encode_conversation(tok, messages, max_length=512)
    learned = [t for t in example.labels if t != IGNORE_INDEX]
    expected = "".join(m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant")
    assert tok.decode(learned) == expected
    # Nothing of the system or user turns is learned.
    unlearned = tok.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE_INDEX])
    assert "How are you?" in unlearned and "I'm fine" not in unlearned


def test_truncation_and_dropping(tok, caplog) -> None:  # type: ignore[no-untyped-def]
    long_prompt = [{"role": "user", "content": "很长的问题" * 200}, {"role": "assistant", "content": "答"}]
    assert encode_conversation(tok, long_prompt, max_length=16).n_labelled == 0
    kept = encode_conversations(tok, [long_prompt, CONVERSATIONS[0]], max_length=64)
    assert len(kept) == 1 and len(kept[0].input_ids) <= 64
    with pytest.raises(ConfigError, match="no conversation"):
        encode_conversations(tok, [long_prompt], max_length=16)


def test_parse_conversation_formats() -> None:
    expected = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert parse_conversation({"messages": expected}) == expected
    assert parse_conversation({"conversations": expected}) == expected
    assert parse_conversation(expected) == expected  # the book's BelleGroup_sft.jsonl: a bare list
    assert parse_conversation({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}) == expected
    with pytest.raises(ConfigError, match="no assistant turn"):
        parse_conversation({"messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(ConfigError, match="role"):
        parse_conversation({"messages": [{"role": "robot", "content": "q"}]})
    with pytest.raises(ConfigError, match="conversations"):
        parse_conversation({"text": "q"})


def test_load_conversations_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    good = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path.write_text(good + "\n\n" + good + "\n{oops\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.jsonl:4"):
        load_conversations(path)
    path.write_text(good + "\n\n" + good + "\n", encoding="utf-8")
    assert len(load_conversations(path)) == 2


def test_pack_blocks() -> None:
    assert pack_blocks([[1, 2, 3], [4, 5, 6, 7]], 4, separator_id=0) == [[1, 2, 3, 0], [4, 5, 6, 7]]
    assert pack_blocks([[1, 2, 3], [4, 5]], 4, separator_id=0) == [[1, 2, 3, 0]]
    assert pack_blocks([[1, 2, 3], [4, 5]], 4, separator_id=0, drop_last=False) == [[1, 2, 3, 0], [4, 5]]
    assert pack_blocks([[1, 2, 3, 4, 5]], 4, separator_id=None, drop_last=False) == [[1, 2, 3, 4]]  # 1-token tail
    with pytest.raises(ConfigError):
        pack_blocks([[1]], 1, separator_id=None)


def test_text_files_and_holdout(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("chapter1.md", "chapter7.md", "sub/notes.txt", "image.png"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    files = list_text_files(tmp_path)
    assert [f.name for f in files] == ["chapter1.md", "chapter7.md", "notes.txt"]
    train, held = split_holdout(files, "chapter7*")
    assert [f.name for f in held] == ["chapter7.md"] and len(train) == 2
    with pytest.raises(ConfigError, match="matches no file"):
        split_holdout(files, "chapter9*")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no text files"):
        list_text_files(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        list_text_files(tmp_path / "missing")


def test_collator_pads_inputs_and_ignores_padding_in_labels() -> None:
    data = ExampleDataset([[5, 6, 7], [8, 9]])
    batch = PadCollator(pad_id=4)([data[0], data[1]])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 4]]
    assert batch["labels"].tolist() == [[5, 6, 7], [8, 9, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert data.n_tokens == 5 and len(data.head(1)) == 1
