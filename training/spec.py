"""The model's size, in the book's terms (``ModelConfig`` of chapter 5), and its standard ``LlamaConfig``.

The book's Tiny-K is a LLaMA-2 decoder: RMSNorm before attention and MLP, rotary position embeddings, a SwiGLU MLP
(``w2(silu(w1 x) * w3 x)``), grouped-query attention, tied input/output embeddings. ``LlamaForCausalLM`` computes the
same function, so :func:`llama_config` only renames the knobs.

Example::

    spec = ModelSpec(dim=256, n_layers=4, n_heads=8, n_kv_heads=4)
    config = llama_config(spec, vocab_size=6144, bos_token_id=3, eos_token_id=4, pad_token_id=4)
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from llm_backend.errors import ConfigError

if TYPE_CHECKING:
    from transformers import LlamaConfig

log = logging.getLogger(__name__)

# Head sizes the CPU attention backend of vLLM 0.32 accepts (vllm/v1/attention/backends/cpu_attn.py,
# CPUAttentionBackend.get_supported_head_sizes). A checkpoint with another head size trains fine but vLLM on CPU
# refuses to serve it.
VLLM_CPU_HEAD_SIZES: tuple[int, ...] = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


def book_hidden_dim(dim: int, multiple_of: int = 64) -> int:
    """The MLP width the book derives when ``hidden_dim`` is None: 2/3 of 4*dim, rounded up to ``multiple_of``.

    >>> book_hidden_dim(768)
    2048
    >>> book_hidden_dim(256)
    704
    """
    hidden = int(2 * (4 * dim) / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


@dataclass(frozen=True)
class ModelSpec:
    """Size of a LLaMA-style decoder, named as in the book's ``ModelConfig``.

    ``context_len`` is the longest sequence the served model accepts (``max_position_embeddings``); it may exceed
    the block size used in training (RoPE has no learned positions), so that prompts longer than the training
    blocks are still served.
    """

    dim: int = 256
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 4
    hidden_dim: int | None = None
    multiple_of: int = 64
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    context_len: int = 4096
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of", "context_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model size: {name} must be at least 1, got {getattr(self, name)}")
        if self.dim % self.n_heads:
            raise ConfigError(
                f"model size: dim {self.dim} is not divisible by n_heads {self.n_heads}; "
                "pick heads so that dim / heads is a whole head size (e.g. 32 or 64)"
            )
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model size: n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads} "
                "(grouped-query attention shares each key/value head among n_heads / n_kv_heads query heads)"
            )

    @property
    def head_dim(self) -> int:
        """Size of one attention head: ``dim // n_heads``."""
        return self.dim // self.n_heads

    @property
    def mlp_dim(self) -> int:
        """The SwiGLU width actually used (``hidden_dim`` or the book's rule)."""
        return self.hidden_dim if self.hidden_dim else book_hidden_dim(self.dim, self.multiple_of)

    def servable_on_vllm_cpu(self) -> bool:
        """True when vLLM's CPU attention supports this head size."""
        return self.head_dim in VLLM_CPU_HEAD_SIZES

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for result files."""
        return {**asdict(self), "head_dim": self.head_dim, "mlp_dim": self.mlp_dim}


def llama_config(
    spec: ModelSpec,
    *,
    vocab_size: int,
    bos_token_id: int | None,
    eos_token_id: int | None,
    pad_token_id: int | None,
) -> LlamaConfig:
    """The ``LlamaConfig`` that expresses ``spec`` (warns when vLLM on CPU could not serve the head size)."""
    from transformers import LlamaConfig

    if not spec.servable_on_vllm_cpu():
        log.warning(
            "head size %d (dim %d / %d heads) is not one vLLM's CPU backend supports (%s): the checkpoint trains "
            "and loads in transformers, but `ragent serve` on CPU will refuse it",
            spec.head_dim,
            spec.dim,
            spec.n_heads,
            ", ".join(map(str, VLLM_CPU_HEAD_SIZES)),
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.dim,
        intermediate_size=spec.mlp_dim,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.head_dim,
        hidden_act="silu",
        max_position_embeddings=spec.context_len,
        rms_norm_eps=spec.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        tie_word_embeddings=spec.tie_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        attention_bias=False,
        mlp_bias=False,
        initializer_range=0.02,
    )
