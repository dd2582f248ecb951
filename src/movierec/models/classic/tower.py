"""The embedding tower that three presets share: [user embedding | movie embedding] -> ReLU layers ->
outputs (`EmbeddingTower`), and its fitting, scoring, fold-in and persistence (`TowerRecommender`);
the presets themselves say what the outputs mean."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from movierec.data.dataset import Ratings
from movierec.models.classic.shared import (
    EVAL_BATCH,
    SCORE_BLOCK,
    LazyAdam,
    adam_fold_in,
    check_common,
    generators,
    in_chunks,
    rmse,
    uniform,
)
from movierec.models.core.checks import parse_hidden
from movierec.models.core.memory import AUTOGRAD_BYTES, TORCH_BYTES, trained_table_bytes
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.core.train import (
    current_replicas,
    known_pairs_tensors,
    load_module_arrays,
    module_arrays,
    pooled,
    replica_generator,
    resolve_device,
    torch_threads,
    train_minibatch,
    training_mean,
)

__all__ = ["EmbeddingTower", "TowerRecommender"]


class EmbeddingTower(nn.Module):
    """[user embedding | movie embedding] -> (Linear -> ReLU -> dropout) per hidden size -> Linear.

    Keras' defaults: embeddings uniform(-0.05, 0.05), dense weights Glorot-uniform, zero biases.
    The first layer's weight splits into a user half and a movie half, so a movie's contribution
    to it can be computed once and reused (scoring every movie, fold-in).
    """

    def __init__(self, n_users: int, n_items: int, factors: int, hidden: tuple[int, ...],
                 outputs: int, dropout: float, generator: torch.Generator) -> None:
        super().__init__()
        self.factors, self.dropout = factors, dropout
        self.user = nn.Parameter(uniform((n_users, factors), 0.05, generator))
        self.item = nn.Parameter(uniform((n_items, factors), 0.05, generator))
        sizes = [2 * factors, *hidden, outputs]
        self.layers = nn.ModuleList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            # skip_init: nn.Linear's default initialisation would draw from torch's global RNG
            layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out)
            with torch.no_grad():
                layer.weight.copy_(uniform((fan_out, fan_in), math.sqrt(6 / (fan_in + fan_out)),
                                            generator))
                layer.bias.zero_()
            self.layers.append(layer)

    def head(self, first: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """From the first layer's pre-activation (..., hidden[0]) to the outputs (..., outputs)."""
        x = first
        for layer in self.layers[1:]:
            x = F.relu(x)
            if self.training and self.dropout > 0:
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
                x = x * keep / (1 - self.dropout)
            x = layer(x)
        return x

    def user_part(self, user_vectors: torch.Tensor) -> torch.Tensor:
        return user_vectors @ self.layers[0].weight[:, : self.factors].T

    def item_part(self, item_vectors: torch.Tensor) -> torch.Tensor:
        return item_vectors @ self.layers[0].weight[:, self.factors :].T + self.layers[0].bias

    def forward(self, users: torch.Tensor, items: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs (n, outputs) and the squared norms of the looked-up embeddings (n,)."""
        # sparse=True: the tables' gradients hold only the batch's rows, for `LazyAdam.hook`.
        u = F.embedding(users, self.user, sparse=True)
        i = F.embedding(items, self.item, sparse=True)
        out = self.head(self.user_part(u) + self.item_part(i), generator)
        return out, (u.square().sum(1) + i.square().sum(1))


class TowerRecommender(Recommender):
    """Fit, score, fold in and persist an `EmbeddingTower`; subclasses say what the outputs mean.

    Fallback for unknown ids: an unknown user gets the mean of the trained user embeddings (an
    "average user"), an unknown movie the mean movie embedding, through the same network.
    """

    _fold_in_lr: ClassVar[float] = 0.05
    auto_cuda = False  # slower on a GPU than on a CPU (figures in `movierec.models.classic.shared`)

    # -- what subclasses define ---------------------------------------------------------------------
    def _outputs(self, train: Ratings) -> int:
        return 1

    def _targets(self, ratings: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(ratings, dtype=np.float32))

    def _data_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the target in the output's dtype: autograd on CUDA refuses a float32 target against a
        # float64 output in backward (a fold-in check runs the network in float64)
        return F.mse_loss(out[..., 0], target.to(out.dtype))

    def _to_rating(self, out: torch.Tensor) -> torch.Tensor:
        return out[..., 0]

    def _ratings_from(self, out: np.ndarray) -> np.ndarray:
        """`_to_rating` for numpy outputs (inference), float64."""
        return out[..., 0].astype(np.float64)

    def _output_gradient(self, out: np.ndarray, target: torch.Tensor) -> np.ndarray:
        """d(mean data loss) / d(outputs) for a fold-in user: out (k, outputs) -> same shape;
        ``target`` as `_targets` gives it."""
        return 2 * (out - target.numpy()[:, None]) / len(out)

    def _init_output(self, module: EmbeddingTower, train: Ratings) -> None:
        with torch.no_grad():
            module.layers[-1].bias.fill_(training_mean(train.rating))

    def _extra_metrics(self, out: torch.Tensor, target: torch.Tensor, prefix: str) -> dict[str, float]:
        return {f"{prefix}_rmse": rmse(self._to_rating(out), target)}

    def _split_valid(self, train: Ratings, valid: Ratings | None) -> tuple[np.ndarray, Ratings | None]:
        """(training row positions, validation ratings); the base uses all of train."""
        return np.arange(len(train)), valid

    # -- fitting ------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_common(self)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device, prefer_cuda=self.auto_cuda)
        generator, dropout_generator = generators(self.random_state, device)
        with torch_threads(self.threads):
            module = EmbeddingTower(train.n_users, train.n_items, self.factors,
                                     parse_hidden(self.hidden), self._outputs(train), self.dropout,
                                     generator)
            self._init_output(module, train)
            module.to(device)
            rows, valid = self._split_valid(train, valid)
            users = torch.as_tensor(train.user_index[rows].astype(np.int64), device=device)
            items = torch.as_tensor(train.item_index[rows].astype(np.int64), device=device)
            targets = self._targets(train.rating[rows]).to(device)
            checked = known_pairs_tensors(self, valid, device)
            valid_tensors = None
            if checked is not None and len(checked[0]):
                valid_tensors = (checked[0], checked[1], self._targets(checked[2].cpu().numpy()).to(device))
            patience = self._patience()
            if valid_tensors is None and patience is not None and current_replicas() is not None:
                # every replica stops on the replicas' carve-outs together, an empty one included
                valid_tensors = (users[:0], items[:0], targets[:0])

            reg = float(self.reg)
            dropout_generator = replica_generator(dropout_generator)  # each replica its own masks

            def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
                out, norms = module(batch[0], batch[1], dropout_generator)
                loss = self._data_loss(out, batch[2])
                if module.training and reg:
                    loss = loss + reg * norms.mean()
                return loss

            def evaluate(tensors: Sequence[torch.Tensor], prefix: str) -> dict[str, float]:
                was_training = module.training
                module.eval()
                with torch.no_grad():
                    out = in_chunks(lambda u, i: module(u, i)[0], tensors[0], tensors[1])
                    metrics = self._extra_metrics(out, tensors[2], prefix)
                module.train(was_training)
                return metrics

            self.history_ = []

            def on_epoch(event: str, record: dict[str, Any]) -> None:
                # over every replica's rows when several processes train (`pooled`)
                record.update(pooled(evaluate((users, items, targets), "train"), len(targets)))
                self.history_.append(record)
                if callback is not None:
                    callback(event, dict(record))

            replicas = current_replicas()  # the hooks may run on autograd's thread: ask here
            optimizers = [LazyAdam(table.data, self.learning_rate, replicas=replicas)
                          for table in (module.user, module.item)]
            handles = [table.register_post_accumulate_grad_hook(opt.hook)
                       for table, opt in zip((module.user, module.item), optimizers, strict=True)]
            try:
                train_minibatch(
                    module, batch_loss, (users, items, targets),
                    epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                    generator=generator, valid=valid_tensors, weight_decay=self.weight_decay,
                    valid_metrics=(lambda t: evaluate(t, "valid")) if valid_tensors else None,
                    early_stopping=patience if valid_tensors else None,
                    callback=on_epoch,
                )
            finally:
                for handle in handles:
                    handle.remove()
        self._use_module(module.cpu().eval())

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Neural: user and movie embeddings with gradients and Adam moments, the ratings as
        tensors with an epoch's shuffled copy, and torch's own pools."""
        return int(TORCH_BYTES + AUTOGRAD_BYTES + 48 * n_ratings
                   + trained_table_bytes(n_users + n_items, int(self.factors)))

    def _patience(self) -> int | None:
        return None

    def _use_module(self, module: EmbeddingTower) -> None:
        """Keep the trained network, and numpy copies of it for inference (no autograd needed, and
        numpy's per-call overhead is a fraction of torch's at one user's size)."""
        self.module_ = module
        def array(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().cpu().numpy().copy()

        users, items = array(module.user), array(module.item)
        first = module.layers[0]
        # Row -1 of each extended table is the fallback for unknown ids (index -1 picks it).
        self._users_ext = np.vstack([users, users.mean(0, keepdims=True)])
        self._items_ext = np.vstack([items, items.mean(0, keepdims=True)])
        self._user_weight = array(first.weight[:, : module.factors])  # (hidden[0], factors)
        self._item_weight = array(first.weight[:, module.factors :])
        self._first_bias = array(first.bias)
        self._layers = [(array(layer.weight), array(layer.bias)) for layer in module.layers[1:]]
        # Every movie's part of the first layer, computed once: scoring a user is then the rest.
        self._item_first = self._items_ext[:-1] @ self._item_weight.T + self._first_bias
        self._fold_in_weights = (self._user_weight.astype(np.float64),
                                 [(w.astype(np.float64), b.astype(np.float64)) for w, b in self._layers])

    def _head(self, first: np.ndarray) -> np.ndarray:
        """First-layer pre-activations (..., hidden[0]) -> outputs (..., outputs); eval mode."""
        x = first
        for weight, bias in self._layers:
            x = np.maximum(x, 0.0) @ weight.T + bias
        return x

    # -- scoring ------------------------------------------------------------------------------------
    def _outputs_for(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        out = []
        for s in range(0, len(user_index), EVAL_BATCH):
            u, i = user_index[s : s + EVAL_BATCH], item_index[s : s + EVAL_BATCH]
            out.append(self._head(self._users_ext[u] @ self._user_weight.T
                                  + self._items_ext[i] @ self._item_weight.T + self._first_bias))
        return np.concatenate(out) if out else np.empty((0, self._layers[-1][1].shape[0]))

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return self._ratings_from(self._outputs_for(user_index, item_index))

    def _scores_for_vectors(self, user_vectors: np.ndarray) -> np.ndarray:
        """Predicted ratings (n, n_items) for user embeddings (n, factors)."""
        n_items, width = self._item_first.shape
        widest = max(width, *(bias.shape[0] for _, bias in self._layers))
        step = max(1, SCORE_BLOCK // max(1, n_items * widest))
        user_first = user_vectors.astype(np.float32) @ self._user_weight.T  # (n, hidden[0])
        blocks = [self._ratings_from(self._head(user_first[s : s + step, None, :] + self._item_first[None]))
                  for s in range(0, len(user_vectors), step)]
        return np.concatenate(blocks) if blocks else np.empty((0, n_items))

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return self._scores_for_vectors(self._users_ext[user_index])

    def _user_gradient(self, p: np.ndarray, item_first: np.ndarray, target: torch.Tensor) -> np.ndarray:
        """Gradient, with respect to a user vector p (f,), of that user's training loss on k rated
        movies (mean data loss + reg |p|^2) with the network frozen: a forward pass and backprop by
        hand (float64). item_first: the movies' first-layer parts (k, hidden[0])."""
        user_weight, layers = self._fold_in_weights
        x, relus = item_first + user_weight @ p, []
        for weight, bias in layers:
            relus.append(np.maximum(x, 0.0))
            x = relus[-1] @ weight.T + bias
        d = self._output_gradient(x, target)
        for (weight, _), relu in zip(reversed(layers), reversed(relus), strict=True):
            d = (d @ weight) * (relu > 0)
        return d.sum(0) @ user_weight + 2 * float(self.reg) * p

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        vector = self._users_ext[-1].astype(np.float64)  # start from the average user
        if len(item_index):
            item_first = self._item_first[item_index].astype(np.float64)  # (k, hidden[0])
            target = self._targets(ratings)
            vector = adam_fold_in(lambda p: self._user_gradient(p, item_first, target), vector,
                                   self._fold_in_lr)
        return self._scores_for_vectors(vector[None, :])[0]

    # -- persistence --------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self.module_.item.detach().cpu().numpy()

    def _state(self) -> dict[str, np.ndarray]:
        return module_arrays(self.module_, "net.")

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        outputs = arrays[f"net.layers.{len(parse_hidden(self.hidden))}.bias"].shape[0]
        module = EmbeddingTower(len(self.users_), len(self.items_), self.factors,
                                 parse_hidden(self.hidden), outputs, self.dropout, torch.Generator())
        load_module_arrays(module, arrays, "net.")
        self._use_module(module.eval())


# -- 1. embedding-mlp -------------------------------------------------------------------------------
