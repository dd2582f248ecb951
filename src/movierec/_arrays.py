"""Vectorised array idioms that several layers share (numpy only, no movierec imports).

Flattened groups (a CSR row's entries, a user's draws, a fetched list's expansion) come as counts per
group, stored one group after another; these give every entry its place without a loop over groups.
"""

from __future__ import annotations

import numpy as np

__all__ = ["concat_ranges", "run_positions"]


def run_positions(counts: np.ndarray) -> np.ndarray:
    """Each entry's position within its group, for groups of ``counts`` entries stored one after
    another: the concatenation of ``arange(c)`` for every c (int64, ``counts.sum()`` long)."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(start, start + length)`` for every pair (int64)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.repeat(np.asarray(starts, dtype=np.int64), lengths) + run_positions(lengths)
