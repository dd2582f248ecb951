"""Most popular: the ranking every personalised model must beat."""

from __future__ import annotations

import numpy as np

from movierec.data.dataset import Ratings
from movierec.models.core.interactions import check_interaction_params, interaction_matrix
from movierec.models.core.memory import csr_bytes
from movierec.models.core.recommender import Callback, Recommender

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Most popular: every movie scored by its total interaction weight in training.

    With the defaults the score of movie i is the number of users who rated it; ``min_rating`` and
    ``weighting`` (see `movierec.models.core.interactions`) count only ratings >= ``min_rating`` and weigh
    each by its confidence. The ranking is the same for every user (seen movies are still excluded),
    which makes it the floor every personalised ranking model must clear.

    Args:
        min_rating: ratings below it do not count.
        weighting: ``"binary"``, ``"rating"`` or ``"centered"`` interaction values.

    Fitted attributes: ``counts_`` (n_items,) float64, the summed interaction weight per movie index.

    Scores are popularity counts, not ratings. Fallback: a movie unknown to training scores 0; a new
    user (fold-in) or an unknown one gets the same counts as everybody.
    """

    name = "popularity"
    predicts_ratings = False

    def __init__(self, min_rating: float = 0.0, weighting: str = "binary") -> None:
        self.min_rating = min_rating
        self.weighting = weighting

    def _check_params(self) -> None:
        check_interaction_params(self.min_rating, self.weighting)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        interactions = interaction_matrix(self.seen_, self.min_rating, self.weighting)
        # float64 sums: float32 would lose whole counts past 2^24 interactions on large data
        self.counts_ = np.asarray(interactions.sum(axis=0, dtype=np.float64)).ravel()

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """An interaction copy of the ratings and the counts."""
        return 3 * csr_bytes(n_users, n_ratings) + 8 * n_items

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        item_index = np.asarray(item_index, dtype=np.int64)
        return np.where(item_index >= 0, self.counts_[np.maximum(item_index, 0)], 0.0)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(user_index), len(self.counts_))).copy()

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self.counts_.copy()

    def _cold_start(self) -> np.ndarray:
        return self.counts_.copy()

    def _state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts_ = arrays["counts"]
