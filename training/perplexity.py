"""Perplexity: ``exp`` of the mean negative log-likelihood per predicted token, weighted by tokens.

Each example is scored on its labelled positions (the model predicts token t+1 from tokens up to t), so the same
function measures held-out text (blocks from :func:`training.data.pack_blocks`, every token labelled)
and held-out conversations (assistant tokens only).

Example::

    blocks = pack_blocks(tokenize_documents(tok, read_texts([chapter7])), 256, separator_id=None, drop_last=False)
    result = evaluate_perplexity(model, ExampleDataset(blocks), pad_id=tok.pad_token_id)
    result.perplexity
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_backend.errors import ConfigError
from training.data import IGNORE_INDEX, ExampleDataset, PadCollator

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class PerplexityResult:
    """Mean NLL (nats per token), its perplexity and how many tokens were scored."""

    nll: float
    perplexity: float
    tokens: int


def evaluate_perplexity(
    model: torch.nn.Module, dataset: ExampleDataset, *, pad_id: int, batch_size: int = 8
) -> PerplexityResult:
    """Token-weighted perplexity of ``model`` (a causal LM returning ``.logits``) on ``dataset``."""
    import torch
    import torch.nn.functional as F

    if len(dataset) == 0:
        raise ConfigError("perplexity: the evaluation set is empty")
    collate = PadCollator(pad_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll = 0.0
    total_tokens = 0
    try:
        with torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                batch = {k: v.to(device) for k, v in batch.items()}
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                # Position t predicts token t+1.
                shift_logits = logits[:, :-1, :].float()
                shift_labels = batch["labels"][:, 1:]
                nll = F.cross_entropy(
                    shift_logits.reshape(-1, shift_logits.size(-1)),
                    shift_labels.reshape(-1),
                    ignore_index=IGNORE_INDEX,
                    reduction="sum",
                )
                total_nll += float(nll)
                total_tokens += int((shift_labels != IGNORE_INDEX).sum())
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise ConfigError("perplexity: no labelled token to score (every example is shorter than 2 tokens?)")
    mean = total_nll / total_tokens
    return PerplexityResult(nll=mean, perplexity=math.exp(min(mean, 700.0)), tokens=total_tokens)
