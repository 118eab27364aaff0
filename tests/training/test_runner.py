"""Tiny end-to-end training runs on the CPU (seconds): pretrain, resume, SFT, the CLI, the saved checkpoint."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps.cli.train import app, parse_trainer_args
from llm_backend.errors import ConfigError, RagentError
from training.runner import REPORT_FILE, TrainOptions, run_pretrain, run_sft, training_arguments
from training.spec import ModelSpec

pytestmark = pytest.mark.slow

DATA_DIR = Path(os.environ.get("RAGENT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
BOOK = DATA_DIR / "happy-llm-book"
TINY = ModelSpec(dim=64, n_layers=2, n_heads=2, n_kv_heads=1, context_len=256)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short files of the book (a train file and a held-out one)."""
    if not BOOK.is_dir():
        pytest.skip(f"the Happy-LLM book is not in {DATA_DIR}; set RAGENT_DATA")
    root = tmp_path_factory.mktemp("corpus")
    shutil.copy(BOOK / "前言.md", root / "preface.md")
    shutil.copy(BOOK / "学习与环境准备.md", root / "heldout.md")
    return root


@pytest.fixture(scope="module")
def pretrained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint pretrained for 12 steps through the CLI."""
    out = tmp_path_factory.mktemp("runs") / "pre"
    result = CliRunner().invoke(
        app,
        [
            "pretrain", str(corpus), "--out", str(out), "--data-dir", str(DATA_DIR), "--holdout", "heldout*",
            "--dim", "64", "--layers", "2", "--heads", "2", "--kv-heads", "1", "--context-len", "256",
            "--block-size", "64", "--steps", "12", "--batch-size", "4", "--lr", "3e-3", "--warmup", "2",
            "--logging-steps", "2", "--eval-steps", "6", "--save-steps", "6", "--no-progress", "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 12  # --json: stdout holds the report only, the loss logs go to stderr
    return out


def test_pretrain_writes_a_servable_checkpoint_and_learns(pretrained: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((pretrained / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["head_dim"], config["num_key_value_heads"], config["max_position_embeddings"]) == (32, 1, 256)
    assert config["tie_word_embeddings"] is True and config["use_cache"] is True
    assert json.loads((pretrained / "generation_config.json").read_text())["eos_token_id"] == 4
    tok = AutoTokenizer.from_pretrained(str(pretrained))
    prompt = tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"
    model = AutoModelForCausalLM.from_pretrained(str(pretrained))
    assert type(model).__name__ == "LlamaForCausalLM"

    report = json.loads((pretrained / REPORT_FILE).read_text())
    assert report["steps"] == 12
    assert report["perplexity_after"] < 0.8 * report["perplexity_before"]  # a random init sits near the vocab size
    assert report["last_loss"] < report["first_loss"]
    assert any("eval_loss" in e for e in report["log_history"])
    assert (pretrained / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in (pretrained / "checkpoints").iterdir()) == ["checkpoint-12", "checkpoint-6"]


def test_resume_continues_and_refuses_to_clobber(pretrained: Path, corpus: Path, tmp_path: Path) -> None:
    pretrained = Path(shutil.copytree(pretrained, tmp_path / "run"))  # leave the shared fixture as it was
    options = dict(max_steps=14, batch_size=4, logging_steps=2, save_steps=100, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        run_pretrain(corpus, TINY, TrainOptions(out_dir=pretrained, **options), data_dir=DATA_DIR, block_size=64)  # type: ignore[arg-type]
    report = run_pretrain(
        corpus, TINY, TrainOptions(out_dir=pretrained, resume=True, **options), data_dir=DATA_DIR, block_size=64  # type: ignore[arg-type]
    )
    history = json.loads((pretrained / REPORT_FILE).read_text())["log_history"]
    assert report.steps == 14
    # The loss history of the first 12 steps came back from the checkpoint.
    assert [e["step"] for e in history if "loss" in e][:2] == [1, 2]


def test_sft_learns_assistant_replies(pretrained: Path, tmp_path: Path) -> None:
    convs = tmp_path / "sft.jsonl"
    lines = [
        {"conversations": [{"role": "user", "content": f"{a}+{b}=?"}, {"role": "assistant", "content": f"{a + b}"}]}
        for a in range(6)
        for b in range(6)
    ]
    convs.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    report = run_sft(
        convs,
        pretrained,
        TrainOptions(out_dir=tmp_path / "sft", max_steps=10, batch_size=8, learning_rate=3e-3, logging_steps=2,
                     eval_steps=5, progress=False),
        eval_fraction=0.2,
    )
    assert report.kind == "sft" and report.steps == 10
    assert report.perplexity_before and report.perplexity_after and report.perplexity_after < report.perplexity_before
    # 36 conversations, 7 held out; every learned token is a digit or <|im_end|>: 1-2 digits + 1 per reply.
    assert report.data["train_conversations"] == 29
    assert 29 * 2 <= report.train_tokens <= 29 * 3
    assert json.loads((tmp_path / "sft" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


def test_trained_tokenizer_pretrain(corpus: Path, tmp_path: Path) -> None:
    report = run_pretrain(
        corpus, TINY, TrainOptions(out_dir=tmp_path / "own", max_steps=2, batch_size=2, progress=False),
        train_tokenizer_vocab=400, block_size=32,
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tmp_path / "own"))
    assert len(tok) == 400 and report.model["vocab_size"] == 400
    assert tok.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


def test_eval_ppl_command(pretrained: Path, corpus: Path) -> None:
    result = CliRunner().invoke(app, ["eval-ppl", str(pretrained), str(corpus / "heldout.md"), "--block-size", "64", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    report = json.loads((pretrained / REPORT_FILE).read_text())
    # The same windows as the run's own held-out measurement of this checkpoint, hence the same figure.
    assert data["tokens"] == report["eval_tokens"]
    assert data["perplexity"] == pytest.approx(report["perplexity_after"], rel=1e-3)


def test_cli_errors_are_actionable(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path), "--out", str(tmp_path / "o"), "--dim", "100", "--heads", "8"])
    assert result.exit_code == 1 and "not divisible" in result.output
    result = CliRunner().invoke(app, ["sft", str(tmp_path / "c.jsonl"), "--base", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "config.json" in result.output


def test_trainer_arguments_pass_through(tmp_path: Path) -> None:
    args = training_arguments(
        TrainOptions(out_dir=tmp_path, trainer_args=parse_trainer_args(["optim=adafactor", "save_total_limit=5"])),
        has_eval=False,
    )
    assert args.optim == "adafactor" and args.save_total_limit == 5 and args.eval_strategy == "no"
    with pytest.raises(ConfigError, match="trainer-arg"):
        training_arguments(TrainOptions(out_dir=tmp_path, trainer_args={"no_such_field": 1}), has_eval=False)
    with pytest.raises(RagentError, match="KEY=VALUE"):
        parse_trainer_args(["oops"])
