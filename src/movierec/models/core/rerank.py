"""Re-ranking a candidate list for variety: maximal marginal relevance (Carbonell & Goldstein, 1998).

MMR picks items one at a time, each maximising
``(1 - diversity) * relevance - diversity * (highest similarity to an item already picked)``,
so a list stops repeating one kind of movie. Relevance is min-max scaled over the candidates so that
``diversity`` means the same for every model, whatever the range of its scores.

`select` is the top-k of a whole score block, re-ranked this way when asked: what `recommend` runs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from movierec.models.core.topk import top_k

__all__ = ["mmr", "select"]


def select(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None,
    candidates: np.ndarray | None,
    diversity: float,
    similarity: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of a score block (rows: users, columns: item indices) as `top_k` selects it, or with
    ``diversity`` in (0, 1] re-ranked by MMR within a pool of the best few times k of each row.

    ``similarity(members)`` gives the (m, m) similarity among item indices ``members``. Returns
    (items, scores) as `top_k` does; re-ranked rows carry each pick's own score.
    """
    width = min(int(k), scores.shape[1])
    if diversity <= 0:
        return top_k(scores, width, exclude=exclude, candidates=candidates)
    pool, pool_scores = top_k(scores, min(scores.shape[1], max(5 * width, 50)), exclude=exclude,
                              candidates=candidates)
    items = np.full((len(scores), width), -1, dtype=np.int64)
    chosen = np.full((len(scores), width), -np.inf)
    for row in range(len(scores)):
        valid = pool[row] >= 0
        members, relevance = pool[row][valid], pool_scores[row][valid]
        if not len(members):
            continue
        order = mmr(relevance, similarity(members), width, diversity)
        items[row, : len(order)] = members[order]
        chosen[row, : len(order)] = relevance[order]
    return items, chosen


def mmr(relevance: np.ndarray, similarity: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Order of up to ``k`` candidates chosen by maximal marginal relevance.

    Args:
        relevance: (m,) scores of the candidates, higher is better (any scale).
        similarity: (m, m) similarity between candidates (e.g. cosine, in [0, 1]).
        k: how many to pick.
        diversity: in [0, 1]; 0 keeps the relevance order, 1 ignores relevance after the first pick.

    Returns:
        int64 positions into the candidates, in picking order (min(k, m) of them). Ties go to the
        lower position, so with ``diversity=0`` this is a stable sort by relevance.
    """
    relevance = np.asarray(relevance, dtype=np.float64)
    m = len(relevance)
    width = min(int(k), m)
    if width == 0:
        return np.empty(0, dtype=np.int64)
    if diversity <= 0:  # exact, rather than through the rescaled scores
        return np.argsort(-relevance, kind="stable")[:width].astype(np.int64)
    low, high = np.min(relevance), np.max(relevance)
    scaled = (relevance - low) / (high - low) if high > low else np.ones(m)
    closest = np.zeros(m)  # highest similarity to anything picked so far
    picked = np.zeros(m, dtype=bool)
    order = np.empty(width, dtype=np.int64)
    for step in range(width):  # k steps of O(m) vector work: not a per-rating loop
        value = (1.0 - diversity) * scaled - diversity * closest
        value[picked] = -np.inf
        # first maximum: lowest position wins ties; the first pick is the most relevant, exactly
        choice = int(np.argmax(value if step else relevance))
        order[step] = choice
        picked[choice] = True
        closest = np.maximum(closest, similarity[choice])
    return order
