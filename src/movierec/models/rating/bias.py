"""The bias baseline: the global mean plus regularised user and movie biases.

Notation (Koren 2008, as Surprise documents it): r̂_ui = mu + b_u + b_i, learned by minimising
sum (r_ui - mu - b_u - b_i)^2 + reg_user * sum b_u^2 + reg_item * sum b_i^2 with alternating
closed-form updates (each is an exact ridge solve given the other):

    b_i = sum_u (r_ui - mu - b_u) / (reg_item + n_i)
    b_u = sum_i (r_ui - mu - b_i) / (reg_user + n_u)

Every update is one `numpy.bincount` over all ratings, so a sweep is vectorised over users and
movies. The solve is exact and tiny, so it runs in numpy rather than through an autograd engine.

Fallback for pairs unknown to training: an unknown user has b_u = 0, an unknown movie b_i = 0, so a
wholly unknown pair is predicted as mu.
"""

from __future__ import annotations

import numpy as np

from movierec.data.dataset import Ratings
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.recommender import Callback, Recommender

__all__ = ["BiasRecommender"]


class BiasRecommender(Recommender):
    """Global mean + regularised user and movie biases (Surprise's BaselineOnly, by ALS).

    Args:
        reg_user: L2 penalty on user biases (shrinks users with few ratings towards 0).
        reg_item: L2 penalty on movie biases.
        epochs: alternating sweeps (each updates all movie biases, then all user biases).

    Ranking: items are ranked by mu + b_u + b_i, so every user gets the best-liked movies
    (after shrinkage); a useful, honest baseline for top-N.
    """

    name = "bias"

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, epochs: int = 10) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.epochs = epochs

    def _check_params(self) -> None:
        for name in ("reg_user", "reg_item"):
            check_number(name, getattr(self, name))
        check_int("epochs", self.epochs)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        users, items = train.user_index, train.item_index
        rating = train.rating.astype(np.float64)
        n_users, n_items = train.n_users, train.n_items
        user_count, item_count = train.user_counts, train.item_counts
        mu = float(rating.mean())
        user_bias = np.zeros(n_users)
        item_bias = np.zeros(n_items)
        residual = rating - mu
        for epoch in range(self.epochs):
            item_bias = np.bincount(items, residual - user_bias[users], n_items) / (
                self.reg_item + item_count
            )
            user_bias = np.bincount(users, residual - item_bias[items], n_users) / (
                self.reg_user + user_count
            )
            if callback is not None:
                error = residual - user_bias[users] - item_bias[items]
                callback("epoch", {"epoch": epoch + 1, "epochs": self.epochs,
                                   "train_rmse": float(np.sqrt(np.mean(error**2)))})
        self.global_mean_ = mu
        self.user_bias_ = user_bias
        self.item_bias_ = item_bias

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """A few float64 arrays over the ratings (residuals, their users and movies), and the biases."""
        return 32 * n_ratings + 16 * (n_users + n_items)

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_part = np.where(user_index >= 0, self.user_bias_[np.maximum(user_index, 0)], 0.0)
        item_part = np.where(item_index >= 0, self.item_bias_[np.maximum(item_index, 0)], 0.0)
        return self.global_mean_ + user_part + item_part

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return (self.global_mean_ + self.user_bias_[user_index])[:, None] + self.item_bias_[None, :]

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        # The same ridge solve as training, for one new user with the movie biases frozen.
        user_bias = float(
            np.sum(ratings - self.global_mean_ - self.item_bias_[item_index])
            / (self.reg_user + len(ratings))
        )
        return self.global_mean_ + user_bias + self.item_bias_

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": np.array([self.global_mean_]),
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_mean_ = float(arrays["global_mean"][0])
        self.user_bias_ = arrays["user_bias"]
        self.item_bias_ = arrays["item_bias"]
