"""What the implicit-feedback factor models (iALS, `movierec.models.ranking.ials`, and BPR,
`movierec.models.ranking.bpr`) share: learned user and item vectors and item biases, scores
b_i + x_u·y_i (ranking scores, not ratings), and a new user's interactions for fold-in.

Both read the training ratings as interactions through `interaction_matrix` (``min_rating``,
``weighting``: see `movierec.models.core.interactions`), with value v_ui > 0 for an interaction and
nothing stored elsewhere.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.models.core.interactions import interaction_matrix, user_interactions
from movierec.models.core.recommender import DotParts, Recommender

__all__ = ["ImplicitFactors"]


class ImplicitFactors(Recommender):
    """State and inference shared by the implicit-feedback factor models.

    Fitted attributes:
        user_factors_ (n_users, factors), item_factors_ (n_items, factors): x_u, y_i (float32).
        item_bias_ (n_items,): b_i (float32; zero for iALS).
        history_: one dict per epoch (``epoch``, ``seconds``, the model's training figures).
    """

    predicts_ratings = False
    ranks_on_device = True

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    item_bias_: np.ndarray
    history_: list[dict[str, float]]

    min_rating: float
    weighting: str

    def _interactions(self, train: Ratings) -> sp.csr_matrix:
        return interaction_matrix(self.seen_, self.min_rating, self.weighting)

    def _fold_in_values(self, item_index: np.ndarray, ratings: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """A new user's interactions as the training matrix would hold them: (item indices, values),
        ratings below ``min_rating`` dropped; ``"centered"`` uses the mean of all the given ratings, as
        `interaction_matrix` uses the mean of all a training user's ratings."""
        ratings = np.asarray(ratings, dtype=np.float64)
        item_index = np.asarray(item_index, dtype=np.int64)
        values = user_interactions(ratings, self.min_rating, self.weighting).astype(np.float64)
        keep = ratings >= self.min_rating
        return item_index[keep], values[keep]

    def _items64(self) -> tuple[np.ndarray, np.ndarray]:
        """Item factors and biases in float64, cached. Known users' scores are computed in float64
        because they sit near 0 (no rating offset to hide rounding): a float32 matrix product of a
        batch and of a single user would round differently in the 7th digit. A folded-in user's
        scores are the exception (`_scores_for`): they are never compared with a batch's."""
        cached = getattr(self, "_items64_cache", None)
        if cached is None or cached[0] is not self.item_factors_ or cached[1] is not self.item_bias_:
            cached = (self.item_factors_, self.item_bias_, self.item_factors_.astype(np.float64),
                      self.item_bias_.astype(np.float64))
            self._items64_cache = cached
        return cached[2], cached[3]

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        known = (user_index >= 0) & (item_index >= 0)
        u, i = np.maximum(user_index, 0), np.maximum(item_index, 0)
        items, bias = self._items64()
        dots = np.einsum("nk,nk->n", self.user_factors_[u].astype(np.float64), items[i]) + bias[i]
        return np.where(known, dots, 0.0)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        items, bias = self._items64()
        return self.user_factors_[user_index].astype(np.float64) @ items.T + bias[None, :]

    def _dot_parts(self) -> DotParts:
        return DotParts(self.user_factors_, self.item_factors_, self.item_bias_, True)

    def _scores_for(self, vector: np.ndarray) -> np.ndarray:
        """Scores of one folded-in vector. Float32 here: a single matrix-vector product is bound by
        reading the item factors (5 MB in float64 for 10k movies x 64), and a new user's scores are
        never compared with a batch's; the result is float64 like every other score."""
        _, bias = self._items64()
        return (self.item_factors_ @ vector.astype(np.float32)).astype(np.float64) + bias

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "item_bias": self.item_bias_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self.item_bias_ = arrays["item_bias"]
        self.history_ = []
