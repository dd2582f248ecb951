"""Koren's SVD++ for rating prediction (`SVDpp`): biased MF plus the implicit feedback of the movies a
user rated, trained by minibatch gradient descent (notation in `movierec.models.rating.mf`)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from movierec.data.dataset import Ratings
from movierec.models.core.checks import check_number
from movierec.models.core.memory import AUTOGRAD_BYTES, TORCH_BYTES, trained_table_bytes
from movierec.models.core.recommender import Callback
from movierec.models.core.train import current_replicas, resolve_device, summed, training_mean
from movierec.models.rating.mf import FactorModule, GradientMF, valid_tensors

__all__ = ["SVDpp"]


class SVDpp(GradientMF):
    """Koren's SVD++: biased MF whose user vector adds |N(u)|^-1/2 sum_{j in N(u)} y_j, the implicit
    feedback of the movies u rated in training, trained by minibatch gradient descent.

    A batch is ``batch_size`` shuffled training ratings. The implicit sums of the batch's distinct
    users are one `embedding_bag` over their N(u) (read from the training CSR), and each rating's
    prediction a gather from them, so nothing runs per rating or per user in Python. The loss is the
    mean over the batch's ratings (u, i) of

        (r_ui - r̂_ui)^2 + reg * (b_u^2 + b_i^2 + |p_u|^2 + |q_i|^2) + implicit_reg * sum_{j in N(u)} |y_j|^2

    the last term because Surprise's SVD++ decays every y_j of N(u) at each of u's ratings; with
    ``implicit_reg`` below ``reg`` (its own weight, tuned on a validation carve-out of ml-100k u1) the
    implicit factors generalise better than with Surprise's single ``reg``.

    Fitted attributes besides those of biased MF: ``implicit_factors_`` (n_items, factors), the y_j;
    ``user_implicit_`` (n_users, factors), each training user's implicit sum.

    Args:
        factors, epochs, learning_rate, reg, init_std, batch_size, optimizer, lr_schedule,
        random_state, device: as `BiasedMFSGD`.
        implicit_reg: L2 weight of the y_j (>= 0), see above.
    """

    name = "svdpp"

    implicit_factors_: np.ndarray
    user_implicit_: np.ndarray

    def __init__(
        self,
        factors: int = 50,
        epochs: int = 20,
        learning_rate: float = 0.05,
        reg: float = 0.1,
        implicit_reg: float = 0.03,
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
        self.implicit_reg = implicit_reg
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
        k = int(self.factors)
        module = FactorModule(train.n_users, train.n_items, k, float(self.init_std), mu, generator,
                               implicit=True).to(device)
        csr = train.csr  # N(u): the training CSR, one row per user
        indptr = torch.as_tensor(csr.indptr.astype(np.int64), device=device)
        rated = torch.as_tensor(csr.indices.astype(np.int64), device=device)
        counts = indptr[1:] - indptr[:-1]
        norm = torch.where(counts > 0, counts.clamp(min=1).double().rsqrt(), 0.0).float()
        reg, implicit_reg = float(self.reg), float(self.implicit_reg)
        sse = torch.zeros(2, dtype=torch.float64, device=device)  # the epoch's squared errors, rows

        def rated_by(users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """N(u) of distinct ``users`` as embedding bags: (their counts, bag offsets, movies)."""
            n = torch.index_select(counts, 0, users)
            offsets = torch.cumsum(n, 0) - n
            shift = torch.repeat_interleave(torch.index_select(indptr, 0, users) - offsets, n)
            return n, offsets, torch.index_select(rated, 0, shift + torch.arange(len(shift), device=device))

        def implicit_sums(users: torch.Tensor, offsets: torch.Tensor, movies: torch.Tensor) -> torch.Tensor:
            """|N(u)|^-1/2 sum_{j in N(u)} y_j, (len(users), k)."""
            total = nn.functional.embedding_bag(movies, module.implicit, offsets, mode="sum")
            return total * torch.index_select(norm, 0, users)[:, None]

        def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            users, items, truth = batch
            distinct, inverse = torch.unique(users, return_inverse=True)
            n, offsets, movies = rated_by(distinct)
            u = torch.index_select(module.users, 0, distinct)
            user_rows = torch.cat([u[:, :k] + implicit_sums(distinct, offsets, movies), u[:, k:]], 1)
            i = torch.index_select(module.items, 0, items)
            squared = (truth - module.score(torch.index_select(user_rows, 0, inverse), i)) ** 2
            if not module.training:
                return squared.mean()
            sse[0] += squared.detach().sum()
            sse[1] += squared.numel()
            # y_j's weight: how many of the batch's ratings come from users who rated j
            per_user = torch.bincount(inverse, minlength=len(distinct)).to(u.dtype)
            weight = torch.zeros(train.n_items, device=device).index_add_(
                0, movies, torch.repeat_interleave(per_user, n))
            y = module.implicit
            penalty = reg * ((per_user * (u * u).sum(1)).sum() + (i * i).sum())
            penalty = penalty + implicit_reg * (weight * (y * y).sum(1)).sum()
            return squared.mean() + penalty / len(users)

        def valid_rmse(tensors: tuple[torch.Tensor, ...]) -> float:
            return math.sqrt(float(batch_loss(tensors)))

        rows = (torch.as_tensor(train.user_index.astype(np.int64), device=device),
                torch.as_tensor(train.item_index.astype(np.int64), device=device),
                torch.as_tensor(train.rating.astype(np.float32), device=device))
        checked = valid_tensors(self, valid, device)
        if checked is not None and current_replicas() is not None:  # users whose N(u) is here
            here = torch.index_select(counts, 0, checked[0]) > 0
            checked = tuple(t[here] for t in checked)
        self._train(module, batch_loss, rows, sse, checked, valid_rmse, generator, callback)
        self._keep(module, train)
        with torch.no_grad():
            self.implicit_factors_ = module.implicit.detach().cpu().numpy().copy()
            everyone = torch.arange(train.n_users, device=device)
            # a user's sum where its ratings are: the other shards' rows of it are empty (zeros)
            self.user_implicit_ = summed(implicit_sums(everyone, indptr[:-1], rated).cpu().numpy()
                                         ).astype(np.float32)

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """`BiasedMFSGD`'s tensors plus the implicit movie table and each user's rated movies."""
        width = int(self.factors) + 1
        return int(TORCH_BYTES + AUTOGRAD_BYTES + 64 * n_ratings
                   + trained_table_bytes(n_users + 2 * n_items, width))

    def _check_params(self) -> None:
        super()._check_params()
        check_number("implicit_reg", self.implicit_reg)

    def _user_vectors(self, user_index: np.ndarray) -> np.ndarray:
        return self.user_factors_[user_index] + self.user_implicit_[user_index]

    def _fold_in_offset(self, item_index: np.ndarray) -> np.ndarray:
        if len(item_index) == 0:
            return np.zeros(self.implicit_factors_.shape[1], dtype=np.float64)
        return self.implicit_factors_[item_index].astype(np.float64).sum(0) / math.sqrt(len(item_index))

    def _state(self) -> dict[str, np.ndarray]:
        return super()._state() | {"implicit_factors": self.implicit_factors_,
                                   "user_implicit": self.user_implicit_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        super()._set_state(arrays)
        self.implicit_factors_ = arrays["implicit_factors"]
        self.user_implicit_ = arrays["user_implicit"]
