"""The book's Tiny-K, converted to a Llama checkpoint, computes the same logits (the reference test of the import)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from llm_backend.errors import ConfigError
from training.tinyk_import import (
    import_tinyk,
    infer_tinyk_config,
    load_tinyk_state_dict,
    permute_rotary,
    tinyk_to_llama,
)
from training.tinyk_reference import ModelConfig, Transformer, apply_rotary_emb, precompute_freqs_cis

DATA_DIR = Path(os.environ.get("RAGENT_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def book_tokenizer() -> Path:
    """The book's tokenizer_k from the shared data directory."""
    path = DATA_DIR / "happy-llm-book" / "tokenizer_k"
    if not path.is_dir():
        pytest.skip(f"the book's tokenizer is not in {DATA_DIR}; set RAGENT_DATA")
    return path


SMALL = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=97, max_seq_len=32)


def _random_tinyk(config: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # the book initialises norms to 1: make them matter
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            else:
                p.mul_(5.0)  # larger weights so that a wrong mapping shows in the logits
    return model.eval()


def _tinyk_logits(model: Transformer, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens, targets=tokens)


def _llama_logits(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=tokens).logits


def test_reference_matches_the_book_shapes() -> None:
    cos, sin = precompute_freqs_cis(288 // 6, 50)
    xq_out, xk_out = apply_rotary_emb(torch.randn(1, 50, 6, 48), torch.randn(1, 50, 6, 48), cos, sin)
    assert cos.shape == (50, 24) and xq_out.shape == xk_out.shape == (1, 50, 6, 48)
    book = Transformer(ModelConfig(dim=768, n_layers=12))
    # The book prints "Number of parameters: 82594560" for its default ModelConfig (tied embeddings counted once).
    assert sum(p.numel() for p in book.parameters()) == 82594560


@pytest.mark.parametrize(
    "config",
    [SMALL, ModelConfig(dim=96, n_layers=3, n_heads=3, n_kv_heads=1, vocab_size=50, hidden_dim=80, max_seq_len=16)],
)
def test_converted_logits_match_the_reference(config: ModelConfig) -> None:
    tinyk = _random_tinyk(config)
    state = dict(tinyk.state_dict())
    inferred = infer_tinyk_config(state, n_heads=config.n_heads, max_seq_len=config.max_seq_len)
    assert (inferred.dim, inferred.n_layers, inferred.n_kv_heads, inferred.vocab_size) == (
        config.dim,
        config.n_layers,
        config.n_kv_heads,
        config.vocab_size,
    )
    llama = tinyk_to_llama(state, inferred)
    tokens = torch.randint(0, config.vocab_size, (2, config.max_seq_len))
    expected = _tinyk_logits(tinyk, tokens)
    got = _llama_logits(llama, tokens)
    assert expected.abs().max() > 1.0  # the comparison is not between two near-zero tensors
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert llama.config.tie_word_embeddings is True


def test_without_the_rope_permutation_logits_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The permutation is what makes the logits match (so the main test can fail)."""
    import training.tinyk_import as mod

    tinyk = _random_tinyk(SMALL)
    monkeypatch.setattr(mod, "permute_rotary", lambda w, n_heads: w)
    llama = tinyk_to_llama(dict(tinyk.state_dict()), SMALL)
    tokens = torch.randint(0, SMALL.vocab_size, (1, SMALL.max_seq_len))
    assert not torch.allclose(_llama_logits(llama, tokens), _tinyk_logits(tinyk, tokens), atol=1e-3)


def test_permute_rotary_puts_real_parts_first() -> None:
    w = torch.arange(8.0).repeat_interleave(3).view(8, 3)  # 2 heads of size 4: rows 0..7
    assert permute_rotary(w, n_heads=2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_import_writes_a_servable_checkpoint(tmp_path: Path, book_tokenizer: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = ModelConfig(dim=64, n_layers=2, n_heads=2, n_kv_heads=1, vocab_size=6144, max_seq_len=64)
    tinyk = _random_tinyk(config)
    pth = tmp_path / "pretrain_64_2_6144.pth"
    # As saved after torch.compile: every name carries "_orig_mod.".
    torch.save({f"_orig_mod.{k}": v for k, v in tinyk.state_dict().items()}, pth)
    assert set(load_tinyk_state_dict(pth)) == set(tinyk.state_dict())

    out = import_tinyk(pth, tmp_path / "hf", n_heads=2, tokenizer=book_tokenizer, max_seq_len=64)
    cfg = (out / "config.json").read_text()
    assert '"LlamaForCausalLM"' in cfg and '"head_dim": 32' in cfg
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    tokens = torch.tensor([tok("第五章 动手搭建大模型")["input_ids"]])
    torch.testing.assert_close(_llama_logits(model, tokens), _tinyk_logits(tinyk, tokens), rtol=1e-4, atol=1e-4)


def test_import_rejects_a_wrong_head_count() -> None:
    state = dict(_random_tinyk(SMALL).state_dict())
    with pytest.raises(ConfigError, match="n-heads"):
        infer_tinyk_config(state, n_heads=5)
    with pytest.raises(ConfigError, match="Tiny-K"):
        infer_tinyk_config({"foo": torch.zeros(1)}, n_heads=4)
