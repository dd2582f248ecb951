"""Models that learn one dense items x items matrix W and score a user by their interaction row,
score_u = x_u W: what EASE (`movierec.models.ranking.ease`) and GF-CF (`movierec.models.ranking.gfcf`)
share (`DenseItemItem`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.errors import ConfigError
from movierec.models.core.interactions import interaction_matrix, user_interactions
from movierec.models.core.recommender import Recommender

__all__ = ["DenseItemItem"]

# Pairs per step in `_predict`: bounds the gathered (pairs x rated items) values.
_PAIR_BLOCK = 4096


class DenseItemItem(Recommender):
    """Scoring shared by the models that learn one dense items x items matrix W (``weights_``) and score
    a user by their interaction row, score_u = x_u W: EASE and GF-CF.

    A subclass takes the hyperparameters ``min_rating``, ``weighting`` and ``max_items``, calls
    `_check_size` at the start of `_fit` and sets ``weights_`` there. Everything else is here:
    scores, pair predictions, exact fold-in, contributions x_uj W_ji (they sum to the score), the
    symmetrised W as item similarity, and persistence. Fallback for pairs unknown to training: 0.
    """

    predicts_ratings = False
    min_rating: float
    weighting: str
    max_items: int
    weights_: np.ndarray

    def _check_size(self) -> None:
        """Raise `ConfigError` when the training catalog is larger than ``max_items``."""
        n_items = self.seen_.shape[1]
        if n_items > self.max_items:
            gigabytes = 8 * n_items**2 / 1e9
            raise ConfigError(
                f"max_items is {self.max_items}, but training has {n_items:,} movies (dense "
                f"{n_items:,} x {n_items:,} matrices of {gigabytes:.1f} GB each); raise max_items if "
                f"memory allows"
            )

    def _interactions(self, user_index: np.ndarray) -> sp.csr_matrix:
        """Interaction rows (float64 CSR) of known users, built as in training."""
        rows = interaction_matrix(self.seen_[user_index], self.min_rating, self.weighting)
        return rows.astype(np.float64)

    def _row_values(self, ratings: np.ndarray) -> np.ndarray:
        """A new user's interaction values (float64), one per rating, 0 below ``min_rating``."""
        return user_interactions(ratings, self.min_rating, self.weighting).astype(np.float64)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return np.asarray(self._interactions(np.asarray(user_index, dtype=np.int64)) @ self.weights_)

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        scores = np.zeros(len(user_index))
        pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
        for start in range(0, len(pairs), _PAIR_BLOCK):
            block = pairs[start : start + _PAIR_BLOCK]
            rows = self._interactions(user_index[block])
            # sum_j x_uj W_ji per pair: one gather of W over every (pair, rated item) entry.
            owner = np.repeat(np.arange(len(block)), np.diff(rows.indptr))
            values = rows.data * self.weights_[rows.indices, item_index[block][owner]]
            scores[block] = np.bincount(owner, weights=values, minlength=len(block))
        return scores

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self._row_values(ratings) @ self.weights_[np.asarray(item_index, dtype=np.int64)]

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): x_uj * W_ji, which sums over j to the fold-in score of i.
        Ratings below ``min_rating`` contribute 0."""
        item_index = np.asarray(item_index, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        return (self.weights_[item_index][:, target] * self._row_values(ratings)[:, None]).T

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """W symmetrised, (W_ij + W_ji) / 2, rows ``item_index``: how strongly each pair predicts
        the other."""
        item_index = np.asarray(item_index, dtype=np.int64)
        return (self.weights_[item_index] + self.weights_[:, item_index].T) / 2

    def _item_vectors(self) -> np.ndarray | None:
        return None  # no item embedding; similarity comes from W itself

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        weights = arrays["weights"]
        if weights.shape != (self.seen_.shape[1],) * 2:
            raise ValueError("weights do not match the catalog")  # load_model: "incomplete artifact"
        self.weights_ = weights
