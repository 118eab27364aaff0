"""Train, import and export your own small LLaMA-style model (the Happy-LLM book, chapters 5 and 6).

The book's chapter-5 architecture (RMSNorm, RoPE, SwiGLU MLP, grouped-query attention) is exactly what Hugging Face
``LlamaForCausalLM`` implements, so we train that class with the ``transformers`` ``Trainer`` (chapter 6) and the
result is a standard checkpoint that vLLM serves natively and ``ragent eval`` evaluates.

A room of its own: it uses ``llm_backend`` (errors; the served checkpoint goes to ``ragent serve``), ``apps/cli/train.py``
is its thin CLI, and nothing below ``apps`` imports it (docs/dev/conventions.md).

Modules (each holds one idea; import the one you need, nothing heavy is imported here):

- :mod:`training.spec`: ``ModelSpec`` (the book's ``ModelConfig`` knobs) -> ``LlamaConfig``.
- :mod:`training.tokenizer`: the book's tokenizer, or a byte-level BPE trained on your corpus.
- :mod:`training.data`: text files -> packed token blocks; conversations -> assistant-only labels.
- :mod:`training.perplexity`: token-weighted perplexity on held-out text.
- :mod:`training.runner`: ``run_pretrain`` / ``run_sft`` on the ``Trainer``; writes the checkpoint.
- :mod:`training.report`: ``TrainReport`` (``training_run.json``) and the provenance it records.
- :mod:`training.plot`: the loss-curve PNG.
- :mod:`training.tinyk_reference`: the book's ``k_model.py`` (Tiny-K), re-implemented faithfully.
- :mod:`training.tinyk_import`: Tiny-K state dict -> Llama checkpoint (RoPE permutation included).
- :mod:`training.sft_sources`: conversation JSONL from local benchmark training splits.
"""
