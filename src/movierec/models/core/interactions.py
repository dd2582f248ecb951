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
    default the mean of ``ratings`` itself (one user's ratings, as in fold-in).
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    if weighting == "binary":
        return np.ones(len(ratings), dtype=np.float32)
    if weighting == "rating":
        return ratings.astype(np.float32)
    if weighting == "centered":
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
    """
    check_interaction_params(min_rating, weighting)
    seen = seen.tocsr()
    rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
    keep = seen.data >= min_rating
    user_mean = None
    if weighting == "centered":
        counts = np.maximum(np.diff(seen.indptr), 1)
        sums = np.bincount(rows, weights=seen.data, minlength=seen.shape[0])
        user_mean = (sums / counts)[rows][keep]
    values = interaction_weights(seen.data[keep], weighting, user_mean if weighting == "centered"
                                 else None)
    matrix = sp.csr_matrix((values, (rows[keep], seen.indices[keep])), shape=seen.shape,
                           dtype=np.float32)
    matrix.sort_indices()
    return matrix


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
    users, items = train.user_index, train.item_index
    ratings = train.rating.astype(np.float64)
    means = (np.bincount(users, ratings, train.n_users)
             / np.maximum(np.bincount(users, minlength=train.n_users), 1))
    values = interaction_weights(ratings, weighting, means[users]).astype(np.float64)
    keep = ratings >= min_rating
    del ratings, means  # every array here is a rating long: hold as few at once as can be
    order = _user_time_item_order(users, train.timestamp, items, train.n_users, train.n_items)
    users, items, times = users[order], items[order], train.timestamp[order]
    values, keep = values[order], keep[order]
    del order
    starts = np.ones(len(users), dtype=bool)
    starts[1:] = (users[1:] != users[:-1]) | (np.diff(times) > gap)
    del users, times
    session = np.cumsum(starts) - 1
    del starts
    n_sessions = int(session[-1]) + 1 if len(session) else 0
    # The rows come in session order, and a session's movies are distinct (one rating per user and
    # movie): the CSR arrays are these columns as they stand, with no COO detour (which held three
    # int64 / float64 copies of them at once, the peak of an iALS fit at 32M ratings).
    session, items, values = session[keep], items[keep], values[keep]
    index = np.int32 if max(len(items), train.n_items) < 2**31 else np.int64
    indptr = np.zeros(n_sessions + 1, dtype=index)
    np.cumsum(np.bincount(session, minlength=n_sessions), out=indptr[1:])
    matrix = sp.csr_matrix((values, items.astype(index, copy=False), indptr),
                           shape=(n_sessions, train.n_items))
    matrix.sort_indices()
    return matrix


def _user_time_item_order(users: np.ndarray, times: np.ndarray, items: np.ndarray, n_users: int,
                          n_items: int) -> np.ndarray:
    """``np.lexsort((items, times, users))``, faster: one argsort of a packed int64 key when user,
    time offset and item fit in 63 bits (ml-32m: 18 + 30 + 17 bits), else two stable argsorts (by
    item, then by a packed user-time key), else the lexsort. Same permutation in every case."""
    if not len(users):
        return np.empty(0, dtype=np.int64)
    offset = times.astype(np.int64) - int(times.min())
    user_bits, item_bits = int(n_users).bit_length(), int(n_items).bit_length()
    time_bits = int(offset.max()).bit_length()
    if user_bits + time_bits + item_bits <= 63:
        key = (((users.astype(np.int64) << time_bits) | offset) << item_bits) | items.astype(np.int64)
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
