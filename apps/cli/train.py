"""`ragent train`: pretrain and fine-tune your own LLaMA-style model, import the book's Tiny-K, measure perplexity.

Every command ends in (or reads) a standard Hugging Face checkpoint folder that `ragent serve --model DIR` serves on
vLLM and `ragent eval` evaluates. Heavy libraries (torch, transformers) are imported inside the commands.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

from llm_backend.errors import RagentError

app = typer.Typer(
    help="Train your own model (the Happy-LLM book, chapters 5-6): pretrain, sft, import-tinyk, eval-ppl.",
    no_args_is_help=True,
)


def _fail(error: RagentError | str) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _data_dir(data_dir: Path | None) -> Path | None:
    """--data-dir, else the settings' data directory, else ``$RAGENT_DATA`` (the documented variable)."""
    import os

    from llm_backend.settings import Settings

    resolved = Settings.load(data_dir=data_dir).data_dir
    if resolved is None and os.environ.get("RAGENT_DATA"):
        resolved = Path(os.environ["RAGENT_DATA"]).expanduser()
    return resolved


def parse_trainer_args(items: list[str] | None) -> dict[str, Any]:
    """``["key=value", ...]`` -> dict; values are JSON when they parse (numbers, booleans, lists), else strings.

    >>> parse_trainer_args(["torch_compile=true", "optim=adafactor", "eval_delay=0.5"])
    {'torch_compile': True, 'optim': 'adafactor', 'eval_delay': 0.5}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RagentError(f"--trainer-arg {item!r}: expected KEY=VALUE (a transformers.TrainingArguments field)")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


@contextlib.contextmanager
def _stdout_for(as_json: bool) -> Iterator[None]:
    """With --json, everything the training libraries print goes to stderr, so stdout holds only the JSON."""
    if not as_json:
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _print_report(report: Any, as_json: bool) -> None:
    data = report.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{data['kind']}: {data['steps']} steps in {data['minutes']:.1f} min, {data['n_params'] / 1e6:.2f}M parameters")
    if data["first_loss"] is not None:
        typer.echo(f"  train loss {data['first_loss']:.3f} -> {data['last_loss']:.3f}")
    if data["perplexity_before"] is not None:
        typer.echo(
            f"  held-out perplexity {data['perplexity_before']:.1f} -> {data['perplexity_after']:.1f} "
            f"({data['eval_tokens']} tokens)"
        )
    typer.echo(f"  checkpoint: {data['out_dir']}  (serve it: ragent serve --model {data['out_dir']})")
    if data["loss_png"]:
        typer.echo(f"  loss curve: {data['loss_png']}")


def _options(**kw: Any) -> Any:
    from training.runner import TrainOptions

    resume_from = kw.pop("resume_from")
    resume = kw.pop("resume")
    kw["resume"] = str(resume_from) if resume_from else bool(resume)
    kw["trainer_args"] = parse_trainer_args(kw.pop("trainer_arg"))
    kw["deepspeed"] = str(kw["deepspeed"]) if kw.get("deepspeed") else None
    return TrainOptions(**kw)


def _trainer_parameters(*, steps: int, lr: float, warmup: int) -> list[inspect.Parameter]:
    """The Trainer options `pretrain` and `sft` share, named as ``TrainOptions`` fields; only three defaults differ."""
    opt = typer.Option
    table: list[tuple[str, Any, Any]] = [
        ("out_dir", Path, opt(..., "--out", "-o", help="Output folder: checkpoint, checkpoints/, loss.png, report.")),
        ("max_steps", int, opt(steps, "--steps", help="Optimizer steps (0: use --epochs).")),
        ("epochs", float, opt(1.0, help="Epochs when --steps is 0.")),
        ("batch_size", int, opt(8, help="Sequences (sft: conversations) per device per step.")),
        ("grad_accum", int, opt(1, help="Gradient accumulation steps.")),
        ("learning_rate", float, opt(lr, "--lr", help="Peak learning rate (cosine decay to 10%).")),
        ("warmup_steps", int, opt(warmup, "--warmup", help="Warm-up steps.")),
        ("logging_steps", int, opt(10, help="Log the loss every N steps.")),
        ("eval_steps", int, opt(50, help="Held-out loss every N steps (pretrain: with --holdout).")),
        ("save_steps", int, opt(100, help="Checkpoint every N steps (resumable).")),
        ("seed", int, opt(42, help="Random seed.")),
        ("bf16", bool, opt(False, help="bf16 mixed precision (GPUs; recent CPUs).")),
        ("fp16", bool, opt(False, help="fp16 mixed precision (GPUs).")),
        ("deepspeed", Path, opt(None, help="DeepSpeed JSON config (needs `pip install deepspeed`).")),
        ("gradient_checkpointing", bool, opt(False, help="Trade compute for memory.")),
        ("resume", bool, opt(False, help="Continue from the newest checkpoint in OUT/checkpoints.")),
        ("resume_from", Path, opt(None, help="Continue from this checkpoint folder.")),
        ("overwrite", bool, opt(False, help="Discard checkpoints of an earlier run in OUT.")),
        ("trainer_arg", list[str], opt(None, help="Any other TrainingArguments field, KEY=VALUE (repeatable).")),
        ("progress", bool, opt(True, help="Show the progress bar.")),
    ]
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind) for name, kind, default in table]


def trainer_options(*, steps: int, lr: float, warmup: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared Trainer options (with these defaults): they are added to its signature before
    ``as_json`` and reach it gathered into one ``TrainOptions``, as its ``options`` keyword."""
    shared = _trainer_parameters(steps=steps, lr=lr, warmup=warmup)

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "options"]
        last = [p for p in own if p.name == "as_json"]
        params = [p for p in own if p.name != "as_json"] + shared + last

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            trainer = {p.name: kwargs.pop(p.name) for p in shared}
            try:
                options = _options(**trainer)
            except RagentError as exc:
                raise _fail(exc) from None
            command(options=options, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # what typer reads
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


@app.command()
@trainer_options(steps=300, lr=1e-3, warmup=20)
def pretrain(
    corpus: Path = typer.Argument(..., help="Folder of text files (.txt/.md, recursive) or one file."),
    tokenizer: Path = typer.Option(None, help="Tokenizer folder (default: the book's tokenizer_k in the data dir)."),
    train_tokenizer: int = typer.Option(None, help="Instead, train a byte-level BPE of this vocab size on the corpus."),
    data_dir: Path = typer.Option(None, help="Data directory holding happy-llm-book/ (default $RAGENT_DATA)."),
    holdout: str = typer.Option(None, help="File-name glob kept out of training for perplexity, e.g. 'chapter7*'."),
    dim: int = typer.Option(256, help="Model width (the book: 1024 for 215M)."),
    layers: int = typer.Option(4, help="Decoder layers (the book: 18)."),
    heads: int = typer.Option(8, help="Query heads; dim/heads is the head size (vLLM CPU: 32, 64, 128...)."),
    kv_heads: int = typer.Option(4, help="Key/value heads (grouped-query attention)."),
    hidden_dim: int = typer.Option(None, help="SwiGLU width (default: the book's 2/3 * 4 * dim, rounded to 64)."),
    context_len: int = typer.Option(4096, help="Longest sequence the served model accepts (max_position_embeddings)."),
    block_size: int = typer.Option(256, help="Training sequence length in tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    *,
    options: Any = None,
) -> None:
    """Pretrain a LLaMA-style model from scratch (the book's chapter 5 architecture, chapter 6 Trainer).

    Several GPUs: launch with `torchrun --nproc_per_node N -m apps.cli.main train pretrain ...` or
    `accelerate launch`; the Trainer does the rest.
    """
    from training.runner import run_pretrain
    from training.spec import ModelSpec

    try:
        spec = ModelSpec(
            dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv_heads, hidden_dim=hidden_dim, context_len=context_len
        )
        with _stdout_for(as_json):
            report = run_pretrain(
                corpus, spec, options, tokenizer=tokenizer, train_tokenizer_vocab=train_tokenizer,
                data_dir=_data_dir(data_dir), holdout=holdout, block_size=block_size,
            )
    except RagentError as exc:
        raise _fail(exc) from None
    _print_report(report, as_json)


@app.command()
@trainer_options(steps=200, lr=5e-4, warmup=10)
def sft(
    conversations: Path = typer.Argument(..., help='JSONL, one conversation a line: {"conversations": [{"role", "content"}...]}.'),
    base: Path = typer.Option(..., "--base", "-b", help="Checkpoint to fine-tune (e.g. from `ragent train pretrain`)."),
    max_length: int = typer.Option(512, help="Longest training sequence in tokens (longer ones are cut)."),
    eval_file: Path = typer.Option(None, help="Held-out conversations JSONL (default: --eval-fraction of the data)."),
    eval_fraction: float = typer.Option(0.05, help="Share of conversations held out when no --eval-file."),
    as_json: bool = typer.Option(False, "--json", help="Print the run report as JSON."),
    *,
    options: Any = None,
) -> None:
    """Supervised fine-tuning on conversations, loss on assistant replies only (the book's 5.3.3 / 6.2)."""
    from training.runner import run_sft

    try:
        with _stdout_for(as_json):
            report = run_sft(
                conversations, base, options, max_length=max_length, eval_file=eval_file, eval_fraction=eval_fraction
            )
    except RagentError as exc:
        raise _fail(exc) from None
    _print_report(report, as_json)


@app.command("eval-ppl")
def eval_ppl(
    model: Path = typer.Argument(..., help="Checkpoint folder."),
    texts: list[Path] = typer.Argument(..., help="Text files or folders to measure on."),
    block_size: int = typer.Option(256, help="Tokens per scored window (windows do not overlap)."),
    batch_size: int = typer.Option(8, help="Windows per forward pass."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Perplexity of a checkpoint on text files (token-weighted, non-overlapping windows)."""
    from transformers import AutoModelForCausalLM

    from training.data import ExampleDataset, list_text_files, pack_blocks, read_texts, tokenize_documents
    from training.perplexity import evaluate_perplexity
    from training.tokenizer import load_tokenizer

    try:
        if not (model / "config.json").is_file():
            raise RagentError(f"{model} is not a checkpoint folder (no config.json)")
        tok = load_tokenizer(model)
        files = [f for t in texts for f in list_text_files(t)]
        blocks = pack_blocks(
            tokenize_documents(tok, read_texts(files)), block_size, separator_id=tok.eos_token_id, drop_last=False
        )
        with _stdout_for(as_json):
            lm = AutoModelForCausalLM.from_pretrained(str(model))
            result = evaluate_perplexity(
                lm, ExampleDataset(blocks), pad_id=int(tok.pad_token_id), batch_size=batch_size
            )
    except RagentError as exc:
        raise _fail(exc) from None
    data = {"model": str(model), "files": [str(f) for f in files], "block_size": block_size, **result.__dict__}
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        typer.echo(f"perplexity {result.perplexity:.2f} (NLL {result.nll:.4f} nats/token over {result.tokens} tokens)")


@app.command("import-tinyk")
def import_tinyk_cmd(
    checkpoint: Path = typer.Argument(..., help="The book's .pth state dict (e.g. pretrain_1024_18_6144.pth)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Hugging Face checkpoint folder."),
    n_heads: int = typer.Option(16, help="Query heads the model was trained with (the book's ModelConfig: 16)."),
    tokenizer: Path = typer.Option(None, help="Tokenizer folder (default: the book's tokenizer_k in the data dir)."),
    data_dir: Path = typer.Option(None, help="Data directory holding happy-llm-book/ (default $RAGENT_DATA)."),
    max_seq_len: int = typer.Option(512, help="The model's max_seq_len (the book: 512)."),
    norm_eps: float = typer.Option(1e-5, help="RMSNorm epsilon (the book: 1e-5)."),
) -> None:
    """Convert a model trained with the book's chapter-5 scripts (Tiny-K) into a Llama checkpoint vLLM serves."""
    from training.tinyk_import import import_tinyk
    from training.tokenizer import book_tokenizer_path

    try:
        tok_path = tokenizer if tokenizer is not None else book_tokenizer_path(_data_dir(data_dir))
        path = import_tinyk(
            checkpoint, out, n_heads=n_heads, tokenizer=tok_path, max_seq_len=max_seq_len, norm_eps=norm_eps
        )
    except RagentError as exc:
        raise _fail(exc) from None
    typer.echo(f"imported {checkpoint} -> {path}  (serve it: ragent serve --model {path} --max-model-len {max_seq_len})")


@app.command()
def tokenizer(
    corpus: Path = typer.Argument(..., help="Folder of text files (or one file) to learn the vocabulary from."),
    out: Path = typer.Option(..., "--out", "-o", help="Output tokenizer folder."),
    vocab_size: int = typer.Option(6144, help="Vocabulary size (the book: 6144)."),
) -> None:
    """Train a byte-level BPE tokenizer with ChatML special tokens and template (the book's 5.2 recipe)."""
    from training.data import list_text_files, read_texts
    from training.tokenizer import train_bpe_tokenizer

    try:
        tok = train_bpe_tokenizer(read_texts(list_text_files(corpus)), out, vocab_size=vocab_size)
    except RagentError as exc:
        raise _fail(exc) from None
    typer.echo(f"trained a {len(tok)}-token tokenizer into {out}")


@app.command("sft-data")
def sft_data(
    source: str = typer.Argument(..., help="Where the conversations come from: gsm8k (its train split)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output JSONL."),
    limit: int = typer.Option(None, help="At most this many conversations."),
    system: str = typer.Option(None, help="A system prompt to put first in every conversation."),
    data_dir: Path = typer.Option(None, help="Data directory (default $RAGENT_DATA)."),
) -> None:
    """Write a conversation JSONL for `ragent train sft` from a local training split."""
    from llm_backend.errors import did_you_mean
    from training.sft_sources import SOURCES, gsm8k_conversations, write_conversations

    try:
        if source not in SOURCES:
            raise RagentError(f"unknown source {source!r}. {did_you_mean(source, SOURCES)}Known: {', '.join(SOURCES)}")
        root = _data_dir(data_dir)
        if root is None:
            raise RagentError("no data directory: pass --data-dir or set RAGENT_DATA")
        n = write_conversations(gsm8k_conversations(root, limit=limit, system=system), out)
    except RagentError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {n} conversations to {out}")


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="Output folder of a training run (holds training_run.json)."),
    out: Path = typer.Option(None, "--out", "-o", help="PNG path (default RUN_DIR/loss.png)."),
) -> None:
    """Redraw a run's loss curve from its report."""
    from training.plot import plot_loss_curve
    from training.runner import REPORT_FILE

    report = run_dir / REPORT_FILE
    if not report.is_file():
        raise _fail(f"{report} does not exist; is {run_dir} the --out folder of `ragent train pretrain/sft`?")
    data = json.loads(report.read_text(encoding="utf-8"))
    path = plot_loss_curve(data.get("log_history", []), out or run_dir / "loss.png", title=f"{data.get('kind')}: {run_dir.name}")
    typer.echo(f"wrote {path}")
