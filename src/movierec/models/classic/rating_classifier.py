"""``rating-classifier``: the embedding tower with a softmax over the rating levels, cross-entropy
training, the expected rating as the prediction (`RatingClassifier`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.classic.shared import (
    rmse,
    softmax,
)
from movierec.models.classic.tower import EmbeddingTower, TowerRecommender
from movierec.models.core.train import gathered, summed

__all__ = ["RatingClassifier"]


class RatingClassifier(TowerRecommender):
    """Ratings as classes: [user emb | movie emb] -> ReLU layers -> softmax over the rating levels.

    The levels are the distinct ratings in train (1..5, or 0.5..5 by halves). Trained with sparse
    categorical cross-entropy; `predict` returns the expected rating under the softmax, and
    `predict_argmax` the most probable level. With validation data ``history_`` also holds
    ``valid_argmax_rmse`` and ``valid_accuracy`` (share of rows whose arg-max level is the rating;
    a validation rating that is not a level counts as its nearest level).

    Args: as `EmbeddingMLP`. The output biases start at the log frequencies of the levels in train.
    Unknown ids: the average user / movie embedding through the network.
    """

    name = "rating-classifier"

    def __init__(self, factors: int = 32, hidden: str | Sequence[int] = "64,32", dropout: float = 0.2,
                 epochs: int = 8, batch_size: int = 1024, learning_rate: float = 3e-3,
                 reg: float = 1e-3, weight_decay: float = 1e-3, random_state: int = 0,
                 device: str = "auto", threads: int | None = 1) -> None:
        self.factors = factors
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg = reg
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.device = device
        self.threads = threads

    def _outputs(self, train: Ratings) -> int:
        # the levels of every replica's shard when several processes train (`gathered`)
        self.levels_ = torch.as_tensor(np.unique(gathered(np.unique(train.rating))).astype(np.float32))
        return len(self.levels_)

    def _targets(self, ratings: np.ndarray) -> torch.Tensor:
        levels = self.levels_.numpy()
        ratings = np.asarray(ratings, dtype=np.float32)
        above = np.clip(np.searchsorted(levels, ratings), 0, len(levels) - 1)
        below = np.clip(above - 1, 0, len(levels) - 1)
        nearest = np.where(np.abs(levels[below] - ratings) <= np.abs(levels[above] - ratings), below, above)
        return torch.as_tensor(nearest.astype(np.int64))

    def _data_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, target)

    def _to_rating(self, out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out, dim=-1) @ self.levels_.to(out.device)

    def _ratings_from(self, out: np.ndarray) -> np.ndarray:
        return softmax(out.astype(np.float64)) @ self.levels_.numpy().astype(np.float64)

    def _output_gradient(self, out: np.ndarray, target: torch.Tensor) -> np.ndarray:
        probs = softmax(out)
        probs[np.arange(len(out)), target.numpy()] -= 1.0
        return probs / len(out)

    def _init_output(self, module: EmbeddingTower, train: Ratings) -> None:
        # over every replica's shard (`summed`): a level one shard lacks would start at log(0)
        counts = summed(np.bincount(self._targets(train.rating).numpy(), minlength=len(self.levels_)))
        with torch.no_grad():
            module.layers[-1].bias.copy_(torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32))

    def _extra_metrics(self, out: torch.Tensor, target: torch.Tensor, prefix: str) -> dict[str, float]:
        levels = self.levels_.to(out.device)
        truth = levels[target]
        metrics = {f"{prefix}_rmse": rmse(self._to_rating(out), truth)}
        if prefix == "valid":
            best = out.argmax(dim=-1)
            metrics["valid_argmax_rmse"] = rmse(levels[best], truth)
            metrics["valid_accuracy"] = float((best == target).double().mean())
        return metrics

    def predict_argmax(self, users: Sequence[Any] | np.ndarray, items: Sequence[Any] | np.ndarray
                       ) -> np.ndarray:
        """The most probable rating level (float64) for pairs of raw ids; unknown ids as `predict`.

        Raises:
            NotFittedError: before `fit`. ConfigError: if ``users`` and ``items`` differ in length.
        """
        self._require_fitted()
        users, items = np.asarray(users), np.asarray(items)
        if users.shape != items.shape:
            raise ConfigError(f"users and items must have the same length, got "
                              f"{users.shape} and {items.shape}")
        out = self._outputs_for(self.users_.indices(users, missing="mask"),
                                self.items_.indices(items, missing="mask"))
        return self.levels_.numpy().astype(np.float64)[out.argmax(axis=-1)]

    def _state(self) -> dict[str, np.ndarray]:
        return {**super()._state(), "levels": self.levels_.numpy()}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.levels_ = torch.as_tensor(np.array(arrays["levels"], dtype=np.float32))
        super()._set_state({k: v for k, v in arrays.items() if k != "levels"})


# -- 4. mean-normalized-mf --------------------------------------------------------------------------
