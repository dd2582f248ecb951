"""Per-user score rows, the currency of the combiners: z-scores and unit-L1 rows put different models'
scores and contributions on one scale before they are blended, and a combiner whose scores exist only
as whole rows predicts pairs by reading them off those rows."""

from __future__ import annotations

import numpy as np

from movierec.models.core.recommender import Recommender

__all__ = ["predict_by_rows", "unit_l1_rows", "zscore_rows"]


def unit_l1_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by the sum of its absolute values (float64; an all-zero row stays 0): puts
    contributions of different models on one scale before they are blended."""
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = np.abs(matrix).sum(axis=1, keepdims=True)
    return np.divide(matrix, scale, out=np.zeros_like(matrix), where=scale > 0)


def zscore_rows(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its standard deviation (float64; a constant row -> 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    scores = np.atleast_2d(scores)
    centred = scores - scores.mean(axis=1, keepdims=True)
    std = np.sqrt(np.mean(centred * centred, axis=1, keepdims=True))
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 1e-12)


def predict_by_rows(model: Recommender, user_index: np.ndarray, item_index: np.ndarray,
                    block: int = 1024) -> np.ndarray:
    """``model._predict`` for models whose scores exist only as whole rows (per-user z-scores, blends):
    each distinct known user's row from ``model._score_users``, ``block`` users at a time (bounding the
    dense (block, n_items) scores), read at the pairs' items; 0 where the user or item is -1."""
    user_index = np.asarray(user_index, dtype=np.int64)
    item_index = np.asarray(item_index, dtype=np.int64)
    scores = np.zeros(len(user_index))
    pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
    users, row = np.unique(user_index[pairs], return_inverse=True)
    for start in range(0, len(users), block):
        chunk = users[start : start + block]
        mine = (row >= start) & (row < start + len(chunk))
        scores[pairs[mine]] = model._score_users(chunk)[row[mine] - start, item_index[pairs[mine]]]
    return scores
