"""Turning (target, quote) pairs into padded id arrays, the same way for training and prediction.

Uses the `tokenizers` library directly (no transformers, no torch): it is what the model folder ships
(`tokenizer.json`), it is fast, and a backend without torch can use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import Tokenizer


@dataclass
class EncodedBatch:
    input_ids: np.ndarray  # [B, T] int64
    attention_mask: np.ndarray  # [B, T] int64
    token_type_ids: np.ndarray  # [B, T] int64
    truncated: np.ndarray  # [B] bool: the quote (or target) did not fit in max_length
    lengths: np.ndarray  # [B] tokens before padding

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "token_type_ids": self.token_type_ids,
        }


class PairTokenizer:
    """Encodes a quote alone, or the pair (target, quote) with the target as the first segment."""

    def __init__(self, tokenizer_file: str | Path, max_length: int):
        self.path = Path(tokenizer_file)
        self.max_length = max_length
        self._tok = Tokenizer.from_file(str(self.path))
        self._tok.no_padding()  # we pad ourselves, to the longest row of each batch
        # longest_first never fails on a long target; the quote is the longer segment in practice
        self._tok.enable_truncation(max_length, strategy="longest_first")
        pad = self._tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad

    def encode_each(self, texts: Sequence[str], targets: Sequence[str | None] | None = None) -> list:
        """One `tokenizers.Encoding` per row, unpadded (for length-sorting before batching)."""
        if targets is None:
            targets = [None] * len(texts)
        inputs = [text if target is None else (target, text) for text, target in zip(texts, targets)]
        return self._tok.encode_batch(inputs) if inputs else []

    def pad(self, encodings: Sequence) -> EncodedBatch:
        """Pad encodings to the longest of them."""
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        width = int(lengths.max()) if len(lengths) else 0
        n = len(encodings)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for i, e in enumerate(encodings):
            k = len(e.ids)
            ids[i, :k] = e.ids
            mask[i, :k] = 1
            types[i, :k] = e.type_ids
        truncated = np.array([bool(e.overflowing) for e in encodings], dtype=bool)
        return EncodedBatch(ids, mask, types, truncated, lengths)

    def encode(self, texts: Sequence[str], targets: Sequence[str | None] | None = None) -> EncodedBatch:
        return self.pad(self.encode_each(texts, targets))
