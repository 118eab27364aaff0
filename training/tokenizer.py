"""Tokenizers for training: the book's ``tokenizer_k`` (6,144-token byte-level BPE, ChatML) or one trained here.

The book (chapter 5.2) trains a byte-level BPE with NFKC normalisation and five special tokens, ``<unk> <s> </s>
<|im_start|> <|im_end|>`` (ids 0-4), and uses ``<|im_start|>`` as BOS and ``<|im_end|>`` as EOS and padding, with
Qwen2.5's ChatML chat template. :func:`train_bpe_tokenizer` follows that recipe so that a tokenizer trained on your
own corpus behaves exactly like the book's.

Example::

    tok = load_tokenizer(book_tokenizer_path(Path("../shared/data")))
    tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from llm_backend.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# The book's chat template (chapter 5.2.4, identical to Qwen2.5's ChatML without tools).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "<|im_start|>system\n{{ message['content'] }}<|im_end|>\n"
    "{% elif message['role'] == 'user' %}"
    "<|im_start|>user\n{{ message['content'] }}<|im_end|>\n"
    "{% elif message['role'] == 'assistant' %}"
    "<|im_start|>assistant\n{{ message['content'] }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
BOOK_TOKENIZER_SUBPATH = Path("happy-llm-book") / "tokenizer_k"


def book_tokenizer_path(data_dir: Path | None) -> Path:
    """Where the book's ``tokenizer_k`` lies in the data directory (``$RAGENT_DATA``); raises if it is absent."""
    if data_dir is None:
        raise ConfigError(
            "no tokenizer given and no data directory set to find the book's tokenizer_k in. "
            "Pass --tokenizer PATH, --train-tokenizer VOCAB_SIZE, or set RAGENT_DATA (e.g. ../shared/data)."
        )
    path = Path(data_dir).expanduser() / BOOK_TOKENIZER_SUBPATH
    if not (path / "tokenizer.json").is_file():
        raise ConfigError(
            f"the book's tokenizer is not at {path} (no tokenizer.json). Point RAGENT_DATA at the folder holding "
            "happy-llm-book/, pass --tokenizer PATH, or train one with --train-tokenizer VOCAB_SIZE."
        )
    return path


def load_tokenizer(path: Path | str) -> PreTrainedTokenizerBase:
    """Load a tokenizer folder and make sure it can train and serve a chat model.

    A tokenizer without a chat template gets the book's ChatML template; one without a pad token pads with EOS.
    Raises :class:`ConfigError` when the folder cannot be loaded or has no EOS token.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load a tokenizer from {path}: {exc}. Pass a folder with tokenizer.json.") from exc
    if tok.eos_token_id is None:
        raise ConfigError(f"tokenizer at {path} has no eos_token: a chat model needs one to stop. Set it first.")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        log.info("tokenizer at %s has no chat template; using the book's ChatML template", path)
        tok.chat_template = CHATML_TEMPLATE
    return tok


def train_bpe_tokenizer(
    texts: Iterable[str], out_dir: Path, *, vocab_size: int = 6144, min_frequency: int = 2
) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE on ``texts`` with the book's recipe and save it (with ChatML) to ``out_dir``.

    Special tokens get ids 0-4 in the book's order; BOS is ``<|im_start|>``, EOS and PAD ``<|im_end|>``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ConfigError(
            f"vocab size {vocab_size} is too small for a byte-level BPE (256 bytes + {len(SPECIAL_TOKENS)} special "
            "tokens at least); try 2048 or more"
        )
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.normalizer = normalizers.NFKC()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        min_frequency=min_frequency,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    for expected_id, token in enumerate(SPECIAL_TOKENS):
        if core.token_to_id(token) != expected_id:  # pragma: no cover - guaranteed by BpeTrainer's ordering
            raise ConfigError(f"trained tokenizer maps {token!r} to {core.token_to_id(token)}, not {expected_id}")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHATML_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    log.info("trained a %d-token BPE tokenizer into %s", len(tok), out_dir)
    return tok
