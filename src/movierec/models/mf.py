"""Matrix factorisation for rating prediction: biased MF by ALS, biased MF by minibatch SGD, SVD++.

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
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.base import Callback, Recommender, check_int, check_number
from movierec.models.train import OPTIMIZERS, check_schedule, resolve_device, train_minibatch

__all__ = ["BiasedMFALS", "BiasedMFSGD", "RowBlocks", "SVDpp", "als_solve_rows"]

# Padded ratings per block of batched Gram matrices in ALS: bounds the scratch at about
# _BLOCK_RATINGS * (factors + 2) floats (~50 MB at 50 factors) whatever the data size.
_BLOCK_RATINGS = 1 << 18
# Rows per prediction step, so scoring many pairs never builds large temporaries.
_PREDICT_ROWS = 1 << 20


# -- hyperparameter checks ---------------------------------------------------------------------




# -- shared state and inference ----------------------------------------------------------------


class _BiasedFactors(Recommender):
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
        solution = _solve_spd(gram, x.T @ target)
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


def _solve_spd(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve a symmetric positive (semi)definite system; least squares where it is singular."""
    try:
        return np.linalg.solve(matrix, rhs)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


def _rmse(error: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean(error.double() ** 2))) if len(error) else math.nan


def _epoch_record(history: list[dict[str, float]], record: dict[str, float], callback: Callback | None
                  ) -> None:
    history.append(record)
    if callback is not None:
        callback("epoch", dict(record))


# -- ALS ---------------------------------------------------------------------------------------


class RowBlocks:
    """The training ratings grouped by row (users, or movies) for batched ridge solves.

    Rows are bucketed by their rating count rounded up to a width ``w`` (a power of two up to 32, then
    half-octave steps rounded to multiples of 8, so padding adds about 20% to the big rows' work) and
    each bucket is cut into chunks of at most ``_BLOCK_RATINGS`` padded ratings. A chunk holds, per row
    and slot, the other side's index (padding: ``n_cols``, a zero row) and the rating's position
    (padding: ``n_ratings``, a zero target), so padding adds nothing to any sum. Rows without ratings
    are in no chunk.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int,
                 device: torch.device) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        counts = np.bincount(rows, minlength=n_rows)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        width = np.zeros(n_rows, dtype=np.int64)
        rated = counts > 0
        width[rated] = _padded_width(counts[rated])
        self.n_rows, self.n_cols, self.n_ratings = n_rows, n_cols, len(rows)
        self.counts = torch.as_tensor(counts, device=device)
        self.chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = []
        positions = np.append(order, len(rows))
        other = np.append(np.asarray(cols, dtype=np.int64)[order], n_cols)
        for w in np.unique(width[rated]).tolist():
            members = np.flatnonzero(width == w)
            step = max(1, _BLOCK_RATINGS // w)
            for first in range(0, len(members), step):
                block = members[first : first + step]
                offsets = np.arange(w)[None, :]
                # index into the sorted ratings, or -1 (-> the appended padding entry) past a row's end
                slots = np.where(offsets < counts[block][:, None], starts[block][:, None] + offsets, -1)
                self.chunks.append((
                    torch.as_tensor(block, device=device),
                    torch.as_tensor(other[slots].ravel(), device=device),
                    torch.as_tensor(positions[slots].ravel(), device=device),
                    w,
                ))


def _padded_width(counts: np.ndarray) -> np.ndarray:
    """Bucket widths for row lengths >= 1: powers of two up to 32, then half-octave multiples of 8."""
    octaves = np.log2(counts)
    small = np.left_shift(1, np.ceil(octaves).astype(np.int64))
    large = 8 * np.ceil(2 ** (np.ceil(2 * octaves) / 2) / 8).astype(np.int64)
    return np.maximum(np.where(counts <= 32, small, large), counts)


def als_solve_rows(
    blocks: RowBlocks,
    other: torch.Tensor,
    targets: torch.Tensor,
    reg: float,
    bias_reg: float,
) -> tuple[torch.Tensor, float]:
    """One ALS half-step: every row's ridge solve at once.

    Args:
        blocks: the rows' ratings (`RowBlocks`).
        other: (n_cols, d) the other side's [factors, 1].
        targets: (n_ratings,) what each rating asks the row's [factors, bias] to explain (the rating
            minus mu minus the other side's bias), in the order the blocks were built from.
        reg: penalty per rating on each factor (row r pays ``reg * n_r``); bias_reg: penalty on the
            bias (the last column), not scaled.

    Returns:
        (n_rows, d) solutions x_r = (X_r^T X_r + diag(reg n_r, ..., reg n_r, bias_reg))^-1 X_r^T y_r
        (zero for rows without ratings), and the training sum of squared errors sum_r |y_r - X_r x_r|^2
        after the solve.

    A row with fewer padded ratings w than d unknowns is solved in the dual form (a w x w system),
    x = L^-1 X^T (X L^-1 X^T + I)^-1 y with L the penalty, whose solution is also the residual.
    """
    n_rows, d = blocks.n_rows, other.shape[1]
    dtype, device = other.dtype, other.device
    other = torch.cat([other, other.new_zeros(1, d)])
    targets = torch.cat([targets, targets.new_zeros(1)])
    penalty = torch.full((n_rows, d), float(reg), dtype=dtype, device=device)
    penalty *= blocks.counts[:, None].to(dtype)
    penalty[:, -1] = float(bias_reg)
    dual_ok = bias_reg > 0
    out = other.new_zeros(n_rows, d)
    sse = torch.zeros((), dtype=torch.float64, device=device)
    for rows, cols, positions, w in blocks.chunks:
        m = len(rows)
        x = torch.index_select(other, 0, cols).view(m, w, d)
        y = torch.index_select(targets, 0, positions).view(m, w, 1)
        row_penalty = torch.index_select(penalty, 0, rows)
        if w < d and dual_ok:
            scaled = x / row_penalty[:, None, :]
            if w == 1:  # a 1 x 1 system: no factorisation needed
                alpha = y / (1.0 + (scaled * x).sum(2, keepdim=True))
            else:
                kernel = torch.baddbmm(torch.eye(w, dtype=dtype, device=device), scaled, x.transpose(1, 2))
                alpha = torch.cholesky_solve(y, torch.linalg.cholesky_ex(kernel)[0])
            solution = torch.bmm(scaled.transpose(1, 2), alpha)[:, :, 0]
            sse += (alpha.double() ** 2).sum()
        else:
            xt = x.transpose(1, 2)
            gram = torch.bmm(xt, x)
            rhs = torch.bmm(xt, y)
            gram.diagonal(dim1=1, dim2=2).add_(row_penalty)
            factor, info = torch.linalg.cholesky_ex(gram)
            solution = torch.cholesky_solve(rhs, factor)
            if bool(info.any()):  # singular: only with bias_reg = 0 and a degenerate row
                bad = info != 0
                solution[bad] = torch.linalg.lstsq(gram[bad].cpu(), rhs[bad].cpu()).solution.to(solution)
            solution = solution[:, :, 0]
            # |y - X x|^2 = y.y - x.b - x.Lx, since (X^T X + L) x = b
            sse += ((y[:, :, 0] ** 2).sum() - (solution * rhs[:, :, 0]).sum()
                    - (row_penalty * solution**2).sum()).double()
        out.index_copy_(0, rows, solution)
    return out, float(sse)


class BiasedMFALS(_BiasedFactors):
    """Biased MF (mu + b_u + b_i + p_u·q_i) learned by alternating least squares.

    Each epoch solves every movie's [q_i, b_i] given the users, then every user's [p_u, b_u] given
    the movies, each as an exact ridge problem (see the module docstring) batched over all rows: the
    per-row Gram matrices come from padded blocks of the ratings by `torch.bmm`, and are solved by a
    batched Cholesky factorisation. The bias rides along as a constant column of the other side's
    factors, so biases and factors are learned jointly rather than fixed beforehand.

    Regularisation as LensKit's BiasedMF (ALS-WR, Zhou et al. 2008): the factor penalty of a row is
    ``reg`` times its rating count. Unlike LensKit, which fixes damped biases before the ALS, the
    biases here are re-solved with the factors, with a plain (unscaled) L2 ``bias_reg``, like LensKit's
    damping. Because the last half-step solves the users, `recommend_for_ratings` with a training
    user's own ratings gives back exactly that user's factors.

    Defaults were tuned on a random 10% validation carve-out of ml-100k u1's training ratings
    (``reg`` 0.13 beat LensKit's 0.1 and 0.15-0.25; 40 factors sit between 30 and 64 in accuracy and
    time). Cost per epoch: about 2 * n_ratings * (factors + 1)^2 multiply-adds for the Gram matrices
    plus one small Cholesky factorisation per user and per movie.

    Args:
        factors: length of p_u and q_i.
        epochs: alternations (each: all movies, then all users).
        reg: factor penalty per rating (> 0).
        bias_reg: penalty on each bias (>= 0).
        random_state: seed of the initial user factors (normal, std 0.1).
        device: where training runs ("auto", "cpu", "cuda"); results do not depend on it beyond
            rounding.
    """

    name = "biased-mf-als"

    def __init__(
        self,
        factors: int = 40,
        epochs: int = 10,
        reg: float = 0.13,
        bias_reg: float = 1.0,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.epochs = epochs
        self.reg = reg
        self.bias_reg = bias_reg
        self.random_state = random_state
        self.device = device

    def _check_params(self) -> None:
        check_int("factors", self.factors, 1)
        check_int("epochs", self.epochs, 1)
        check_number("reg", self.reg, strict=True)
        check_number("bias_reg", self.bias_reg)
        check_int("random_state", self.random_state, 0)
        resolve_device(self.device)

    def _fold_in_penalties(self, n_ratings: int) -> tuple[float, float]:
        return float(self.reg) * n_ratings, float(self.bias_reg)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        dtype = torch.float32
        generator = torch.Generator().manual_seed(int(self.random_state))
        n_users, n_items, k = train.n_users, train.n_items, int(self.factors)
        users = torch.as_tensor(train.user_index.astype(np.int64), device=device)
        items = torch.as_tensor(train.item_index.astype(np.int64), device=device)
        mu = float(train.rating.astype(np.float64).mean())
        residual = torch.as_tensor(train.rating.astype(np.float32) - np.float32(mu), device=device)
        by_user = RowBlocks(train.user_index, train.item_index, n_users, n_items, device)
        by_item = RowBlocks(train.item_index, train.user_index, n_items, n_users, device)
        valid_rows = _valid_tensors(self, valid, device)

        user_side = torch.ones(n_users, k + 1, dtype=dtype, device=device)  # [p_u, 1]
        user_side[:, :k] = torch.randn(n_users, k, generator=generator, dtype=dtype).to(device) * 0.1
        user_bias = torch.zeros(n_users, dtype=dtype, device=device)
        item_side = torch.ones(n_items, k + 1, dtype=dtype, device=device)  # [q_i, 1]
        item_bias = torch.zeros(n_items, dtype=dtype, device=device)
        reg, bias_reg = float(self.reg), float(self.bias_reg)
        history: list[dict[str, float]] = []
        for epoch in range(1, int(self.epochs) + 1):
            start = time.perf_counter()
            targets = residual - torch.index_select(user_bias, 0, users)
            solved, _ = als_solve_rows(by_item, user_side, targets, reg, bias_reg)
            item_side[:, :k], item_bias = solved[:, :k], solved[:, k].contiguous()
            targets = residual - torch.index_select(item_bias, 0, items)
            solved, sse = als_solve_rows(by_user, item_side, targets, reg, bias_reg)
            user_side[:, :k], user_bias = solved[:, :k], solved[:, k].contiguous()
            record = {"epoch": epoch, "epochs": self.epochs,
                      "train_rmse": math.sqrt(max(sse, 0.0) / len(train))}
            if valid_rows is not None:
                vu, vi, truth = valid_rows
                dot = (torch.index_select(user_side[:, :k], 0, vu)
                       * torch.index_select(item_side[:, :k], 0, vi)).sum(1)
                record["valid_rmse"] = _rmse(truth - (mu + user_bias[vu] + item_bias[vi] + dot))
            record["seconds"] = time.perf_counter() - start
            _epoch_record(history, record, callback)
        self.global_mean_ = mu
        self.user_bias_ = user_bias.cpu().numpy()
        self.item_bias_ = item_bias.cpu().numpy()
        self.user_factors_ = user_side[:, :k].contiguous().cpu().numpy()
        self.item_factors_ = item_side[:, :k].contiguous().cpu().numpy()
        self.history_ = history


def _valid_tensors(model: Recommender, valid: Ratings | None, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Validation rows whose user and movie training knows, as index and rating tensors."""
    if valid is None:
        return None
    users = model.users_.indices(valid.user_ids, missing="mask")
    items = model.items_.indices(valid.item_ids, missing="mask")
    keep = (users >= 0) & (items >= 0)
    return (torch.as_tensor(users[keep], device=device), torch.as_tensor(items[keep], device=device),
            torch.as_tensor(valid.rating[keep], dtype=torch.float32, device=device))


# -- minibatch gradient training ---------------------------------------------------------------


class _FactorModule(nn.Module):
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


class _GradientMF(_BiasedFactors):
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
        """Run `train_minibatch`. Per epoch, ``train_rmse`` comes from the squared errors that
        ``batch_loss`` adds to ``sse`` while it trains (the running figure Surprise and Keras report:
        parameters move during the epoch), ``valid_rmse`` from the model at the epoch's end."""
        history: list[dict[str, float]] = []

        def on_epoch(event: str, record: dict[str, Any]) -> None:
            record["train_rmse"] = math.sqrt(float(sse) / len(rows[0]))
            sse.zero_()
            _epoch_record(history, record, callback)

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

    def _keep(self, module: _FactorModule, train: Ratings) -> None:
        users = module.users.detach().cpu().numpy().copy()
        items = module.items.detach().cpu().numpy().copy()
        # ids in the vocabularies without a training rating keep nothing of their random start
        users[train.user_counts == 0] = 0.0
        items[train.item_counts == 0] = 0.0
        self.global_mean_ = float(module.mu)
        self.user_factors_, self.user_bias_ = users[:, :-1].copy(), users[:, -1].copy()
        self.item_factors_, self.item_bias_ = items[:, :-1].copy(), items[:, -1].copy()


class BiasedMFSGD(_GradientMF):
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
        lr_schedule: see `movierec.models.train.check_schedule`.
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
        mu = float(train.rating.astype(np.float64).mean())
        module = _FactorModule(train.n_users, train.n_items, int(self.factors), float(self.init_std),
                               mu, generator).to(device)
        rows = (torch.as_tensor(train.user_index.astype(np.int64), device=device),
                torch.as_tensor(train.item_index.astype(np.int64), device=device),
                torch.as_tensor(train.rating.astype(np.float32), device=device))
        reg = float(self.reg)
        sse = torch.zeros((), dtype=torch.float64, device=device)  # squared errors of the epoch

        def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            users, items, rating = batch
            u = torch.index_select(module.users, 0, users)
            i = torch.index_select(module.items, 0, items)
            squared = (rating - module.score(u, i)) ** 2
            if not module.training:
                return squared.mean()
            sse.add_(squared.detach().sum())
            # per rating: reg * (|p_u|^2 + b_u^2 + |q_i|^2 + b_i^2)
            return squared.mean() + reg * ((u * u).sum() + (i * i).sum()) / len(users)

        def valid_rmse(tensors: tuple[torch.Tensor, ...]) -> float:
            users, items, rating = tensors
            u = torch.index_select(module.users, 0, users)
            i = torch.index_select(module.items, 0, items)
            return _rmse(rating - module.score(u, i))

        self._train(module, batch_loss, rows, sse, _valid_tensors(self, valid, device), valid_rmse,
                    generator, callback)
        self._keep(module, train)


class SVDpp(_GradientMF):
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
        mu = float(train.rating.astype(np.float64).mean())
        k = int(self.factors)
        module = _FactorModule(train.n_users, train.n_items, k, float(self.init_std), mu, generator,
                               implicit=True).to(device)
        csr = train.csr  # N(u): the training CSR, one row per user
        indptr = torch.as_tensor(csr.indptr.astype(np.int64), device=device)
        rated = torch.as_tensor(csr.indices.astype(np.int64), device=device)
        counts = indptr[1:] - indptr[:-1]
        norm = torch.where(counts > 0, counts.clamp(min=1).double().rsqrt(), 0.0).float()
        reg, implicit_reg = float(self.reg), float(self.implicit_reg)
        sse = torch.zeros((), dtype=torch.float64, device=device)  # squared errors of the epoch

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
            sse.add_(squared.detach().sum())
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
        self._train(module, batch_loss, rows, sse, _valid_tensors(self, valid, device), valid_rmse,
                    generator, callback)
        self._keep(module, train)
        with torch.no_grad():
            self.implicit_factors_ = module.implicit.detach().cpu().numpy().copy()
            everyone = torch.arange(train.n_users, device=device)
            self.user_implicit_ = implicit_sums(everyone, indptr[:-1], rated).cpu().numpy()

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
