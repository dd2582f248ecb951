"""Evaluation metrics, exactly as BENCHMARKS.md ("Metric definitions") defines them.

Pure functions over numpy / scipy.sparse arrays, vectorised over users; no I/O, no state, no model:
the evaluation protocol (`movierec.eval.protocol`) scores models with them, and a model may use them to
report validation figures while it trains.

Notation
--------
- Rows are the evaluated users, in the caller's order; items are dense column *indices*, not raw ids.
- ``topk`` (n_users, K) int: ``topk[u, i - 1]`` is the item at rank i = 1..K for user u; -1 marks an
  empty slot (the model returned fewer than K items, or could not serve u: a whole row of -1). The
  cut-off is K = ``topk.shape[1]``; pad with -1 to evaluate a shorter list at a larger K.
- rel(u): u's relevant items, the stored entries of row u of ``relevant`` (its sparsity structure;
  values, even explicit zeros, are ignored). |rel| = ``n_relevant[u]``; m = min(K, |rel|).
- h_i in {0, 1}: 1 when the item at rank i is in rel(u); empty slots are misses.

Per-user accuracy metrics, float64 arrays (n_users,), each in [0, 1]:

- Precision@K = sum_i h_i / K
- Recall@K    = sum_i h_i / |rel|
- NDCG@K      = (sum_i h_i / log2(i + 1)) / (sum_{i <= m} 1 / log2(i + 1))
- MAP@K       = sum_i h_i * Precision@i / m, with Precision@i = sum_{j <= i} h_j / i
- MRR@K       = 1 / (rank of the first hit), 0 without a hit
- HitRate@K   = 1 if any hit, else 0

A user with |rel| = 0 scores 0 on every metric. The protocol never evaluates such users (it keeps only
users with at least one test item); 0 rather than NaN keeps the arrays usable. The reported figure is
the unweighted mean over evaluated users, ``values.mean()``.

Beyond accuracy (over the whole recommendation run):

- Coverage@K = |distinct items in topk| / n_catalog (n_catalog: the items that could be recommended,
  i.e. the items in train);
- Novelty@K  = mean over all non-empty slots of -log2(p_i), p_i = the fraction of training users who
  interacted with item i; slots whose item has p_i = 0 (never seen in train) are skipped, as their
  self-information is infinite;
- ILD@K (intra-list diversity, per user) = mean over unordered pairs {i, j} of the user's non-empty
  slots of 1 - cos(f_i, f_j), f = the items' feature rows (e.g. genres); an all-zero feature row has
  cosine 0 with everything; NaN for lists of fewer than 2 items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "coverage",
    "hit_rate_at_k",
    "hits_matrix",
    "intra_list_diversity",
    "mae",
    "map_at_k",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
]


# --- rating prediction ---------------------------------------------------------------------------


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error over all pairs of 1-D ``y_true`` and ``y_pred`` (same length).

    Raises:
        ValueError: on a length mismatch, empty input or a non-finite value.
    """
    diff = _rating_errors(y_true, y_pred)
    return float(np.sqrt(np.mean(np.square(diff))))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error over all pairs of 1-D ``y_true`` and ``y_pred`` (same length).

    Raises:
        ValueError: on a length mismatch, empty input or a non-finite value.
    """
    diff = _rating_errors(y_true, y_pred)
    return float(np.mean(np.abs(diff)))


def _rating_errors(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.size} and {p.size}")
    if t.size == 0:
        raise ValueError("y_true and y_pred must not be empty")
    # A model must answer every pair (BENCHMARKS.md); NaN here is a bug upstream, not a number to mean.
    for name, values in (("y_true", t), ("y_pred", p)):
        if not np.isfinite(values).all():
            raise ValueError(
                f"{name} must be finite, got {np.count_nonzero(~np.isfinite(values))} NaN or infinite values"
            )
    return p - t


# --- top-N accuracy --------------------------------------------------------------------------------


def hits_matrix(topk: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Which recommended slots hold a relevant item.

    Args:
        topk: (n_users, K) int item indices per user, best first; -1 marks an empty slot.
        relevant: sparse (n_users, n_items); row u's stored entries are user u's relevant items
            (values ignored). Any scipy sparse format.

    Returns:
        bool (n_users, K): ``hits[u, i]`` is True when ``topk[u, i]`` is a relevant item of user u;
        always False for empty slots.

    Raises:
        ValueError: if ``topk`` is not a 2-D int array of indices in [-1, n_items) without repeats in
            a row, or its row count differs from ``relevant``'s.
    """
    hits, _ = _hits_and_counts(topk, relevant)
    return hits


def precision_at_k(hits: np.ndarray) -> np.ndarray:
    """Precision@K per user, float64 (n_users,): hits / K, K = ``hits.shape[1]``."""
    hits = _check_hits(hits)
    return np.count_nonzero(hits, axis=1) / hits.shape[1]


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Recall@K per user, float64 (n_users,): hits / |rel|; 0 where |rel| = 0."""
    hits = _check_hits(hits)
    n_rel = _check_n_relevant(n_relevant, hits)
    return np.count_nonzero(hits, axis=1) / np.maximum(n_rel, 1)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG@K per user, float64 (n_users,), binary gains; IDCG over m = min(K, |rel|) ranks.

    0 where |rel| = 0. A list whose first m slots are all hits scores exactly 1.0.
    """
    hits = _check_hits(hits)
    n_rel = _check_n_relevant(n_relevant, hits)
    k = hits.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    # Sequential sums in the same order as the ideal DCG, so a perfect list gives exactly 1.0
    # (a dot product may sum in another order and land an ulp away).
    dcg = np.cumsum(hits * discounts, axis=1)[:, -1]
    m = np.clip(n_rel, 1, k)
    return np.where(n_rel > 0, dcg / ideal[m - 1], 0.0)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """MAP@K per user (average precision), float64 (n_users,): sum_i h_i P@i / min(K, |rel|).

    0 where |rel| = 0.
    """
    hits = _check_hits(hits)
    n_rel = _check_n_relevant(n_relevant, hits)
    k = hits.shape[1]
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    total = np.sum(precision_at_i * hits, axis=1)
    return np.where(n_rel > 0, total / np.clip(n_rel, 1, k), 0.0)


def mrr_at_k(hits: np.ndarray) -> np.ndarray:
    """Reciprocal rank of the first hit per user, float64 (n_users,); 0 without a hit."""
    hits = _check_hits(hits)
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def hit_rate_at_k(hits: np.ndarray) -> np.ndarray:
    """1.0 per user with at least one hit, else 0.0; float64 (n_users,)."""
    hits = _check_hits(hits)
    return hits.any(axis=1).astype(np.float64)


def ranking_metrics(topk: np.ndarray, relevant: sp.csr_matrix) -> dict[str, np.ndarray]:
    """All per-user top-N accuracy metrics at K = ``topk.shape[1]``.

    Args:
        topk: (n_users, K) int item indices, best first; -1 marks an empty slot.
        relevant: sparse (n_users, n_items); stored entries of row u = user u's relevant items.

    Returns:
        ``{"precision", "recall", "ndcg", "map", "mrr", "hit_rate"}`` -> float64 (n_users,) each;
        users without relevant items score 0. Average with ``.mean()`` for the reported figure.

    Raises:
        ValueError: as `hits_matrix`; also if K = 0.
    """
    hits, n_rel = _hits_and_counts(topk, relevant)
    return {
        "precision": precision_at_k(hits),
        "recall": recall_at_k(hits, n_rel),
        "ndcg": ndcg_at_k(hits, n_rel),
        "map": map_at_k(hits, n_rel),
        "mrr": mrr_at_k(hits),
        "hit_rate": hit_rate_at_k(hits),
    }


# --- beyond accuracy -------------------------------------------------------------------------------


def coverage(topk: np.ndarray, n_catalog: int) -> float:
    """Catalog coverage: distinct items in ``topk`` (ignoring -1) / ``n_catalog``.

    Args:
        topk: (n_users, K) int item indices; -1 marks an empty slot.
        n_catalog: the number of items that could be recommended (items in train), >= 1.

    Raises:
        ValueError: on a bad ``topk``, ``n_catalog`` < 1, or more distinct items than ``n_catalog``.
    """
    topk = _check_topk(topk)
    if isinstance(n_catalog, bool) or not isinstance(n_catalog, int | np.integer) or n_catalog < 1:
        raise ValueError(f"n_catalog must be an int >= 1, got {n_catalog!r}")
    distinct = np.unique(topk[topk >= 0]).size
    if distinct > n_catalog:
        raise ValueError(f"topk holds {distinct} distinct items, more than n_catalog={n_catalog}")
    return distinct / int(n_catalog)


def novelty(topk: np.ndarray, item_popularity: np.ndarray) -> float:
    """Mean self-information -log2(p_i) of the recommended items, in bits.

    Args:
        topk: (n_users, K) int item indices; -1 marks an empty slot.
        item_popularity: float (n_items,) in [0, 1], indexed by item: the fraction of training users
            who interacted with the item.

    Returns:
        The mean over every non-empty slot whose item has p > 0 (p = 0 slots are skipped: their
        self-information is infinite); NaN when no slot qualifies.

    Raises:
        ValueError: on a bad ``topk``, popularity outside [0, 1] (or NaN), or an item index beyond it.
    """
    topk = _check_topk(topk)
    pop = np.asarray(item_popularity, dtype=np.float64)
    if pop.ndim != 1:
        raise ValueError(f"item_popularity must be 1-D (n_items,), got shape {pop.shape}")
    if not ((pop >= 0) & (pop <= 1)).all():
        raise ValueError("item_popularity must lie in [0, 1] (a fraction of users)")
    items = topk[topk >= 0]
    if items.size and items.max() >= pop.size:
        raise ValueError(f"topk holds item {items.max()}, beyond item_popularity's {pop.size} items")
    p = pop[items]
    p = p[p > 0]
    if p.size == 0:
        return float("nan")
    return float(np.mean(-np.log2(p)))


def intra_list_diversity(topk: np.ndarray, item_features: sp.csr_matrix) -> np.ndarray:
    """Per-user intra-list diversity: mean over item pairs in the list of 1 - cosine(features).

    Args:
        topk: (n_users, K) int item indices; -1 marks an empty slot (ignored).
        item_features: (n_items, n_features) sparse or dense, row i = item i's features (e.g. a 0/1
            genre matrix). An all-zero row has cosine 0 with every item, itself included.

    Returns:
        float64 (n_users,); NaN for users with fewer than 2 items in their list. In [0, 1] for
        non-negative features, [0, 2] in general.

    Raises:
        ValueError: on a bad ``topk`` or an item index beyond ``item_features``' rows.
    """
    topk = _check_topk(topk)
    # astype copies, so normalising in place below leaves the caller's matrix alone.
    unit = _as_csr(item_features, "item_features").astype(np.float64, copy=True)
    n_items = unit.shape[0]
    if topk.size and topk.max() >= n_items:
        raise ValueError(f"topk holds item {topk.max()}, beyond item_features' {n_items} rows")
    unit.sum_duplicates()
    row_of_entry = np.repeat(np.arange(n_items), np.diff(unit.indptr))
    norms = np.sqrt(np.bincount(row_of_entry, weights=np.square(unit.data), minlength=n_items))
    has_features = norms > 0
    unit.data /= np.where(has_features, norms, 1.0)[row_of_entry]

    # Over the ordered pairs i != j of a list of unit vectors v, sum cos(v_i, v_j) =
    # ||sum v||^2 - sum ||v||^2: one sparse product per run instead of K^2 products per user.
    n_users, k = topk.shape
    valid = topk >= 0
    rows = np.broadcast_to(np.arange(n_users)[:, None], (n_users, k))[valid]
    pick = sp.csr_matrix((np.ones(rows.size), (rows, topk[valid])), shape=(n_users, n_items))
    summed = (pick @ unit).tocsr()
    summed.sum_duplicates()
    row_of_sum = np.repeat(np.arange(n_users), np.diff(summed.indptr))
    sq_sum = np.bincount(row_of_sum, weights=np.square(summed.data), minlength=n_users)
    self_sq = pick @ has_features.astype(np.float64)
    m = np.count_nonzero(valid, axis=1)
    out = np.full(n_users, np.nan)
    ok = m >= 2
    mean_cos = (sq_sum[ok] - self_sq[ok]) / (m[ok] * (m[ok] - 1))
    # The subtraction can leave an ulp outside the true range [0, 2].
    out[ok] = np.clip(1.0 - mean_cos, 0.0, 2.0)
    return out


# --- validation ------------------------------------------------------------------------------------


def _check_topk(topk: np.ndarray) -> np.ndarray:
    topk = np.asarray(topk)
    if topk.ndim != 2 or topk.dtype.kind not in "iu":
        raise ValueError(f"topk must be a 2-D int array (n_users, K), got {topk.dtype} of shape {topk.shape}")
    if topk.size and topk.min() < -1:
        raise ValueError(f"topk holds item index {topk.min()}; only -1 may mark an empty slot")
    if topk.shape[1] > 1:
        ordered = np.sort(topk, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
        if repeated.any():
            row = int(np.flatnonzero(repeated.any(axis=1))[0])
            raise ValueError(f"topk rows must not repeat an item; row {row} does: {topk[row]}")
    return topk.astype(np.int64, copy=False)


def _as_csr(matrix: object, name: str) -> sp.csr_matrix:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix)
    array = np.asarray(matrix)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D sparse matrix, got shape {array.shape}")
    return sp.csr_matrix(array)


def _hits_and_counts(topk: np.ndarray, relevant: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``hits`` (n_users, K) bool and ``n_relevant`` (n_users,) int64, duplicates counted once."""
    topk = _check_topk(topk)
    rel = _as_csr(relevant, "relevant")
    n_users, n_items = rel.shape
    if topk.shape[0] != n_users:
        raise ValueError(
            f"topk has {topk.shape[0]} rows but relevant has {n_users}; one row per user in both"
        )
    if topk.size and topk.max() >= n_items:
        raise ValueError(f"topk holds item {topk.max()}, beyond relevant's {n_items} columns")
    # (user, item) as one int64 code, so membership for all users is one sorted search.
    stride = max(n_items, 1)
    rel_rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    rel_codes = rel_rows * stride + rel.indices
    # Rows are already in order, so sorting is needed only within rows, and only if unsorted; this
    # also beats np.unique, which hashes on numpy >= 2.3 and is several times slower here.
    if not rel.has_sorted_indices:
        rel_codes.sort()
    if rel_codes.size > 1:
        rel_codes = rel_codes[np.concatenate([[True], rel_codes[1:] != rel_codes[:-1]])]
    n_relevant = np.bincount(rel_codes // stride, minlength=n_users)
    codes = np.arange(n_users, dtype=np.int64)[:, None] * stride + topk
    if rel_codes.size == 0:
        return np.zeros(topk.shape, dtype=bool), n_relevant
    pos = np.minimum(np.searchsorted(rel_codes, codes), rel_codes.size - 1)
    # An empty slot's code aliases the previous user's last item, hence the explicit mask.
    hits = (rel_codes[pos] == codes) & (topk >= 0)
    return hits, n_relevant


def _check_hits(hits: np.ndarray) -> np.ndarray:
    hits = np.asarray(hits)
    if hits.dtype != np.bool_ or hits.ndim != 2:
        raise ValueError(f"hits must be a 2-D bool array, got {hits.dtype} of shape {hits.shape}")
    if hits.shape[1] == 0:
        raise ValueError("hits must have at least one column (K >= 1)")
    return hits


def _check_n_relevant(n_relevant: np.ndarray, hits: np.ndarray) -> np.ndarray:
    n_rel = np.asarray(n_relevant)
    if n_rel.dtype.kind not in "iu" or n_rel.shape != hits.shape[:1]:
        raise ValueError(
            f"n_relevant must be an int array of shape ({hits.shape[0]},), "
            f"got {n_rel.dtype} of shape {n_rel.shape}"
        )
    if (n_rel < 0).any():
        raise ValueError(f"n_relevant must be >= 0, got {n_rel.min()}")
    if (np.count_nonzero(hits, axis=1) > n_rel).any():
        raise ValueError("n_relevant must be >= the number of hits of each user")
    return n_rel.astype(np.int64, copy=False)
