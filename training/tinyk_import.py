"""Import a model trained with the book's chapter-5 scripts (Tiny-K ``.pth`` state dict) as a Llama checkpoint.

The names map one to one (``tok_embeddings`` -> ``model.embed_tokens``, ``layers.N.attention.wq`` ->
``model.layers.N.self_attn.q_proj``, ``feed_forward.w1/w3/w2`` -> ``mlp.gate_proj/up_proj/down_proj``, ...). One
thing is not a rename: the book rotates *interleaved* pairs ``(x[2i], x[2i+1])`` while Hugging Face's Llama
rotates *halves* ``(x[i], x[i + d/2])``. Permuting the rows of ``wq`` and ``wk`` inside every head (even rows first,
then odd rows) turns one convention into the other, exactly as ``transformers``' ``convert_llama_weights_to_hf``
does for Meta's checkpoints; queries and keys move together, so attention scores, and hence the logits, are
unchanged.

Example::

    import_tinyk(Path("base_model_215M/pretrain_1024_18_6144.pth"), Path("tinyk-hf"), n_heads=16,
                 tokenizer=Path("../shared/data/happy-llm-book/tokenizer_k"), max_seq_len=512)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_backend.errors import ConfigError
from training.spec import ModelSpec, llama_config
from training.tinyk_reference import ModelConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Prefixes the book's scripts may leave on names: torch.compile ("_orig_mod.") and DataParallel ("module.").
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")

_LAYER_MAP = {
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "attention_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")


def load_tinyk_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a Tiny-K ``.pth`` (a plain state dict, or one under ``"model"``/``"state_dict"``), wrapper prefixes
    stripped."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"Tiny-K checkpoint {path} does not exist")
    try:
        raw: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read {path} as a PyTorch state dict: {exc}") from exc
    if isinstance(raw, dict):
        for key in ("model", "state_dict"):
            if isinstance(raw.get(key), dict):
                raw = raw[key]
                break
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise ConfigError(f"{path} is not a state dict of tensors (got {type(raw).__name__})")
    return {_strip_prefixes(k): v for k, v in raw.items()}


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def infer_tinyk_config(
    state: dict[str, torch.Tensor], *, n_heads: int, max_seq_len: int = 512, norm_eps: float = 1e-5
) -> ModelConfig:
    """The book's ``ModelConfig`` behind ``state``. Shapes give everything but the number of query heads (the
    head size is not stored), which the caller passes (the book's default is 16)."""
    if "tok_embeddings.weight" not in state:
        raise ConfigError("not a Tiny-K state dict: no 'tok_embeddings.weight' (expected the book's k_model.py names)")
    vocab_size, dim = state["tok_embeddings.weight"].shape
    layer_ids = {int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))}
    if not layer_ids:
        raise ConfigError("not a Tiny-K state dict: no 'layers.N.*' weights")
    if dim % n_heads:
        raise ConfigError(f"--n-heads {n_heads} does not divide the model width {dim}; pass the heads it was trained with")
    head_dim = dim // n_heads
    kv_rows = state["layers.0.attention.wk.weight"].shape[0]
    if kv_rows % head_dim:
        raise ConfigError(f"--n-heads {n_heads} (head size {head_dim}) does not fit wk rows {kv_rows}; wrong --n-heads?")
    return ModelConfig(
        dim=int(dim),
        n_layers=max(layer_ids) + 1,
        n_heads=n_heads,
        n_kv_heads=kv_rows // head_dim,
        vocab_size=int(vocab_size),
        hidden_dim=int(state["layers.0.feed_forward.w1.weight"].shape[0]),
        norm_eps=norm_eps,
        max_seq_len=max_seq_len,
    )


def permute_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the output rows of a q/k projection from interleaved-pair RoPE to rotate-half RoPE.

    Within each head, rows ``0, 2, 4, ...`` (real parts) come first, then rows ``1, 3, 5, ...`` (imaginary parts).
    """
    rows, cols = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, head_dim // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def tinyk_to_llama_state_dict(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename (and RoPE-permute) every Tiny-K weight to its ``LlamaForCausalLM`` name. Unknown names raise."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, tensor in state.items():
        if name == "tok_embeddings.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name == "output.weight":
            out["lm_head.weight"] = tensor
        elif name == "norm.weight":
            out["model.norm.weight"] = tensor
        elif name in ("freqs_cos", "freqs_sin") or name.endswith(".mask"):
            continue  # buffers recomputed by the model
        elif (m := _LAYER_KEY.match(name)) and m.group(2) in _LAYER_MAP:
            layer, rest = m.group(1), m.group(2)
            if rest == "attention.wq.weight":
                tensor = permute_rotary(tensor, config.n_heads)
            elif rest == "attention.wk.weight":
                tensor = permute_rotary(tensor, config.n_kv_heads)
            out[f"model.layers.{layer}.{_LAYER_MAP[rest]}"] = tensor
        else:
            unknown.append(name)
    if unknown:
        raise ConfigError(f"unexpected weights in the Tiny-K state dict: {', '.join(sorted(unknown)[:6])}")
    if "lm_head.weight" not in out:  # tied: the book's output layer shares the embedding matrix
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out


def tinyk_model_spec(config: ModelConfig, *, tied: bool) -> ModelSpec:
    """The :class:`ModelSpec` equivalent of the book's ``ModelConfig``."""
    return ModelSpec(
        dim=config.dim,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        n_kv_heads=config.n_kv_heads,
        hidden_dim=config.hidden_dim,
        multiple_of=config.multiple_of,
        norm_eps=config.norm_eps,
        rope_theta=10000.0,
        context_len=config.max_seq_len,
        tie_embeddings=tied,
    )


def tinyk_to_llama(
    state: dict[str, torch.Tensor],
    config: ModelConfig,
    *,
    bos_token_id: int | None = 3,
    eos_token_id: int | None = 4,
    pad_token_id: int | None = 4,
) -> Any:
    """A ``LlamaForCausalLM`` (float32, eval mode) holding the Tiny-K weights ``state``."""
    import torch
    from transformers import LlamaForCausalLM

    tied = "output.weight" not in state or torch.equal(state["output.weight"], state["tok_embeddings.weight"])
    hf_config = llama_config(
        tinyk_model_spec(config, tied=tied),
        vocab_size=config.vocab_size,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )
    model = LlamaForCausalLM(hf_config)
    weights = {k: v.to(torch.float32) for k, v in tinyk_to_llama_state_dict(state, config).items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise ConfigError(
            f"Tiny-K weights do not fit the Llama model: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    if tied:
        model.tie_weights()
    return model.eval()


def import_tinyk(
    path: Path,
    out_dir: Path,
    *,
    n_heads: int,
    tokenizer: Path,
    max_seq_len: int = 512,
    norm_eps: float = 1e-5,
) -> Path:
    """Convert the Tiny-K checkpoint at ``path`` into a servable Hugging Face checkpoint in ``out_dir``."""
    from training.tokenizer import load_tokenizer

    state = load_tinyk_state_dict(path)
    config = infer_tinyk_config(state, n_heads=n_heads, max_seq_len=max_seq_len, norm_eps=norm_eps)
    tok = load_tokenizer(tokenizer)
    if len(tok) > config.vocab_size:
        raise ConfigError(
            f"tokenizer at {tokenizer} has {len(tok)} tokens but the model only {config.vocab_size} embeddings; "
            "pass the tokenizer the model was trained with"
        )
    model = tinyk_to_llama(
        state, config, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tok.save_pretrained(str(out_dir))
    log.info(
        "imported Tiny-K %s (dim %d, %d layers, %d/%d heads) into %s",
        path,
        config.dim,
        config.n_layers,
        config.n_heads,
        config.n_kv_heads,
        out_dir,
    )
    return out_dir
