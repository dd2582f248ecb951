"""Vectorised array idioms that several layers share (numpy only, no movierec imports).

Flattened groups (a CSR row's entries, a user's draws, a fetched list's expansion) come as counts per
group, stored one group after another; these give every entry its place without a loop over groups.
"""

from __future__ import annotations

import numpy as np

__all__ = ["concat_ranges", "run_positions", "stable_argsort"]


def run_positions(counts: np.ndarray) -> np.ndarray:
    """Each entry's position within its group, for groups of ``counts`` entries stored one after
    another: the concatenation of ``arange(c)`` for every c (int64, ``counts.sum()`` long)."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(start, start + length)`` for every pair (int64)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + run_positions(lengths)


# Below this many keys numpy's own stable sort is as fast (no packing to pay for).
_PACKED_MIN = 1 << 16
# Rows numbered per block while packing: bounds the scratch `arange` (8 bytes a row).
_PACK_BLOCK = 1 << 22


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` for a 1-D integer (or bool) array, 4-6x faster on tens of
    millions of keys: each key, less the smallest, is shifted left by the bits a row number needs and
    the row number put in those bits; the packed values are distinct, so an unstable (SIMD) sort of
    them orders the rows as a stable sort of the keys does (32M keys of 200k users: 0.74 s against
    4.7 s). Falls back to numpy's stable sort where key range and row numbers need more than 63 bits,
    and for other dtypes."""
    keys = np.asarray(keys)
    n = len(keys)
    if keys.ndim != 1 or keys.dtype.kind not in "iub" or n < max(_PACKED_MIN, 1):
        return np.argsort(keys, kind="stable")
    low, high = int(keys.min()), int(keys.max())
    row_bits = (n - 1).bit_length()
    if (high - low).bit_length() + row_bits > 63:
        return np.argsort(keys, kind="stable")
    if keys.dtype.kind == "u" and high >= 2**63:  # the span fits, but int64 cannot hold the keys
        keys = keys - np.uint64(low)
        low = 0
    packed = keys.astype(np.int64)
    packed -= low
    packed <<= row_bits
    for start in range(0, n, _PACK_BLOCK):
        stop = min(start + _PACK_BLOCK, n)
        packed[start:stop] |= np.arange(start, stop, dtype=np.int64)
    packed.sort()
    packed &= (1 << row_bits) - 1
    return packed
