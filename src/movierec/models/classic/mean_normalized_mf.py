"""``mean-normalized-mf``: the machine-learning course's collaborative filtering, movie-mean-normalised
MF with L2, full-batch Adam through autograd (`MeanNormalizedMF`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from movierec.data.dataset import Ratings
from movierec.models.classic.shared import (
    adam_fold_in,
    check_common,
    generators,
    rmse,
)
from movierec.models.core.checks import check_number
from movierec.models.core.memory import AUTOGRAD_BYTES, TORCH_BYTES, trained_table_bytes
from movierec.models.core.recommender import Callback, DotParts, Recommender
from movierec.models.core.train import (
    known_pairs_tensors,
    pooled,
    resolve_device,
    summed,
    torch_threads,
    train_minibatch,
    training_mean,
)

__all__ = ["MeanNormalizedMF"]


class _MeanNormalizedNet(nn.Module):
    """r̂_ui = mean_i + x_i . w_u + b_u + b_i; ``mean_i`` (a buffer) is movie i's mean in train."""

    def __init__(self, n_users: int, n_items: int, factors: int, init_sd: float,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.user_factors = nn.Parameter(torch.randn(n_users, factors, generator=generator) * init_sd)
        self.item_factors = nn.Parameter(torch.randn(n_items, factors, generator=generator) * init_sd)
        self.user_bias = nn.Parameter(torch.zeros(n_users))
        self.item_bias = nn.Parameter(torch.zeros(n_items))
        self.register_buffer("item_mean", torch.zeros(n_items))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # index_select: its backward is an index_add, several times cheaper on a CPU than the
        # sorting backward of `table[index]` or `F.embedding`.
        pick = torch.index_select
        return (torch.linalg.vecdot(pick(self.user_factors, 0, users), pick(self.item_factors, 0, items))
                + pick(self.user_bias, 0, users) + pick(self.item_bias, 0, items)
                + pick(self.item_mean, 0, items))


class MeanNormalizedMF(Recommender):
    """Mean-normalised collaborative filtering as Andrew Ng's machine-learning course teaches it.

    Each movie's mean rating in train is subtracted; user features w_u, movie features x_i and
    biases b_u, b_i fit the rest by minimising the course's cost over all training ratings at once
    (full batch, ``epochs`` Adam iterations through autograd)::

        J = 1/2 sum (x_i . w_u + b_u + b_i - (r_ui - mean_i))^2 + reg/2 (sum |w_u|^2 + sum |x_i|^2)

    and predict r̂_ui = mean_i + x_i . w_u + b_u + b_i. The biases are not regularised (the course
    leaves its bias unregularised too); the course has one bias, both are kept here.

    Args:
        factors: features per user and movie.
        reg: the course's lambda.
        epochs: full-batch Adam iterations.
        learning_rate: Adam's step size (the course: 0.1).
        init_sd: standard deviation of the normal initial features.
        random_state, device, threads: see `EmbeddingMLP`.

    Unknown ids: an unknown user has w = 0, b_u = 0 (the course's new user), so gets
    mean_i + b_i; a pair with an unknown movie gets the global training mean.
    ``train_loss`` in ``history_`` is J divided by the number of training ratings, and ``train_rmse``
    that of the iteration's starting point (the full batch's own forward pass, not a second one).
    """

    name = "mean-normalized-mf"
    _fold_in_lr: ClassVar[float] = 0.1

    def __init__(self, factors: int = 10, reg: float = 15.0, epochs: int = 200,
                 learning_rate: float = 0.1, init_sd: float = 0.1, random_state: int = 0,
                 device: str = "auto", threads: int | None = 1) -> None:
        self.factors = factors
        self.reg = reg
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.init_sd = init_sd
        self.random_state = random_state
        self.device = device
        self.threads = threads

    def _check_params(self) -> None:
        check_common(self)
        check_number("init_sd", self.init_sd)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        generator, _ = generators(self.random_state, device)
        users = torch.as_tensor(train.user_index.astype(np.int64))
        items = torch.as_tensor(train.item_index.astype(np.int64))
        ratings = torch.as_tensor(np.array(train.rating))
        with torch_threads(self.threads):
            net = _MeanNormalizedNet(train.n_users, train.n_items, self.factors, self.init_sd, generator)
            # over every replica's shard when several processes train (`summed`)
            n = int(summed(np.array([len(train)]))[0])
            net.item_mean.copy_(torch.as_tensor(
                summed(np.bincount(train.item_index, train.rating, train.n_items))
                / np.maximum(summed(train.item_counts), 1), dtype=torch.float32))
            net.to(device)
            reg = float(self.reg)
            squared_error = [0.0, 0]  # the step's mean squared error, and its rows

            def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
                error = net(batch[0], batch[1]) - batch[2]
                cost = 0.5 * error.square().sum()
                if net.training:
                    squared_error[:] = float(error.detach().square().mean()), len(error)
                    # the penalty is the whole model's, once: weighted by the batch's share of the
                    # ratings (1 here; a replica's share when several processes train one model)
                    cost = cost + reg / 2 * (net.user_factors.square().sum()
                                             + net.item_factors.square().sum()) * (len(error) / n)
                return cost / len(error)  # J / n: the same minimiser, and a loss of readable size

            def metrics(tensors: Sequence[torch.Tensor]) -> dict[str, float]:
                return {"valid_rmse": rmse(net(tensors[0], tensors[1]), tensors[2])}

            self.history_ = []

            def on_epoch(event: str, record: dict[str, Any]) -> None:
                # Full batch: the step's own forward pass already gave the training error.
                record.update(pooled({"train_rmse": math.sqrt(squared_error[0])}, squared_error[1]))
                self.history_.append(record)
                if callback is not None:
                    callback(event, dict(record))

            train_tensors = (users.to(device), items.to(device), ratings.to(device))
            valid_tensors = known_pairs_tensors(self, valid, device)
            if valid_tensors is not None and not len(valid_tensors[0]):
                valid_tensors = None
            train_minibatch(net, batch_loss, train_tensors, epochs=self.epochs, batch_size=n,
                            learning_rate=self.learning_rate, generator=generator,
                            valid=valid_tensors, valid_metrics=metrics if valid_tensors else None,
                            callback=on_epoch)
        net = net.cpu()
        self.user_factors_, self.item_factors_, self.user_bias_, self.item_bias_, self.item_mean_ = (
            t.detach().numpy().copy() for t in (net.user_factors, net.item_factors, net.user_bias,
                                                  net.item_bias, net.item_mean))
        self.global_mean_ = training_mean(train.rating)

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Full-batch training: every rating's gathered factors and their gradients each step
        (4 x factors floats a rating), the tables with optimizer state, and torch's pools."""
        k = int(self.factors)
        return int(TORCH_BYTES + AUTOGRAD_BYTES + (24 + 16 * k) * n_ratings
                   + trained_table_bytes(n_users + n_items, k))

    # -- scoring (numpy: no network) ---------------------------------------------------------------
    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        known_u, known_i = user_index >= 0, item_index >= 0
        u, i = np.maximum(user_index, 0), np.maximum(item_index, 0)
        dot = np.einsum("nk,nk->n", self.user_factors_[u], self.item_factors_[i])
        out = (np.where(known_u, dot + self.user_bias_[u], 0.0) + self.item_bias_[i]
               + self.item_mean_[i])
        return np.where(known_i, out, self.global_mean_)

    def _scores(self, vectors: np.ndarray, biases: np.ndarray) -> np.ndarray:
        return (vectors.astype(np.float32) @ self.item_factors_.T + biases[:, None]
                + (self.item_bias_ + self.item_mean_)[None, :]).astype(np.float64)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return self._scores(self.user_factors_[user_index], self.user_bias_[user_index])

    def _dot_parts(self) -> DotParts:
        # [w_u, b_u] . [x_i, 1] + (b_i + mean_i)
        def build() -> DotParts:
            users = np.hstack([self.user_factors_, self.user_bias_[:, None]]).astype(np.float32)
            items = np.hstack([self.item_factors_, np.ones((len(self.item_factors_), 1), np.float32)])
            return DotParts(users, items, (self.item_bias_ + self.item_mean_).astype(np.float32), True)

        return self._cached_parts((self.user_factors_, self.user_bias_, self.item_factors_,
                                   self.item_bias_, self.item_mean_), build)

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        k = self.factors
        x = np.zeros(k + 1)  # [w_u, b_u] of the course's new user
        if len(item_index):
            features = self.item_factors_[item_index].astype(np.float64)
            residual = ratings - self.item_mean_[item_index] - self.item_bias_[item_index]
            reg = float(self.reg)

            def gradient(x: np.ndarray) -> np.ndarray:
                # the course's cost for one user: 1/2 sum error^2 + reg/2 |w_u|^2
                error = features @ x[:k] + x[k] - residual
                return np.append(error @ features + reg * x[:k], error.sum())

            x = adam_fold_in(gradient, x, self._fold_in_lr)
        return self._scores(x[None, :k], x[k:])[0]

    # -- persistence --------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "item_factors": self.item_factors_,
                "user_bias": self.user_bias_, "item_bias": self.item_bias_,
                "item_mean": self.item_mean_, "global_mean": np.array([self.global_mean_])}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        for name in ("user_factors", "item_factors", "user_bias", "item_bias", "item_mean"):
            setattr(self, name + "_", np.asarray(arrays[name], dtype=np.float32))
        self.global_mean_ = float(arrays["global_mean"][0])


# -- 5. embedding-regressor -------------------------------------------------------------------------
