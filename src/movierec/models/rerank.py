"""Re-ranking a candidate list for variety: maximal marginal relevance (Carbonell & Goldstein, 1998).

MMR picks items one at a time, each maximising
``(1 - diversity) * relevance - diversity * (highest similarity to an item already picked)``,
so a list stops repeating one kind of movie. Relevance is min-max scaled over the candidates so that
``diversity`` means the same for every model, whatever the range of its scores.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mmr"]


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
