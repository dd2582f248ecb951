"""``dot-bias-sigmoid``: the Keras collaborative-filtering example, sigmoid(p_u . q_i + b_u + b_i) scaled to
the rating range, trained with binary cross-entropy (`DotBiasSigmoid`)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from movierec.data.dataset import Ratings
from movierec.models.classic.shared import (
    EVAL_BATCH,
    LazyAdam,
    adam_fold_in,
    check_common,
    generators,
    he_normal,
    rmse,
    sigmoid,
    uniform,
)
from movierec.models.core.memory import AUTOGRAD_BYTES, TORCH_BYTES, trained_table_bytes
from movierec.models.core.recommender import Callback, DotParts, Recommender
from movierec.models.core.train import (
    current_replicas,
    pooled,
    replica_steps,
    resolve_device,
    start_replicas,
    torch_threads,
)

__all__ = ["DotBiasSigmoid"]


class DotBiasSigmoid(Recommender):
    """The Keras collaborative-filtering example (ml-latest-small): r̂ = low + (high - low) *
    sigmoid(p_u . q_i + b_u + b_i), trained with binary cross-entropy on (r - low) / (high - low).

    The dot product is per example (the published example's ``tensordot(a, b, 2)`` sums the whole
    batch into one scalar; that bug is not reproduced). As in the example: embeddings he_normal
    (Keras': truncated normal, fan_in = the table's rows) with an L2 regulariser ``reg * |P|^2``,
    biases uniform(-0.05, 0.05) without one, Adam (Keras' epsilon 1e-7) at ``learning_rate``,
    batches of 64, 5 epochs, no early stopping.

    Args:
        factors: embedding size (50 in the example).
        epochs, batch_size, learning_rate: as above.
        reg: L2 weight on the embeddings (Keras' ``l2(1e-6)``), applied to the rows each step
            touches (lazy update; see the module docstring).
        random_state, device, threads: see `EmbeddingMLP`.

    Training runs a hand-rolled step (no autograd, no optimizer objects) instead of
    `train_minibatch`: the recipe's 7,000 batch-64 steps are nearly all per-step overhead, and this
    loop costs about a third of the CPU time of the generic autograd + optimizer step. Its records
    carry the same keys; ``train_loss`` is the BCE over the training rows after the epoch, and
    ``valid_loss`` (BCE) and ``valid_rmse`` cover every validation row, unknown ids through the
    fallback, as Keras' validation over the test part does. Data-parallel (`movierec.distributed`):
    every replica draws the single-process batches and steps on its share of each, the shares'
    gradients put together first, so the model is the single-process one up to float rounding.

    Unknown ids: a zero vector and a zero bias (an untrained row of the example's tables, shrunk by
    its regulariser): an unknown user gets low + range * sigmoid(b_i), an unknown movie
    low + range * sigmoid(b_u), both unknown the middle of the scale.
    """

    name = "dot-bias-sigmoid"
    auto_cuda = False  # slower on a GPU than on a CPU (figures in `movierec.models.classic.shared`)
    # Small: with a negligible L2, the step count is the fold-in's regulariser (best held-out RMSE
    # of folded-in users on mlsmall-rand90 among 0.003..0.1).
    _fold_in_lr: ClassVar[float] = 0.007

    def __init__(self, factors: int = 50, epochs: int = 5, batch_size: int = 64,
                 learning_rate: float = 1e-3, reg: float = 1e-6, random_state: int = 0,
                 device: str = "auto", threads: int | None = 1) -> None:
        self.factors = factors
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg = reg
        self.random_state = random_state
        self.device = device
        self.threads = threads

    def _check_params(self) -> None:
        check_common(self)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device, prefer_cuda=self.auto_cuda)
        generator, _ = generators(self.random_state, device)
        n_users, n_items, k = train.n_users, train.n_items, self.factors
        low, high = self.scale_
        with torch_threads(self.threads):
            # One table, rows: users, movies, then the unknown-user and unknown-movie rows.
            # User rows are [p_u, b_u, 1] and movie rows [q_i, 1, b_i], so one dot product of two
            # rows is p_u . q_i + b_u + b_i. The constant columns get no gradient (`grad_mask`).
            table = torch.zeros(n_users + n_items + 2, k + 2)
            users, items = slice(0, n_users), slice(n_users, n_users + n_items)
            table[users, :k] = he_normal((n_users, k), generator)
            table[items, :k] = he_normal((n_items, k), generator)
            table[users, k] = uniform((n_users,), 0.05, generator)  # b_u
            table[users, k + 1] = 1.0
            table[items, k] = 1.0
            table[items, k + 1] = uniform((n_items,), 0.05, generator)  # b_i
            table[-2, k + 1] = 1.0  # unknown user: [0, 0, 1]
            table[-1, k] = 1.0  # unknown movie: [0, 1, 0]
            table = table.to(device)
            grad_mask = torch.ones(2, 1, k + 2, device=device)
            grad_mask[0, 0, k + 1] = 0
            grad_mask[1, 0, k] = 0
            l2_columns = torch.ones(k + 2, device=device)
            l2_columns[k:] = 0
            adam = LazyAdam(table, self.learning_rate, self.reg, l2_columns)

            def rows_of(user_index: np.ndarray, item_index: np.ndarray) -> torch.Tensor:
                users = np.where(user_index >= 0, user_index, n_users + n_items)
                items = np.where(item_index >= 0, item_index + n_users, n_users + n_items + 1)
                return torch.as_tensor(np.stack([users, items]).astype(np.int64), device=device)

            def scaled(rating: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(((rating - low) / (high - low)).astype(np.float32), device=device)

            pairs, targets = rows_of(train.user_index, train.item_index), scaled(train.rating)
            valid_pairs = valid_targets = None
            if valid is not None and len(valid):
                valid_pairs = rows_of(self.users_.indices(valid.user_ids, missing="mask"),
                                      self.items_.indices(valid.item_ids, missing="mask"))
                valid_targets = scaled(valid.rating)

            def logits(rows: torch.Tensor) -> torch.Tensor:
                pair = table.index_select(0, rows.reshape(-1)).view(2, -1, k + 2)
                return torch.linalg.vecdot(pair[0], pair[1])

            def metrics(rows: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
                z = torch.cat([logits(rows[:, s : s + EVAL_BATCH])
                               for s in range(0, rows.shape[1], EVAL_BATCH)])
                return {
                    f"{prefix}_loss": float(F.binary_cross_entropy_with_logits(z, y)),
                    f"{prefix}_rmse": rmse(torch.sigmoid(z) * (high - low), y * (high - low)),
                }

            self.history_ = []
            step_pairs, step_targets, size = pairs, targets, self.batch_size
            # Data-parallel (`current_replicas`): every replica steps on its shard (padded to the
            # longest) in its share of each batch; the shares' gradients are put together before
            # the step, so a step is one on a batch of the global size.
            replicas = current_replicas()
            if replicas is not None:
                start_replicas(replicas, [table])
                (columns, step_targets), size, generator = replica_steps(
                    replicas, (pairs.T, targets), size, generator)
                step_pairs = columns.T
            n = len(step_targets)
            for epoch in range(1, self.epochs + 1):
                start = time.perf_counter()
                order = torch.randperm(n, generator=generator).to(device)
                epoch_pairs, epoch_targets = step_pairs[:, order], step_targets[order]
                for first in range(0, n, size):
                    batch, y = epoch_pairs[:, first : first + size], epoch_targets[first : first + size]
                    rows = batch.reshape(-1)  # user rows, movie rows
                    flat = table.index_select(0, rows)
                    pair = flat.view(2, len(y), k + 2)
                    z = torch.linalg.vecdot(pair[0], pair[1])
                    # d BCE(sigmoid(z), y) / dz = sigmoid(z) - y, averaged over the batch
                    dz = torch.sigmoid(z).sub_(y).div_(len(z))
                    grads = pair.flip(0).mul_(dz[:, None]).mul_(grad_mask).view(-1, k + 2)
                    if replicas is None:
                        adam.step(rows, grads, flat)
                    else:
                        adam.step(*replicas.combine_sparse(rows, grads, len(z)))
                record: dict[str, Any] = {"epoch": epoch, "epochs": self.epochs}
                with torch.no_grad():
                    record.update(pooled(metrics(pairs, targets, "train"), len(targets)))
                    record["lr"] = self.learning_rate
                    if valid_pairs is not None:
                        record.update(metrics(valid_pairs, valid_targets, "valid"))
                record["seconds"] = time.perf_counter() - start
                self.history_.append(record)
                if callback is not None:
                    callback("epoch", dict(record))
        table = table.cpu().numpy()
        self.user_factors_ = table[:n_users, :k].copy()
        self.user_bias_ = table[:n_users, k].copy()
        self.item_factors_ = table[n_users : n_users + n_items, :k].copy()
        self.item_bias_ = table[n_users : n_users + n_items, k + 1].copy()

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Neural: embeddings and biases with gradients and Adam moments, the ratings as tensors
        with an epoch's shuffled copy, and torch's own pools."""
        return int(TORCH_BYTES + AUTOGRAD_BYTES + 48 * n_ratings
                   + trained_table_bytes(n_users + n_items, int(self.factors) + 1))

    # -- scoring (numpy: a dot product per pair needs no network) ------------------------------------
    def _to_rating(self, logits: np.ndarray) -> np.ndarray:
        low, high = self.scale_
        return low + (high - low) * sigmoid(logits.astype(np.float64))

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        known_u, known_i = user_index >= 0, item_index >= 0
        u, i = np.maximum(user_index, 0), np.maximum(item_index, 0)
        dot = np.einsum("nk,nk->n", self.user_factors_[u], self.item_factors_[i])
        logits = (np.where(known_u & known_i, dot, 0.0) + np.where(known_u, self.user_bias_[u], 0.0)
                  + np.where(known_i, self.item_bias_[i], 0.0))
        return self._to_rating(logits)

    def _scores(self, vectors: np.ndarray, biases: np.ndarray) -> np.ndarray:
        logits = vectors.astype(np.float32) @ self.item_factors_.T  # float32: no upcast of the table
        return self._to_rating(logits + biases[:, None] + self.item_bias_[None, :])

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return self._scores(self.user_factors_[user_index], self.user_bias_[user_index])

    def _dot_parts(self) -> DotParts:
        # the logits [p_u, b_u] . [q_i, 1] + b_i; the rating is increasing in them (not exact)
        def build() -> DotParts:
            users = np.hstack([self.user_factors_, self.user_bias_[:, None]]).astype(np.float32)
            items = np.hstack([self.item_factors_, np.ones((len(self.item_factors_), 1), np.float32)])
            return DotParts(users, items, self.item_bias_, False)

        return self._cached_parts((self.user_factors_, self.user_bias_, self.item_factors_,
                                   self.item_bias_), build)

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        k = self.factors
        x = np.zeros(k + 1)  # [p_u, b_u], starting at the unknown-user fallback
        if len(item_index):
            q = self.item_factors_[item_index].astype(np.float64)
            b_i = self.item_bias_[item_index].astype(np.float64)
            low, high = self.scale_
            y = (ratings - low) / (high - low)
            reg = float(self.reg)

            def gradient(x: np.ndarray) -> np.ndarray:
                # the training loss for one user: mean BCE(sigmoid(z), y) + reg |p_u|^2
                dz = (sigmoid(q @ x[:k] + x[k] + b_i) - y) / len(y)
                return np.append(dz @ q + 2 * reg * x[:k], dz.sum())

            x = adam_fold_in(gradient, x, self._fold_in_lr)
        return self._scores(x[None, :k], x[k:])[0]

    # -- persistence --------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors_, "user_bias": self.user_bias_,
                "item_factors": self.item_factors_, "item_bias": self.item_bias_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.user_factors_ = np.asarray(arrays["user_factors"], dtype=np.float32)
        self.user_bias_ = np.asarray(arrays["user_bias"], dtype=np.float32)
        self.item_factors_ = np.asarray(arrays["item_factors"], dtype=np.float32)
        self.item_bias_ = np.asarray(arrays["item_bias"], dtype=np.float32)


# -- 3. rating-classifier ---------------------------------------------------------------------------
