"""Ratings as implicit feedback: the interaction matrix every ranking model trains on.

Ranking models treat each rating as an interaction ("this user watched this movie"). Two shared
hyperparameters shape that matrix, under the same names in every ranking model:

- ``min_rating``: ratings below it are not interactions (they still count as seen, so they are never
  recommended back); 0 keeps every rating, which is what the BENCHMARKS.md protocol scores (any test
  rating is relevant).
- ``weighting``: the value of an interaction: ``"binary"`` (1), ``"rating"`` (the rating itself) or
  ``"centered"`` (1 + max(0, rating - the user's mean rating), so a favourite weighs more than a
  movie the user merely watched).

With timestamps, a user's ratings also split into sessions (`session_matrix`, `session_rows`): ratings
given in one sitting say more about each other than ratings months apart.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError

__all__ = ["WEIGHTINGS", "check_interaction_params", "interaction_matrix", "interaction_weights",
           "session_matrix", "session_rows", "user_interactions"]

WEIGHTINGS = ("binary", "rating", "centered")
_CHUNK = 1 << 20  # ratings per block where a whole sorted column would be a large temporary


def check_interaction_params(min_rating: float, weighting: str) -> None:
    """Raise `ConfigError` for a bad ``min_rating`` or ``weighting``."""
    if isinstance(min_rating, bool) or not isinstance(min_rating, int | float | np.number) or not (
        np.isfinite(min_rating) and min_rating >= 0
    ):
        raise ConfigError(f"min_rating must be a number >= 0, got {min_rating!r}")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def interaction_weights(ratings: np.ndarray, weighting: str, user_mean: float | np.ndarray | None = None
                        ) -> np.ndarray:
    """Interaction values (float32) for an array of ratings under ``weighting``.

    ``user_mean`` (a scalar or an array aligned with ``ratings``) is needed for ``"centered"``; by
    default the mean of ``ratings`` itself (one user's ratings, as in fold-in). Only ``"centered"``
    computes in float64 (a difference from a mean); the others never copy the ratings wider.
    """
    if weighting == "binary":
        return np.ones(len(ratings), dtype=np.float32)
    if weighting == "rating":
        return np.asarray(ratings).astype(np.float32)
    if weighting == "centered":
        ratings = np.asarray(ratings, dtype=np.float64)
        mean = ratings.mean() if user_mean is None and len(ratings) else user_mean
        return (1.0 + np.maximum(0.0, ratings - (0.0 if mean is None else mean))).astype(np.float32)
    raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def user_interactions(ratings: np.ndarray, min_rating: float = 0.0, weighting: str = "binary"
                      ) -> np.ndarray:
    """One new user's interaction values (float32), one per rating, as `interaction_matrix` builds a
    training row: 0 where the rating is below ``min_rating`` (not an interaction), and the
    ``"centered"`` mean taken over ALL the user's ratings, kept or not (fold-in)."""
    ratings = np.asarray(ratings, dtype=np.float64)
    mean = ratings.mean() if len(ratings) else 0.0
    values = interaction_weights(ratings, weighting, mean)
    return np.where(ratings >= min_rating, values, np.float32(0.0)).astype(np.float32)


def interaction_matrix(seen: sp.csr_matrix, min_rating: float = 0.0, weighting: str = "binary"
                       ) -> sp.csr_matrix:
    """Users x items float32 CSR of interactions from a users x items CSR of ratings.

    Ratings below ``min_rating`` are dropped (explicitly stored zeros never occur: every kept entry is
    > 0). Rows and columns keep the shape of ``seen``; users left without interactions get empty rows.

    A (user, movie) pair stored more than once (a caller's own matrix: `Ratings.csr` refuses
    them) counts each stored rating on its own, and the pair's values are added.

    Built CSR to CSR (the kept entries keep their places; rows are counted, not listed): at 25
    million ratings a COO detour held an int64 row per entry and scipy's conversion copies, about
    37 bytes an entry at its peak (tracemalloc) against 9 here for the binary and rating weightings
    with every rating kept (an iALS fit's default, its first allocation at ml-32m scale); a
    ``min_rating`` cut takes about 14, the centered weighting about 33 (a float64 mean per entry).
    """
    check_interaction_params(min_rating, weighting)
    seen = seen.tocsr()
    canonical = seen.has_canonical_format  # sorted, each pair once
    if not seen.has_sorted_indices:
        seen = seen.sorted_indices()  # a sorted copy; repeated pairs stay, each weighted on its own
    n_rows = seen.shape[0]
    counts = np.diff(seen.indptr)
    keep = seen.data >= min_rating
    every = bool(keep.all())
    user_mean = None
    if weighting == "centered":
        means = _row_sums(seen.data, seen.indptr, np.float64) / np.maximum(counts, 1)
        user_mean = np.repeat(means, counts)
        if not every:
            user_mean = user_mean[keep]
    values = interaction_weights(seen.data if every else seen.data[keep], weighting, user_mean)
    index = np.int32 if max(len(values), seen.shape[1]) < 2**31 else np.int64
    indices = seen.indices.astype(index) if every else seen.indices[keep].astype(index, copy=False)
    indptr = np.zeros(n_rows + 1, dtype=index)
    np.cumsum(counts if every else _row_sums(keep, seen.indptr, np.int64), out=indptr[1:])
    matrix = sp.csr_matrix((values, indices, indptr), shape=seen.shape)
    if not canonical:
        matrix.sum_duplicates()  # a repeated pair's weighted values added, as a COO build adds them
    return matrix


def _row_sums(values: np.ndarray, indptr: np.ndarray, dtype: type) -> np.ndarray:
    """Per-row sums of a CSR's stored ``values`` (0 for an empty row), accumulated in ``dtype``."""
    counts = np.diff(indptr)
    sums = np.zeros(len(counts), dtype=dtype)
    filled = counts > 0
    if filled.any():  # reduceat over the filled rows' starts: an empty row would take its neighbour's
        sums[filled] = np.add.reduceat(values, indptr[:-1][filled], dtype=dtype)
    return sums


def session_matrix(train: Ratings, gap: float, min_rating: float = 0.0, weighting: str = "binary"
                   ) -> sp.csr_matrix:
    """Sessions x items float64 CSR of interactions: a user's ratings in time order, cut wherever
    more than ``gap`` seconds separate consecutive ones; values as in `interaction_matrix` (ratings
    below ``min_rating`` dropped; the ``"centered"`` mean is the user's, over all their ratings).

    Raises:
        ConfigError: if ``train`` has no timestamps.
    """
    if train.timestamp is None:
        raise ConfigError("sessions need timestamps")
    users, items, n = train.user_index, train.item_index, len(train)
    index = np.int32 if max(n, train.n_items) < 2**31 else np.int64
    # Every array here is a rating long, so they are made one at a time, in the sorted order, and
    # dropped as soon as used; the values are computed last, on the kept entries only. For the
    # binary weighting this peaks near 28 bytes a rating (tracemalloc at 2M ratings; the sort's key,
    # its result, the gathered columns) where permuting ready-made float64 values and masks alongside
    # took 42; the centered weighting's float64 mean per rating brings it to about 40.
    order = _user_time_item_order(users, train.timestamp, items, train.n_users, train.n_items)
    starts = np.ones(n, dtype=bool)
    sorted_users = users[order]
    np.not_equal(sorted_users[1:], sorted_users[:-1], out=starts[1:])
    for lo in range(0, n - 1, _CHUNK):  # time gaps a block at a time: no sorted int64 copy
        times = train.timestamp[order[lo:lo + _CHUNK + 1]]
        starts[lo + 1:lo + len(times)] |= np.diff(times) > gap
    session = np.cumsum(starts, dtype=index)
    session -= 1
    del starts
    n_sessions = int(session[-1]) + 1 if n else 0
    ratings = train.rating[order]
    if weighting == "centered":  # the user's mean over all their ratings, kept or not
        totals = np.bincount(users, train.rating.astype(np.float64), train.n_users)
        means = (totals / np.maximum(np.bincount(users, minlength=train.n_users), 1))[sorted_users]
    del sorted_users
    items = items[order].astype(index, copy=False)
    del order
    # compared in float64, as the ratings' values are: a float32 comparison would round the threshold
    keep = np.greater_equal(ratings, min_rating, signature=(np.float64, np.float64, np.bool_))
    if not keep.all():
        session, items, ratings = session[keep], items[keep], ratings[keep]
        if weighting == "centered":
            means = means[keep]
    del keep
    values = interaction_weights(ratings, weighting, means if weighting == "centered" else None)
    del ratings
    values = values.astype(np.float64)
    # The rows come in session order, and a session's movies are distinct (one rating per user and
    # movie): the CSR arrays are these columns as they stand, with no COO detour (which held three
    # int64 / float64 copies of them at once, the peak of an iALS fit at 32M ratings).
    # sessions are numbered in order, so a session's row starts where its number first appears
    # (a bincount would widen every number to int64 first)
    indptr = np.empty(n_sessions + 1, dtype=index)
    for lo in range(0, n_sessions + 1, _CHUNK):
        indptr[lo:lo + _CHUNK] = np.searchsorted(
            session, np.arange(lo, min(lo + _CHUNK, n_sessions + 1), dtype=index))
    matrix = sp.csr_matrix((values, items, indptr), shape=(n_sessions, train.n_items))
    matrix.sort_indices()
    return matrix


def _user_time_item_order(users: np.ndarray, times: np.ndarray, items: np.ndarray, n_users: int,
                          n_items: int) -> np.ndarray:
    """``np.lexsort((items, times, users))``, faster: one argsort of a packed int64 key when user,
    time offset and item fit in 63 bits (ml-32m: 18 + 30 + 17 bits), else two stable argsorts (by
    item, then by a packed user-time key), else the lexsort. Same permutation in every case."""
    if not len(users):
        return np.empty(0, dtype=np.int64)
    offset = times.astype(np.int64)
    offset -= int(times.min())
    user_bits, item_bits = int(n_users).bit_length(), int(n_items).bit_length()
    time_bits = int(offset.max()).bit_length()
    if user_bits + time_bits + item_bits <= 63:
        key = users.astype(np.int64)  # built in place: one int64 array besides the sort's own
        key <<= time_bits
        key |= offset
        del offset
        key <<= item_bits
        key |= items
        return np.argsort(key, kind="stable")  # keys are distinct: pairs are
    if user_bits + time_bits <= 63:
        by_item = np.argsort(items, kind="stable")
        key = (users.astype(np.int64) << time_bits) | offset
        return by_item[np.argsort(key[by_item], kind="stable")]
    return np.lexsort((items, times, users))


def session_rows(train: Ratings, gap: float, min_rating: float = 0.0, weighting: str = "binary"
                 ) -> sp.csr_matrix:
    """`session_matrix` without the sessions of fewer than two interactions (float64 CSR): the
    sessions that say which movies go together. A one-movie session only repeats its user's row;
    as an extra row of a graph (GF-CF) or a pseudo-user (iALS) it would inflate that movie's degree
    and confidence without any co-occurrence."""
    sessions = session_matrix(train, gap, min_rating, weighting)
    return sessions[np.flatnonzero(np.diff(sessions.indptr) >= 2)]
