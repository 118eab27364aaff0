"""Pretraining and SFT runs on the Hugging Face ``Trainer`` (the book's chapter 6), ending in a servable checkpoint.

A run writes into ``out_dir``:

- the final Hugging Face checkpoint (``config.json`` with ``LlamaForCausalLM``, ``model.safetensors``,
  ``generation_config.json``, tokenizer files and ``chat_template.jinja``): ``ragent serve --model OUT_DIR``;
- ``checkpoints/checkpoint-N/``: resumable ``Trainer`` checkpoints (``resume=True`` continues from the newest);
- ``loss.png``: the loss curve; ``training_run.json``: settings, losses, perplexity before/after, minutes,
  versions and git commit.

Everything a real run needs beyond the CPU defaults (bf16, several GPUs via ``torchrun``/``accelerate launch``,
DeepSpeed, gradient checkpointing, any other ``TrainingArguments`` field) passes straight to the ``Trainer``.

Example::

    report = run_pretrain(Path("corpus/"), ModelSpec(), TrainOptions(out_dir=Path("tiny")), tokenizer=Path("tok"))
    report.perplexity_after
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_backend.errors import ConfigError
from training.data import (
    ExampleDataset,
    PadCollator,
    encode_conversations,
    list_text_files,
    load_conversations,
    pack_blocks,
    read_texts,
    split_holdout,
    tokenize_documents,
)
from training.perplexity import PerplexityResult, evaluate_perplexity
from training.plot import loss_points, plot_loss_curve
from training.report import TrainReport, provenance
from training.spec import ModelSpec, llama_config
from training.tokenizer import book_tokenizer_path, load_tokenizer, train_bpe_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
REPORT_FILE = "training_run.json"
LOSS_PNG = "loss.png"


@dataclass
class TrainOptions:
    """How to train (the ``Trainer`` knobs the CLI exposes); ``trainer_args`` sets any other ``TrainingArguments``.

    ``max_steps`` > 0 wins over ``epochs``. ``resume`` is ``True`` (newest checkpoint in ``out_dir/checkpoints``),
    a checkpoint path, or ``False``.
    """

    out_dir: Path
    max_steps: int = 300
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 20
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int = 2
    eval_steps: int = 50
    seed: int = 42
    bf16: bool = False
    fp16: bool = False
    deepspeed: str | None = None
    gradient_checkpointing: bool = False
    resume: bool | str = False
    overwrite: bool = False
    progress: bool = True
    trainer_args: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------------
# shared plumbing
# ---------------------------------------------------------------------------------------------------------------


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _prepare_out_dir(options: TrainOptions) -> Path:
    out = Path(options.out_dir).expanduser()
    ckpt = out / CHECKPOINTS
    has_checkpoints = ckpt.is_dir() and any(ckpt.glob("checkpoint-*"))
    if options.resume is True and not has_checkpoints:
        raise ConfigError(f"--resume: no checkpoint in {ckpt} to resume from. Start without --resume.")
    if isinstance(options.resume, str) and not Path(options.resume).is_dir():
        raise ConfigError(f"--resume-from {options.resume}: no such checkpoint folder")
    if has_checkpoints and not options.resume:
        if not options.overwrite:
            raise ConfigError(
                f"{ckpt} holds checkpoints of an earlier run. Pass --resume to continue it, or --overwrite to "
                "start again from scratch."
            )
        shutil.rmtree(ckpt)
    out.mkdir(parents=True, exist_ok=True)
    return out


def training_arguments(options: TrainOptions, *, has_eval: bool) -> TrainingArguments:
    """The ``TrainingArguments`` for ``options`` (CPU-friendly defaults; ``trainer_args`` override anything)."""
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = {
        "output_dir": str(Path(options.out_dir).expanduser() / CHECKPOINTS),
        "per_device_train_batch_size": options.batch_size,
        "per_device_eval_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.grad_accum,
        "learning_rate": options.learning_rate,
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": {"min_lr_rate": options.min_lr_ratio},
        "warmup_steps": options.warmup_steps,
        "weight_decay": options.weight_decay,
        "max_grad_norm": options.max_grad_norm,
        "max_steps": options.max_steps if options.max_steps > 0 else -1,
        "num_train_epochs": options.epochs,
        "logging_steps": options.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": options.save_steps,
        "save_total_limit": options.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": options.eval_steps,
        "seed": options.seed,
        "bf16": options.bf16,
        "fp16": options.fp16,
        "deepspeed": options.deepspeed,
        "report_to": "none",
        "disable_tqdm": not options.progress,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": _has_cuda(),
    }
    if options.gradient_checkpointing:  # renamed activation_checkpointing in transformers 5.2x
        fields = TrainingArguments.__dataclass_fields__
        name = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
        kwargs[name] = True
    kwargs.update(options.trainer_args)
    try:
        return TrainingArguments(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid --trainer-arg: {exc}. See transformers.TrainingArguments for names.") from exc


def _train(
    *,
    kind: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_set: ExampleDataset,
    eval_set: ExampleDataset | None,
    eval_cap: int,
    options: TrainOptions,
    out: Path,
    model_info: dict[str, Any],
    data_info: dict[str, Any],
) -> TrainReport:
    """Train ``model``, save the checkpoint, plot and report. Perplexity is measured on ``eval_set`` in full;
    the periodic held-out loss during training uses its first ``eval_cap`` examples."""
    from transformers import Trainer

    pad_id = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
    before: PerplexityResult | None = None
    if eval_set is not None and _is_main_process():
        before = evaluate_perplexity(model, eval_set, pad_id=pad_id, batch_size=options.batch_size)
        log.info("held-out perplexity before training: %.2f over %d tokens", before.perplexity, before.tokens)
    periodic_eval = eval_set.head(eval_cap) if eval_set is not None else None
    args = training_arguments(options, has_eval=periodic_eval is not None)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_set,  # type: ignore[arg-type]
        eval_dataset=periodic_eval,  # type: ignore[arg-type]
        data_collator=PadCollator(pad_id),
        processing_class=tokenizer,
    )
    started = time.monotonic()
    resume: bool | str | None = options.resume or None
    trainer.train(resume_from_checkpoint=resume)
    minutes = (time.monotonic() - started) / 60
    if not trainer.is_world_process_zero():
        return _empty_report(kind, out)
    after: PerplexityResult | None = None
    if eval_set is not None:
        after = evaluate_perplexity(trainer.model, eval_set, pad_id=pad_id, batch_size=options.batch_size)  # type: ignore[arg-type]
        log.info("held-out perplexity after training: %.2f", after.perplexity)
    model.config.use_cache = True  # the Trainer turns the KV cache off while training; serving wants it
    trainer.save_model(str(out))
    history = list(trainer.state.log_history)
    png = plot_loss_curve(history, out / LOSS_PNG, title=f"{kind}: {out.name}") if history else None
    train_points, _ = loss_points(history)
    report = TrainReport(
        kind=kind,
        out_dir=str(out),
        steps=int(trainer.state.global_step),
        minutes=round(minutes, 2),
        n_params=int(sum(p.numel() for p in model.parameters())),
        train_tokens=train_set.n_tokens,
        first_loss=train_points[0][1] if train_points else None,
        last_loss=train_points[-1][1] if train_points else None,
        eval_tokens=before.tokens if before else (after.tokens if after else None),
        perplexity_before=round(before.perplexity, 3) if before else None,
        perplexity_after=round(after.perplexity, 3) if after else None,
        loss_png=str(png) if png else None,
        model=model_info,
        data=data_info,
        options={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        provenance=provenance(),
    )
    (out / REPORT_FILE).write_text(json.dumps({**report.to_dict(), "log_history": history}, indent=2), "utf-8")
    return report


def _empty_report(kind: str, out: Path) -> TrainReport:
    return TrainReport(kind, str(out), 0, 0.0, 0, 0, None, None, None, None, None, None, {}, {}, {}, {})


def _set_generation_defaults(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    # vLLM and generate() read generation_config.json: stop at <|im_end|>.
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id


# ---------------------------------------------------------------------------------------------------------------
# pretraining
# ---------------------------------------------------------------------------------------------------------------


def resolve_tokenizer(
    *, tokenizer: Path | None, train_vocab: int | None, data_dir: Path | None, texts: list[str], out: Path
) -> PreTrainedTokenizerBase:
    """The tokenizer for a pretraining run: trained on ``texts`` (``train_vocab``), a given folder, or the book's."""
    if train_vocab:
        if tokenizer is not None:
            raise ConfigError("pass either --tokenizer or --train-tokenizer, not both")
        train_bpe_tokenizer(texts, out / "tokenizer", vocab_size=train_vocab)
        return load_tokenizer(out / "tokenizer")
    return load_tokenizer(tokenizer if tokenizer is not None else book_tokenizer_path(data_dir))


def run_pretrain(
    corpus: Path,
    spec: ModelSpec,
    options: TrainOptions,
    *,
    tokenizer: Path | None = None,
    train_tokenizer_vocab: int | None = None,
    data_dir: Path | None = None,
    holdout: str | None = None,
    block_size: int = 256,
    eval_max_blocks: int = 32,
) -> TrainReport:
    """Pretrain a new LLaMA-style model from scratch on the text files under ``corpus``.

    ``holdout`` (a file-name glob, e.g. ``"chapter7*"``) keeps matching files out of training; perplexity on them
    is measured before and after, and the held-out loss is logged every ``options.eval_steps``.
    """
    from transformers import LlamaForCausalLM, set_seed

    out = _prepare_out_dir(options)
    files = list_text_files(corpus)
    train_files, held_files = split_holdout(files, holdout)
    train_texts = read_texts(train_files)
    tok = resolve_tokenizer(
        tokenizer=tokenizer, train_vocab=train_tokenizer_vocab, data_dir=data_dir, texts=train_texts, out=out
    )
    if block_size > spec.context_len:
        raise ConfigError(f"--block-size {block_size} exceeds the model's context length {spec.context_len}")
    blocks = pack_blocks(tokenize_documents(tok, train_texts), block_size, separator_id=tok.eos_token_id)
    if not blocks:
        raise ConfigError(f"corpus {corpus} gives less than one block of {block_size} tokens; lower --block-size")
    eval_set = None
    if held_files:
        held_blocks = pack_blocks(
            tokenize_documents(tok, read_texts(held_files)), block_size, separator_id=tok.eos_token_id, drop_last=False
        )
        eval_set = ExampleDataset(held_blocks)
    set_seed(options.seed)
    config = llama_config(
        spec,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)  # float32 weights: mixed precision (--bf16) is the Trainer's business
    _set_generation_defaults(model, tok)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("pretraining a %.2fM-parameter model on %d blocks of %d tokens", n_params / 1e6, len(blocks), block_size)
    return _train(
        kind="pretrain",
        model=model,
        tokenizer=tok,
        train_set=ExampleDataset(blocks),
        eval_set=eval_set,
        eval_cap=eval_max_blocks,
        options=options,
        out=out,
        model_info={**spec.as_dict(), "vocab_size": len(tok), "architecture": "LlamaForCausalLM"},
        data_info={
            "corpus": str(corpus),
            "train_files": [f.name for f in train_files],
            "heldout_files": [f.name for f in held_files],
            "block_size": block_size,
            "train_blocks": len(blocks),
            "tokenizer": str(tokenizer) if tokenizer else ("trained" if train_tokenizer_vocab else "book"),
        },
    )


# ---------------------------------------------------------------------------------------------------------------
# supervised fine-tuning
# ---------------------------------------------------------------------------------------------------------------


def run_sft(
    conversations: Path,
    base: Path,
    options: TrainOptions,
    *,
    max_length: int = 512,
    eval_file: Path | None = None,
    eval_fraction: float = 0.05,
    eval_max_examples: int = 64,
) -> TrainReport:
    """Fine-tune the checkpoint ``base`` on a JSONL of conversations, with loss on assistant replies only.

    Held-out conversations come from ``eval_file`` or, failing that, a seeded ``eval_fraction`` of the data;
    their assistant-token perplexity is measured before and after.
    """
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    base = Path(base).expanduser()
    if not (base / "config.json").is_file():
        raise ConfigError(f"--base {base} is not a Hugging Face checkpoint (no config.json). Pretrain one first.")
    out = _prepare_out_dir(options)
    tok = load_tokenizer(base)
    context = int(getattr(_load_config(base), "max_position_embeddings", max_length) or max_length)
    max_length = min(max_length, context)
    convs = load_conversations(conversations)
    if eval_file is not None:
        train_convs, held_convs = convs, load_conversations(eval_file)
    elif eval_fraction > 0 and len(convs) >= 2:
        order = list(range(len(convs)))
        random.Random(options.seed).shuffle(order)
        n_held = max(1, int(len(convs) * eval_fraction))
        held_idx = set(order[:n_held])
        train_convs = [c for i, c in enumerate(convs) if i not in held_idx]
        held_convs = [c for i, c in enumerate(convs) if i in held_idx]
    else:
        train_convs, held_convs = convs, []
    train_set = ExampleDataset(encode_conversations(tok, train_convs, max_length=max_length))
    eval_set = ExampleDataset(encode_conversations(tok, held_convs, max_length=max_length)) if held_convs else None
    set_seed(options.seed)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    _set_generation_defaults(model, tok)
    log.info("fine-tuning %s on %d conversations (%d learned tokens)", base, len(train_set), train_set.n_tokens)
    return _train(
        kind="sft",
        model=model,
        tokenizer=tok,
        train_set=train_set,
        eval_set=eval_set,
        eval_cap=eval_max_examples,
        options=options,
        out=out,
        model_info={"base": str(base), "architecture": type(model).__name__},
        data_info={
            "conversations": str(conversations),
            "train_conversations": len(train_convs),
            "heldout_conversations": len(held_convs),
            "max_length": max_length,
        },
    )


def _load_config(path: Path) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path))
