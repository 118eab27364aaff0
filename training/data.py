"""Training data: text files -> packed token blocks (pretraining), conversations -> assistant-only labels (SFT).

Pretraining follows the book's chapter 6.1.3: tokenise every document, join them (an EOS token between documents)
and cut the stream into equal blocks; the labels are the inputs (the model shifts them by one).

SFT follows chapter 5.3.3 / 6.2.2: a conversation is rendered with the tokenizer's chat template and only the
assistant turns (their text and the closing ``<|im_end|>``) are learned; every other position is labelled -100.

Example::

    messages = [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]
    example = encode_conversation(tokenizer, messages, max_length=512)
    example.labels   # -100 everywhere except the tokens of "2<|im_end|>"
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_backend.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
Message = dict[str, str]


# ---------------------------------------------------------------------------------------------------------------
# Pretraining: a folder of text files
# ---------------------------------------------------------------------------------------------------------------


def list_text_files(root: Path, suffixes: Sequence[str] = TEXT_SUFFIXES) -> list[Path]:
    """Text files under ``root`` (recursively, sorted); ``root`` may also be one file. Raises if there are none."""
    root = Path(root).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise ConfigError(f"corpus {root} does not exist. Pass a folder of text files ({', '.join(suffixes)}).")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ConfigError(f"corpus {root} holds no text files ({', '.join(suffixes)}).")
    return files


def split_holdout(files: Sequence[Path], holdout: str | None) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into (train, held-out) by a file-name glob such as ``"chapter7*"``.

    >>> split_holdout([Path("a/chapter1.md"), Path("a/chapter7.md")], "chapter7*")
    ([PosixPath('a/chapter1.md')], [PosixPath('a/chapter7.md')])
    """
    if not holdout:
        return list(files), []
    held = [f for f in files if fnmatch.fnmatch(f.name, holdout)]
    train = [f for f in files if f not in held]
    if not held:
        names = ", ".join(f.name for f in files[:8])
        raise ConfigError(f"--holdout {holdout!r} matches no file in the corpus (files: {names}...)")
    if not train:
        raise ConfigError(f"--holdout {holdout!r} matches every file in the corpus; nothing is left to train on")
    return train, held


def read_texts(files: Iterable[Path]) -> list[str]:
    """The UTF-8 text of each file (undecodable bytes replaced, so one odd file does not stop a run)."""
    return [Path(f).read_text(encoding="utf-8", errors="replace") for f in files]


def tokenize_documents(tokenizer: PreTrainedTokenizerBase, texts: Iterable[str]) -> list[list[int]]:
    """Token ids of each document, without special tokens."""
    return [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts if text.strip()]


def pack_blocks(
    documents: Iterable[Sequence[int]], block_size: int, *, separator_id: int | None, drop_last: bool = True
) -> list[list[int]]:
    """Join documents (``separator_id`` after each) and cut the stream into blocks of ``block_size`` tokens.

    ``drop_last=False`` keeps the final short block (use it to measure perplexity on every token).

    >>> pack_blocks([[1, 2, 3], [4, 5]], 3, separator_id=0)
    [[1, 2, 3], [0, 4, 5]]
    >>> pack_blocks([[1, 2, 3], [4, 5]], 4, separator_id=None, drop_last=False)
    [[1, 2, 3, 4], [5]]
    """
    if block_size < 2:
        raise ConfigError(f"block size must be at least 2 tokens, got {block_size}")
    stream: list[int] = []
    for doc in documents:
        stream.extend(doc)
        if separator_id is not None:
            stream.append(separator_id)
    if separator_id is not None and stream:
        stream.pop()  # no separator after the last document
    blocks = [stream[i : i + block_size] for i in range(0, len(stream), block_size)]
    if drop_last and blocks and len(blocks[-1]) < block_size:
        blocks.pop()
    return [b for b in blocks if len(b) >= 2]


# ---------------------------------------------------------------------------------------------------------------
# SFT: a JSONL of conversations
# ---------------------------------------------------------------------------------------------------------------

_ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def parse_conversation(record: Any, where: str = "record") -> list[Message]:
    """Normalise one JSONL record into ``[{"role", "content"}, ...]``.

    Accepts ``{"conversations": [...]}``, ``{"messages": [...]}`` or a bare list (the book's
    ``BelleGroup_sft.jsonl``), with turns as ``{"role", "content"}`` or ShareGPT-style ``{"from", "value"}``
    (``human``/``gpt``).
    """
    turns = record
    if isinstance(record, dict):
        for key in ("conversations", "messages"):
            if key in record:
                turns = record[key]
                break
        else:
            raise ConfigError(f"{where}: expected a 'conversations' or 'messages' list, got keys {sorted(record)}")
    if not isinstance(turns, list) or not turns:
        raise ConfigError(f"{where}: a conversation must be a non-empty list of turns")
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ConfigError(f"{where}, turn {i}: expected an object with role and content, got {turn!r}")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if not isinstance(role, str) or role.lower() not in _ROLE_ALIASES or not isinstance(content, str):
            raise ConfigError(
                f"{where}, turn {i}: needs role (system/user/assistant) and string content, got {turn!r}"
            )
        messages.append({"role": _ROLE_ALIASES[role.lower()], "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise ConfigError(f"{where}: the conversation has no assistant turn, so there is nothing to learn")
    return messages


def load_conversations(path: Path) -> list[list[Message]]:
    """Read a JSONL file of conversations (see :func:`parse_conversation`); blank lines are skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"conversations file {path} does not exist")
    conversations = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{line_no}: not valid JSON ({exc})") from exc
            conversations.append(parse_conversation(record, f"{path}:{line_no}"))
    if not conversations:
        raise ConfigError(f"conversations file {path} is empty")
    return conversations


@dataclass(frozen=True)
class EncodedExample:
    """One training sequence: token ids and labels (``IGNORE_INDEX`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def n_labelled(self) -> int:
        """How many positions carry a loss."""
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[Message], *, generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):  # pragma: no cover - tokenize=False always returns text
        raise ConfigError("the chat template did not render to text")
    return text


def assistant_char_spans(tokenizer: PreTrainedTokenizerBase, messages: list[Message]) -> tuple[str, list[tuple[int, int]]]:
    """Render ``messages`` and return the text plus the character span of every assistant reply.

    A span starts after the assistant header that ``add_generation_prompt`` writes and ends after the EOS token
    that closes the turn (the book's chapter-5 mask: reply and ``<|im_end|>``, not the newline after it). This needs
    a template whose rendering of a conversation's prefix is a prefix of the whole rendering (ChatML is).
    """
    full = _render(tokenizer, messages, generation_prompt=False)
    eos = tokenizer.eos_token or ""
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (full.startswith(head) and full.startswith(upto) and upto.startswith(head)):
            raise ConfigError(
                "the chat template is not prefix-stable (rendering the first turns is not a prefix of rendering "
                "the whole conversation), so assistant turns cannot be located; use a ChatML-style template"
            )
        segment = upto[len(head) :]
        end = segment.rfind(eos) + len(eos) if eos and eos in segment else len(segment)
        spans.append((len(head), len(head) + end))
    return full, spans


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[Message], *, max_length: int
) -> EncodedExample:
    """Tokenise a conversation with the chat template; labels are -100 except on assistant replies.

    A token is learned when its first character lies in an assistant span (see :func:`assistant_char_spans`).
    Sequences longer than ``max_length`` are cut at the end.
    """
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = [tuple(o) for o in enc["offset_mapping"]]  # type: ignore[misc]
    labels = []
    for token_id, (start, _end) in zip(ids, offsets, strict=True):
        inside = any(s <= start < e for s, e in spans)
        labels.append(token_id if inside else IGNORE_INDEX)
    return EncodedExample(input_ids=ids[:max_length], labels=labels[:max_length])


def encode_conversations(
    tokenizer: PreTrainedTokenizerBase, conversations: Iterable[list[Message]], *, max_length: int
) -> list[EncodedExample]:
    """Encode many conversations, dropping those with no assistant token left after truncation (logged)."""
    examples = []
    dropped = 0
    for messages in conversations:
        example = encode_conversation(tokenizer, messages, max_length=max_length)
        if example.n_labelled == 0:
            dropped += 1
            continue
        examples.append(example)
    if dropped:
        log.warning("%d conversations had no assistant token within %d tokens and were skipped", dropped, max_length)
    if not examples:
        raise ConfigError(f"no conversation has an assistant reply within the first {max_length} tokens")
    return examples


# ---------------------------------------------------------------------------------------------------------------
# torch datasets and the padding collator
# ---------------------------------------------------------------------------------------------------------------


class ExampleDataset:
    """A map-style dataset over token sequences for the ``Trainer``: items are dicts of lists.

    Blocks from :func:`pack_blocks` are learned everywhere (labels = inputs); :class:`EncodedExample` items keep
    their labels.
    """

    def __init__(self, items: Sequence[EncodedExample | Sequence[int]]) -> None:
        self._items = [
            item if isinstance(item, EncodedExample) else EncodedExample(list(item), list(item)) for item in items
        ]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        item = self._items[index]
        return {"input_ids": item.input_ids, "labels": item.labels}

    def head(self, n: int) -> ExampleDataset:
        """The first ``n`` items as a new dataset."""
        return ExampleDataset(self._items[:n])

    @property
    def n_tokens(self) -> int:
        """Labelled tokens in the whole dataset."""
        return sum(item.n_labelled for item in self._items)


class PadCollator:
    """Right-pads a batch: ``pad_id`` for inputs, -100 for labels, 0 in the attention mask."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Stack ``batch`` into ``input_ids``, ``labels`` and ``attention_mask`` tensors."""
        import torch

        width = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            ids[row, :n] = torch.tensor(item["input_ids"], dtype=torch.long)
            labels[row, :n] = torch.tensor(item["labels"], dtype=torch.long)
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}
