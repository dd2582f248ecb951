"""Models that learn one dense items x items matrix W and score a user by their interaction row,
score_u = x_u W: what EASE (`movierec.models.ranking.ease`) and GF-CF (`movierec.models.ranking.gfcf`)
share (`DenseItemItem`).

Large catalogs (``max_items``). W is dense, so its memory grows as n_items^2 and EASE's inverse as
n_items^3: 87k movies would need 60 GB per matrix. When training has more than ``max_items`` movies,
W is learned on the ``max_items`` movies with the most interactions only (the columns of X with the
most non-zero entries; ties go to the lower movie index), K for short, and every other movie is
scored by a popularity fallback placed below them:

    score_ui = x_u[K] W[:, i]                               for i in K,
    score_ui = min_{j in K} score_uj - 1 + n_i / (n_max + 1)  for i not in K,

with n_i the movie's interactions and n_max the largest n_i outside K. The fallback term lies in
[0, 1), so every movie outside K ranks below every movie in K, and among themselves by popularity.
Such a movie's contributions and similarities are 0 (no rated movie explains its score). Movies
outside K are the rarest ones: on ml-latest-small's 80% training part the 4,000 most-rated of 8,987
movies hold 91% of the ratings and 92% of the held-out ones. With at most ``max_items`` movies
nothing changes: W covers the whole catalog, exactly as without the cap.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.models.core.interactions import interaction_matrix, user_interactions
from movierec.models.core.recommender import Recommender

__all__ = ["DenseItemItem"]

# Pairs per step in `_predict`: bounds the gathered (pairs x rated items) values.
_PAIR_BLOCK = 4096
# Users per step in `_predict` with a capped catalog: bounds the (users x n_items) score rows.
_USER_BLOCK = 512


class DenseItemItem(Recommender):
    """Scoring shared by the models that learn one dense items x items matrix W (``weights_``) and score
    a user by their interaction row, score_u = x_u W: EASE and GF-CF.

    A subclass takes the hyperparameters ``min_rating``, ``weighting`` and ``max_items``, passes its
    training interaction matrix through `_select_items` in `_fit` (which keeps the ``max_items``
    most-interacted movies; see the module docstring) and sets ``weights_`` on the columns it returns.
    Everything else is here: scores, pair predictions, exact fold-in, contributions x_uj W_ji (they sum
    to the score of a movie in the kept set), the symmetrised W as item similarity, and persistence.
    Fallback for pairs unknown to training: 0.

    Fitted attributes: ``weights_`` (n_kept, n_kept) float64 W over the kept movies; ``kept_``
    (n_kept,) int64 their ascending movie indices, or None when every movie is kept (then W is
    (n_items, n_items)); ``fallback_`` (n_items,) float64 the popularity term n_i / (n_max + 1), or
    None.
    """

    predicts_ratings = False
    min_rating: float
    weighting: str
    max_items: int
    weights_: np.ndarray
    kept_: np.ndarray | None = None
    fallback_: np.ndarray | None = None

    def _select_items(self, interactions: sp.spmatrix) -> sp.csr_matrix:
        """``interactions`` (rows x n_items) restricted to the movies W is learned on; sets ``kept_``
        and ``fallback_`` (None, and ``interactions`` returned whole, when there are at most
        ``max_items`` movies)."""
        x = sp.csr_matrix(interactions)
        n_items = x.shape[1]
        if n_items <= self.max_items:
            self.kept_, self.fallback_ = None, None
            return x
        counts = np.bincount(x.indices[x.data != 0], minlength=n_items).astype(np.float64)
        order = np.argsort(-counts, kind="stable")  # most interactions first, ties by lower index
        kept = np.sort(order[: self.max_items]).astype(np.int64)
        self._set_kept(kept, counts / (counts[order[self.max_items :]].max() + 1.0))
        return x[:, kept]

    def _set_kept(self, kept: np.ndarray | None, fallback: np.ndarray | None) -> None:
        self.kept_, self.fallback_ = kept, fallback
        if kept is not None:
            self._position = np.full(self.seen_.shape[1], -1, dtype=np.int64)
            self._position[kept] = np.arange(len(kept))

    def _expand(self, kept_scores: np.ndarray) -> np.ndarray:
        """Scores over the kept movies (n, n_kept) -> over all movies (n, n_items), the others by
        the fallback below the user's lowest kept score (module docstring)."""
        kept_scores = np.atleast_2d(np.asarray(kept_scores, dtype=np.float64))
        scores = (kept_scores.min(axis=1, keepdims=True) - 1.0) + self.fallback_[None, :]
        scores[:, self.kept_] = kept_scores
        return scores

    def _interactions(self, user_index: np.ndarray) -> sp.csr_matrix:
        """Interaction rows (float64 CSR) of known users, built as in training."""
        rows = interaction_matrix(self.seen_[user_index], self.min_rating, self.weighting)
        return rows.astype(np.float64)

    def _row_values(self, ratings: np.ndarray) -> np.ndarray:
        """A new user's interaction values (float64), one per rating, 0 below ``min_rating``."""
        return user_interactions(ratings, self.min_rating, self.weighting).astype(np.float64)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        rows = self._interactions(np.asarray(user_index, dtype=np.int64))
        if self.kept_ is None:
            return np.asarray(rows @ self.weights_)
        return self._expand(np.asarray(rows[:, self.kept_] @ self.weights_))

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        scores = np.zeros(len(user_index))
        pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
        if self.kept_ is not None:
            # a fallback score needs the user's whole kept row (its minimum): read pairs off rows
            users, row = np.unique(user_index[pairs], return_inverse=True)
            for start in range(0, len(users), _USER_BLOCK):
                mine = (row >= start) & (row < start + _USER_BLOCK)
                block = self._score_users(users[start : start + _USER_BLOCK])
                scores[pairs[mine]] = block[row[mine] - start, item_index[pairs[mine]]]
            return scores
        for start in range(0, len(pairs), _PAIR_BLOCK):
            block = pairs[start : start + _PAIR_BLOCK]
            rows = self._interactions(user_index[block])
            # sum_j x_uj W_ji per pair: one gather of W over every (pair, rated item) entry.
            owner = np.repeat(np.arange(len(block)), np.diff(rows.indptr))
            values = rows.data * self.weights_[rows.indices, item_index[block][owner]]
            scores[block] = np.bincount(owner, weights=values, minlength=len(block))
        return scores

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        item_index = np.asarray(item_index, dtype=np.int64)
        values = self._row_values(ratings)
        if self.kept_ is None:
            return values @ self.weights_[item_index]
        position = self._position[item_index]
        inside = position >= 0
        return self._expand(values[inside] @ self.weights_[position[inside]])[0]

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): x_uj * W_ji, which sums over j to the fold-in score of i
        (for a target outside the kept movies, 0: its score is the fallback). Ratings below
        ``min_rating`` contribute 0."""
        item_index = np.asarray(item_index, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        values = self._row_values(ratings)
        if self.kept_ is None:
            return (self.weights_[item_index][:, target] * values[:, None]).T
        rated, wanted = self._position[item_index], self._position[target]
        block = self.weights_[np.maximum(rated, 0)][:, np.maximum(wanted, 0)]
        block *= (rated >= 0)[:, None] & (wanted >= 0)[None, :]
        return (block * values[:, None]).T

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """W symmetrised, (W_ij + W_ji) / 2, rows ``item_index``: how strongly each pair predicts
        the other (0 for a movie outside the kept ones)."""
        item_index = np.asarray(item_index, dtype=np.int64)
        if self.kept_ is None:
            return (self.weights_[item_index] + self.weights_[:, item_index].T) / 2
        position = self._position[item_index]
        inside = np.flatnonzero(position >= 0)
        similarity = np.zeros((len(item_index), self.seen_.shape[1]))
        rows = position[inside]
        symmetric = (self.weights_[rows] + self.weights_[:, rows].T) / 2
        similarity[inside[:, None], self.kept_[None, :]] = symmetric
        return similarity

    def _item_vectors(self) -> np.ndarray | None:
        return None  # no item embedding; similarity comes from W itself

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        if self.kept_ is None:
            return {"weights": self.weights_}
        return {"weights": self.weights_, "kept": self.kept_, "fallback": self.fallback_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        weights, n_items = arrays["weights"], self.seen_.shape[1]
        kept, fallback = arrays.get("kept"), arrays.get("fallback")  # absent: every movie kept
        n_kept = n_items if kept is None else len(kept)
        bad = weights.shape != (n_kept, n_kept) or (kept is not None and (
            fallback is None or fallback.shape != (n_items,)
            or (n_kept and (kept.min() < 0 or kept.max() >= n_items))))
        if bad:
            raise ValueError("weights do not match the catalog")  # load_model: "incomplete artifact"
        self.weights_ = weights
        self._set_kept(None if kept is None else kept.astype(np.int64), fallback)
