"""Biased matrix factorisation for rating prediction: what its three trainers share, and the SGD one.

The trainers: minibatch gradient descent (`BiasedMFSGD`, here), alternating least squares
(`movierec.models.rating.als`) and SVD++ (`movierec.models.rating.svdpp`). All three keep their
learned arrays in `BiasedFactors`, which predicts, scores and folds new users in for them.

Notation (Koren 2008, as Surprise documents it), indices inside, one row per training rating r_ui:

    biased MF:  r̂_ui = mu + b_u + b_i + p_u · q_i
    SVD++:      r̂_ui = mu + b_u + b_i + q_i · (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j)

with mu the global mean of the training ratings, p_u, q_i, y_j vectors of ``factors`` numbers and N(u)
the movies u rated in training (never a test movie: the set comes from the training CSR alone).

Regularisation. Every model penalises a factor once per training rating that touches it (Surprise's
per-rating L2, LensKit's weighted-lambda ALS of Zhou et al. 2008), so a user with n_u ratings pays
``reg * n_u * |p_u|^2``. For one user with the movie side fixed, the exact minimiser is the ridge solve

    [p_u; b_u] = (X^T X + diag(reg * n_u, ..., reg * n_u, lambda_b))^-1 X^T (r_u - mu - b_I)

with X the rows [q_i, 1] of the user's movies and lambda_b the bias penalty (ALS: ``bias_reg``; the
gradient-trained models: ``reg * n_u``, as for the factors). ALS alternates this solve over all
users and all movies, and every model folds a new user in with it (see below).

Fallback for pairs unknown to training: an unknown user has b_u = 0 and p_u = 0 (and no implicit
term), an unknown movie b_i = 0 and q_i = 0, so an unknown user gets mu + b_i, an unknown movie
mu + b_u, a pair of unknowns mu.

Fold-in (a new user described only by ratings): the user-side ridge solve above, with everything on
the movie side frozen; for SVD++ the implicit term of the new user's rated movies is subtracted from
the targets first. With no known movie the new user scores mu + b_i (the cold-start list).

Training runs in torch on ``device`` (``"auto"``: CUDA when present, else CPU); the learned arrays are
kept as numpy (float32) for prediction, scoring and artifacts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.memory import AUTOGRAD_BYTES, TORCH_BYTES, trained_table_bytes
from movierec.models.core.recommender import Callback, DotParts, Recommender
from movierec.models.core.train import (
    OPTIMIZERS,
    check_schedule,
    record_epoch,
    resolve_device,
    summed,
    train_minibatch,
    training_mean,
)

__all__ = ["BiasedFactors", "BiasedMFSGD", "FactorModule", "GradientMF", "rmse", "valid_tensors"]

# Rows per prediction step, so scoring many pairs never builds large temporaries.
_PREDICT_ROWS = 1 << 20


class BiasedFactors(Recommender):
    """Inference shared by the biased MF models: state, predictions, scores, fold-in.

    Fitted attributes:
        global_mean_: mu. user_bias_ (n_users,), item_bias_ (n_items,): b_u, b_i.
        user_factors_ (n_users, factors), item_factors_ (n_items, factors): p_u, q_i (float32).
        history_: one dict per epoch (``epoch``, ``train_rmse``, ``valid_rmse`` with validation data,
            ``seconds``, and the trainer's figures for the gradient-trained models).
    """

    global_mean_: float
    user_bias_: np.ndarray
    item_bias_: np.ndarray
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    history_: list[dict[str, float]]

    # penalties of the fold-in solve: (per rating on the factors, on the bias)
    def _fold_in_penalties(self, n_ratings: int) -> tuple[float, float]:
        raise NotImplementedError

    def _user_vectors(self, user_index: np.ndarray) -> np.ndarray:
        """What multiplies q_i for known users (p_u; SVD++ adds the implicit term)."""
        return self.user_factors_[user_index]

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        out = np.empty(len(user_index), dtype=np.float64)
        for start in range(0, len(user_index), _PREDICT_ROWS):
            users = user_index[start : start + _PREDICT_ROWS]
            items = item_index[start : start + _PREDICT_ROWS]
            known_user, known_item = users >= 0, items >= 0
            u, i = np.maximum(users, 0), np.maximum(items, 0)
            dot = np.einsum("nk,nk->n", self._user_vectors(u), self.item_factors_[i])
            out[start : start + len(users)] = (
                self.global_mean_
                + np.where(known_user, self.user_bias_[u], 0.0)
                + np.where(known_item, self.item_bias_[i], 0.0)
                + np.where(known_user & known_item, dot, 0.0)
            )
        return out

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        scores = self._user_vectors(user_index) @ self.item_factors_.T
        scores += (self.global_mean_ + self.user_bias_[user_index])[:, None].astype(np.float32)
        scores += self.item_bias_[None, :].astype(np.float32)
        return scores

    def _dot_parts(self) -> DotParts:
        # [p_u (+ SVD++'s implicit term), mu + b_u] . [q_i, 1] + b_i
        key = (self.user_factors_, self.item_factors_, self.user_bias_, self.item_bias_,
               self.global_mean_, getattr(self, "user_implicit_", None))

        def build() -> DotParts:
            n_users = len(self.user_factors_)
            users = np.hstack([self._user_vectors(np.arange(n_users)),
                               (self.global_mean_ + self.user_bias_)[:, None]]).astype(np.float32)
            items = np.hstack([self.item_factors_, np.ones((len(self.item_factors_), 1))])
            return DotParts(users, items.astype(np.float32), self.item_bias_, True)

        return self._cached_parts(key, build)

    def _fold_in_offset(self, item_index: np.ndarray) -> np.ndarray:
        """A (factors,) vector added to the solved p_u (SVD++: the implicit term); zero here."""
        return np.zeros(self.item_factors_.shape[1], dtype=np.float64)

    def _fold_in_vector(self, item_index: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, float]:
        """(p_u + offset, b_u) for a new user: the closed-form user-side ridge solve (float64)."""
        offset = self._fold_in_offset(item_index)
        if len(item_index) == 0:
            return offset, 0.0
        q = self.item_factors_[item_index].astype(np.float64)
        target = (np.asarray(ratings, np.float64) - self.global_mean_
                  - self.item_bias_[item_index] - q @ offset)
        x = np.hstack([q, np.ones((len(q), 1))])
        factor_penalty, bias_penalty = self._fold_in_penalties(len(item_index))
        gram = x.T @ x
        gram[np.diag_indices_from(gram)] += np.append(np.full(q.shape[1], factor_penalty),
                                                      bias_penalty)
        solution = solve_spd(gram, x.T @ target)
        return solution[:-1] + offset, float(solution[-1])

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        vector, bias = self._fold_in_vector(item_index, ratings)
        # float32 product: a float64 copy of the movie factors would cost more than the product
        return self.global_mean_ + bias + self.item_bias_ + self.item_factors_ @ vector.astype(np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {
            "global_mean": np.array([self.global_mean_]),
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
            "user_factors": self.user_factors_,
            "item_factors": self.item_factors_,
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_mean_ = float(arrays["global_mean"][0])
        self.user_bias_ = arrays["user_bias"]
        self.item_bias_ = arrays["item_bias"]
        self.user_factors_ = arrays["user_factors"]
        self.item_factors_ = arrays["item_factors"]
        self.history_ = []


def solve_spd(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a symmetric positive (semi)definite system; least squares where it is singular."""
    try:
        return np.linalg.solve(matrix, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


def rmse(error: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean(error.double() ** 2))) if len(error) else math.nan


def valid_tensors(model: Recommender, valid: Ratings | None, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Validation rows whose user and movie training knows, as index and rating tensors."""
    if valid is None:
        return None
    users = model.users_.indices(valid.user_ids, missing="mask")
    items = model.items_.indices(valid.item_ids, missing="mask")
    keep = (users >= 0) & (items >= 0)
    return (torch.as_tensor(users[keep], device=device), torch.as_tensor(items[keep], device=device),
            torch.as_tensor(valid.rating[keep], dtype=torch.float32, device=device))


class FactorModule(nn.Module):
    """The learned tensors: ``users`` rows [p_u, b_u], ``items`` rows [q_i, b_i] (one gather per side
    per batch), and for SVD++ ``implicit`` rows y_j. Factors start normal(0, init_std), biases 0."""

    def __init__(self, n_users: int, n_items: int, factors: int, init_std: float, mu: float,
                 generator: torch.Generator, implicit: bool = False) -> None:
        super().__init__()

        def table(rows: int, bias: bool) -> nn.Parameter:
            values = torch.randn(rows, factors + bias, generator=generator) * init_std
            if bias:
                values[:, -1] = 0.0
            return nn.Parameter(values)

        self.factors = factors
        self.users = table(n_users, True)
        self.items = table(n_items, True)
        if implicit:
            self.implicit = table(n_items, False)
        self.register_buffer("mu", torch.tensor(float(mu)))

    def score(self, user_rows: torch.Tensor, item_rows: torch.Tensor) -> torch.Tensor:
        """mu + b_u + b_i + p·q for gathered rows (B, k + 1) of each side."""
        k = self.factors
        dot = (user_rows[:, :k] * item_rows[:, :k]).sum(1)
        return self.mu + user_rows[:, k] + item_rows[:, k] + dot


class GradientMF(BiasedFactors):
    """Shared checks and plumbing of the gradient-trained models."""

    factors: int
    epochs: int
    learning_rate: float
    reg: float
    init_std: float
    batch_size: int
    optimizer: str
    lr_schedule: str
    random_state: int
    device: str

    def _check_params(self) -> None:
        check_int("factors", self.factors, 1)
        check_int("epochs", self.epochs, 1)
        check_number("learning_rate", self.learning_rate, strict=True)
        check_number("reg", self.reg)
        check_number("init_std", self.init_std, strict=True)
        check_int("batch_size", self.batch_size, 1)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        check_schedule(self.lr_schedule)
        check_int("random_state", self.random_state, 0)
        resolve_device(self.device)

    def _fold_in_penalties(self, n_ratings: int) -> tuple[float, float]:
        # the per-rating L2 of training, summed over the new user's ratings
        return float(self.reg) * n_ratings, float(self.reg) * n_ratings

    def _train(self, module: nn.Module, batch_loss: Any, rows: tuple[torch.Tensor, ...],
               sse: torch.Tensor, valid_rows: tuple[torch.Tensor, ...] | None, valid_rmse: Any,
               generator: torch.Generator, callback: Callback | None) -> None:
        """Run `train_minibatch`. Per epoch, ``train_rmse`` comes from the squared errors and rows
        that ``batch_loss`` adds to ``sse`` while it trains (the running figure Surprise and Keras
        report: parameters move during the epoch; under data-parallel training summed over the
        replicas), ``valid_rmse`` from the model at the epoch's end."""
        history: list[dict[str, float]] = []

        def on_epoch(event: str, record: dict[str, Any]) -> None:
            squared, count = summed(sse.cpu().numpy())
            record["train_rmse"] = math.sqrt(squared / count) if count else math.nan
            sse.zero_()
            record_epoch(history, record, callback)

        train_minibatch(
            module, batch_loss, rows,
            epochs=int(self.epochs), batch_size=int(self.batch_size),
            learning_rate=float(self.learning_rate), generator=generator,
            optimizer=self.optimizer, lr_schedule=self.lr_schedule,
            valid=valid_rows,
            valid_metrics=(lambda tensors: {"valid_rmse": valid_rmse(tensors)}) if valid_rows else None,
            callback=on_epoch,
        )
        self.history_ = history

    def _keep(self, module: FactorModule, train: Ratings) -> None:
        users = module.users.detach().cpu().numpy().copy()
        items = module.items.detach().cpu().numpy().copy()
        # ids in the vocabularies without a training rating keep nothing of their random start
        users[summed(train.user_counts) == 0] = 0.0
        items[summed(train.item_counts) == 0] = 0.0
        self.global_mean_ = float(module.mu)
        self.user_factors_, self.user_bias_ = users[:, :-1].copy(), users[:, -1].copy()
        self.item_factors_, self.item_bias_ = items[:, :-1].copy(), items[:, -1].copy()


class BiasedMFSGD(GradientMF):
    """Biased MF (mu + b_u + b_i + p_u·q_i) by minibatch gradient descent: the Funk / Surprise SVD
    family, vectorised over shuffled batches of ratings with `train_minibatch`.

    The loss of a batch is the mean over its ratings of
    ``(r_ui - r̂_ui)^2 + reg * (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2)``, so each parameter is penalised
    once per rating that touches it, as in Surprise's per-rating updates.

    Defaults were tuned on a random 10% validation carve-out of ml-100k u1's training ratings: Adagrad
    (a per-parameter step that shrinks with the parameter's accumulated gradient, so rarely rated
    movies are not over-fitted) beat Adam and plain SGD at equal epochs, and with ``reg`` 0.1
    ten epochs of 4096-rating batches are enough. ``learning_rate`` is the optimizer's step on the
    batch-mean loss (plain SGD needs values in the units of ``batch_size``).

    Args:
        factors: length of p_u and q_i.
        epochs: passes over the ratings.
        learning_rate: the optimizer's step size.
        reg: L2 weight per rating (>= 0).
        init_std: standard deviation of the normal initial factors (biases start at 0).
        batch_size: ratings per step.
        optimizer: one of ``adam``, ``adamw``, ``sgd``, ``adagrad``.
        lr_schedule: see `movierec.models.core.train.check_schedule`.
        random_state: seed of the initial factors and the batch order.
        device: where training runs ("auto", "cpu", "cuda").
    """

    name = "biased-mf-sgd"

    def __init__(
        self,
        factors: int = 50,
        epochs: int = 10,
        learning_rate: float = 0.1,
        reg: float = 0.1,
        init_std: float = 0.1,
        batch_size: int = 4096,
        optimizer: str = "adagrad",
        lr_schedule: str = "constant",
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.reg = reg
        self.init_std = init_std
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.random_state = random_state
        self.device = device

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        generator = torch.Generator().manual_seed(int(self.random_state))
        mu = training_mean(train.rating.astype(np.float64))
        module = FactorModule(train.n_users, train.n_items, int(self.factors), float(self.init_std),
                               mu, generator).to(device)
        rows = (torch.as_tensor(train.user_index.astype(np.int64), device=device),
                torch.as_tensor(train.item_index.astype(np.int64), device=device),
                torch.as_tensor(train.rating.astype(np.float32), device=device))
        reg = float(self.reg)
        sse = torch.zeros(2, dtype=torch.float64, device=device)  # the epoch's squared errors, rows

        def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            users, items, rating = batch
            u = torch.index_select(module.users, 0, users)
            i = torch.index_select(module.items, 0, items)
            squared = (rating - module.score(u, i)) ** 2
            if not module.training:
                return squared.mean()
            sse[0] += squared.detach().sum()
            sse[1] += squared.numel()
            # per rating: reg * (|p_u|^2 + b_u^2 + |q_i|^2 + b_i^2)
            return squared.mean() + reg * ((u * u).sum() + (i * i).sum()) / len(users)

        def valid_rmse(tensors: tuple[torch.Tensor, ...]) -> float:
            users, items, rating = tensors
            u = torch.index_select(module.users, 0, users)
            i = torch.index_select(module.items, 0, items)
            return rmse(rating - module.score(u, i))

        self._train(module, batch_loss, rows, sse, valid_tensors(self, valid, device), valid_rmse,
                    generator, callback)
        self._keep(module, train)

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Ratings as torch tensors with an epoch's shuffled copy, and the factor tables with their
        gradients and optimizer state."""
        width = int(self.factors) + 1
        return int(TORCH_BYTES + AUTOGRAD_BYTES + 48 * n_ratings
                   + trained_table_bytes(n_users + n_items, width))
