"""Neural presets: five classic MovieLens network designs, each a `Recommender`.

============================  ===========================================  ==============================
name                          network                                      loss, training
============================  ===========================================  ==============================
``embedding-mlp``             [user emb | movie emb] -> ReLU layers        MSE, minibatch Adam
                              (dropout) -> one linear output (ml-100k)
``dot-bias-sigmoid``          sigmoid(p_u . q_i + b_u + b_i), scaled to    BCE on min-max scaled ratings,
                              the rating range (the Keras example)         Adam lr 1e-3, batch 64, 5 epochs
``rating-classifier``         [user emb | movie emb] -> ReLU layers ->     cross-entropy over the rating
                              softmax over the rating levels               levels; prediction = E[rating]
``mean-normalized-mf``        mu_i + x_i . w_u + b_u + b_i (the ML         squared error + L2, full-batch
                              course's mean-normalised CF)                 Adam through autograd
``embedding-regressor``       like embedding-mlp, smaller, early stopping  MSE, Adam, validation carved
                              on a (random or latest-in-time) carve-out    from train when none is given
============================  ===========================================  ==============================

Conventions shared by all five:

- Raw ids outside, dense indices inside (user ``u``, movie ``i``). Every hyperparameter is stored as
  given; `fit` validates them (`ConfigError` naming the parameter and the value).
- Randomness comes only from ``random_state``: a `torch.Generator` seeds the initial weights, the
  batch order and dropout, so the same seed gives the same model.
- Embedding tables are updated lazily: each step applies Adam to the rows its batch touched
  (`_LazyAdam`, TensorFlow's LazyAdam), not to every row of the table. A dense update over a
  10,000-row table costs more than the rest of a batch-64 step, and rows untouched for ~800 steps
  drive dense Adam's first moment into float denormals, which are two orders of magnitude slower on
  a CPU. On the Keras recipe the lazy and the dense update give the same validation BCE (0.5923 vs
  0.5924, seed 0). Dense layers (and the full-batch MF) use `train_minibatch`'s own Adam.
- ``threads`` sets torch's CPU threads while fitting (restored after); one thread is fastest for
  these small steps, and far faster than two when the machine's cores are shared.
- ``history_``: one record per epoch, the `train_minibatch` keys (``epoch``, ``train_loss``, ``lr``,
  ``seconds``, ``valid_loss`` when there is validation data) plus ``train_rmse`` (training rows,
  after the epoch) and ``valid_rmse``; the same record goes to ``callback("epoch", record)``.
- Inference (`predict`, top-N, fold-in) runs on the CPU whatever ``device`` trained the model.
- Fold-in (`recommend_for_ratings`): a fresh user vector (and user bias where the model has one) is
  fitted to the new user's ratings by `_FOLD_IN_STEPS` Adam steps with every movie parameter and
  network weight frozen, then all movies are scored; a few milliseconds.
- Unknown ids in `predict`: each preset documents its fallback (an "average" embedding through the
  network, a zero vector, or a mean), so every pair gets a number.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError, DataError
from movierec.models.base import Callback, Recommender, check_int, check_number
from movierec.models.train import (
    known_pairs_tensors,
    load_module_arrays,
    module_arrays,
    resolve_device,
    torch_threads,
    train_minibatch,
)

__all__ = [
    "DotBiasSigmoid",
    "EmbeddingMLP",
    "EmbeddingRegressor",
    "MeanNormalizedMF",
    "RatingClassifier",
]

_FOLD_IN_STEPS = 100
_EVAL_BATCH = 16384
_SCORE_BLOCK = 1 << 22  # floats per block when scoring many users x all movies through a network


# -- hyperparameter checks ---------------------------------------------------------------------------
def _check_fraction(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a fraction 0 <= x < 1, got {value!r}")


def _parse_hidden(value: Any) -> tuple[int, ...]:
    """``"64,32"``, ``(64, 32)`` or ``64`` -> ``(64, 32)``; layer sizes of the ReLU stack.

    Raises:
        ConfigError: anything but one or more ints >= 1.
    """
    try:
        if isinstance(value, str):
            sizes = tuple(int(part) for part in value.replace(" ", "").split(","))
        elif isinstance(value, int | np.integer) and not isinstance(value, bool):
            sizes = (int(value),)
        else:
            sizes = tuple(value)
            if any(isinstance(s, bool) or not isinstance(s, int | np.integer) for s in sizes):
                raise ValueError(value)
            sizes = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden must be layer sizes such as '64,32' (ints >= 1), got {value!r}")
    return sizes


def _check_common(model: Recommender) -> None:
    """Checks of the hyperparameters several presets share (those the model has)."""
    params = model.get_params()
    for name in ("factors", "epochs", "batch_size"):
        if name in params:
            check_int(name, params[name], 1)
    if "learning_rate" in params:
        check_number("learning_rate", params["learning_rate"], strict=True)
    for name in ("reg", "weight_decay"):
        if name in params:
            check_number(name, params[name])
    if "dropout" in params:
        _check_fraction("dropout", params["dropout"])
    if "hidden" in params:
        _parse_hidden(params["hidden"])
    check_int("random_state", params["random_state"], 0)
    if params["threads"] is not None:
        check_int("threads", params["threads"], 1)
    resolve_device(params["device"])  # raises ConfigError naming the device


# -- plumbing ---------------------------------------------------------------------------------------
def _generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(CPU generator for initial weights and batch order, generator on ``device`` for dropout)."""
    cpu = torch.Generator().manual_seed(int(seed))
    on_device = cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(int(seed) + 1)
    return cpu, on_device


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def _he_normal(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Keras' he_normal for an embedding table: fan_in = its rows; a normal truncated at two sd,
    scaled so that the truncated draw has sd sqrt(2 / fan_in)."""
    sd = math.sqrt(2.0 / shape[0]) / 0.87962566103423978
    out = torch.empty(shape)
    nn.init.trunc_normal_(out, 0.0, sd, -2 * sd, 2 * sd, generator=generator)
    return out


class _LazyAdam:
    """Adam on the rows of a table that a step touches (TensorFlow's LazyAdam).

    Keras' update rule (epsilon added to the uncorrected sqrt(v)); ``l2`` adds Keras' L2 regulariser
    gradient ``2 * l2 * w`` to each touched row once per step, on the columns ``l2_columns`` marks.
    Rows may repeat in a step: their gradients are summed first, so a row gets one update.
    ``index_select`` / ``index_copy_`` rather than ``table[rows]``: a third of the per-call cost.
    """

    def __init__(self, table: torch.Tensor, learning_rate: float, l2: float = 0.0,
                 l2_columns: torch.Tensor | None = None, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7) -> None:
        self.table = table
        self.learning_rate, self.l2, self.eps = float(learning_rate), float(l2), eps
        self.l2_columns = l2_columns
        self.beta1, self.beta2 = betas
        rows, width = table.shape
        self.moments = torch.zeros((rows, 2, width), dtype=table.dtype, device=table.device)
        self.sums = torch.zeros_like(table)
        self.steps = 0

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grads: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """One update. rows: (n,) row indices, repeats allowed; grads: (n, width); weight: the
        rows' current values if the caller already gathered them."""
        self.steps += 1
        alpha = self.learning_rate * math.sqrt(1 - self.beta2**self.steps) / (1 - self.beta1**self.steps)
        self.sums.index_add_(0, rows, grads)
        grad = self.sums.index_select(0, rows)
        self.sums.index_fill_(0, rows, 0.0)
        if weight is None:
            weight = self.table.index_select(0, rows)
        if self.l2:
            penalty = weight if self.l2_columns is None else weight * self.l2_columns
            grad.add_(penalty, alpha=2 * self.l2)
        moments = self.moments.index_select(0, rows)  # (n, 2, width): m, v
        moments[:, 0].lerp_(grad, 1 - self.beta1)
        moments[:, 1].lerp_(grad.square_(), 1 - self.beta2)
        self.moments.index_copy_(0, rows, moments)
        # Repeated rows compute identical values, so writing them all is the same as writing one.
        update = torch.addcdiv(weight, moments[:, 0], moments[:, 1].sqrt().add_(self.eps), value=-alpha)
        self.table.index_copy_(0, rows, update)

    def hook(self, param: torch.Tensor) -> None:
        """`register_post_accumulate_grad_hook` target for a table looked up with ``sparse=True``:
        updates the rows and clears the gradient, so the trainer's dense optimizer skips the table."""
        grad = param.grad
        if grad is not None:
            self.step(grad._indices()[0], grad._values())
            param.grad = None


def _adam_fold_in(gradient: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
                  learning_rate: float, steps: int = _FOLD_IN_STEPS) -> np.ndarray:
    """Minimise a new user's loss over its parameters (a flat vector) by ``steps`` Adam steps.

    ``gradient(x)`` returns the loss gradient at ``x``. numpy, float64: on vectors this small,
    torch's per-call overhead (autograd, `torch.optim`) would be most of the time.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x = np.array(start, dtype=np.float64)
    m, v = np.zeros_like(x), np.zeros_like(x)
    for t in range(1, steps + 1):
        g = gradient(x)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        x -= learning_rate * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (np.sqrt(v) + eps)
    return x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _rmse(predicted: torch.Tensor, target: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((predicted.double() - target.double()) ** 2)))


def _in_chunks(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor,
               size: int = _EVAL_BATCH) -> torch.Tensor:
    n = len(tensors[0])
    if n == 0:
        return fn(*tensors)
    return torch.cat([fn(*(t[s : s + size] for t in tensors)) for s in range(0, n, size)])


# -- the embedding MLP shared by presets 1, 3 and 5 ------------------------------------------------
class _EmbeddingTower(nn.Module):
    """[user embedding | movie embedding] -> (Linear -> ReLU -> dropout) per hidden size -> Linear.

    Keras' defaults: embeddings uniform(-0.05, 0.05), dense weights Glorot-uniform, zero biases.
    The first layer's weight splits into a user half and a movie half, so a movie's contribution
    to it can be computed once and reused (scoring every movie, fold-in).
    """

    def __init__(self, n_users: int, n_items: int, factors: int, hidden: tuple[int, ...],
                 outputs: int, dropout: float, generator: torch.Generator) -> None:
        super().__init__()
        self.factors, self.dropout = factors, dropout
        self.user = nn.Parameter(_uniform((n_users, factors), 0.05, generator))
        self.item = nn.Parameter(_uniform((n_items, factors), 0.05, generator))
        sizes = [2 * factors, *hidden, outputs]
        self.layers = nn.ModuleList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            # skip_init: nn.Linear's default initialisation would draw from torch's global RNG
            layer = torch.nn.utils.skip_init(nn.Linear, fan_in, fan_out)
            with torch.no_grad():
                layer.weight.copy_(_uniform((fan_out, fan_in), math.sqrt(6 / (fan_in + fan_out)),
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
        # sparse=True: the tables' gradients hold only the batch's rows, for `_LazyAdam.hook`.
        u = F.embedding(users, self.user, sparse=True)
        i = F.embedding(items, self.item, sparse=True)
        out = self.head(self.user_part(u) + self.item_part(i), generator)
        return out, (u.square().sum(1) + i.square().sum(1))


class _TowerRecommender(Recommender):
    """Fit, score, fold in and persist an `_EmbeddingTower`; subclasses say what the outputs mean.

    Fallback for unknown ids: an unknown user gets the mean of the trained user embeddings (an
    "average user"), an unknown movie the mean movie embedding, through the same network.
    """

    _fold_in_lr: ClassVar[float] = 0.05

    # -- what subclasses define ---------------------------------------------------------------------
    def _outputs(self, train: Ratings) -> int:
        return 1

    def _targets(self, ratings: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(ratings, dtype=np.float32))

    def _data_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out[..., 0], target)

    def _to_rating(self, out: torch.Tensor) -> torch.Tensor:
        return out[..., 0]

    def _ratings_from(self, out: np.ndarray) -> np.ndarray:
        """`_to_rating` for numpy outputs (inference), float64."""
        return out[..., 0].astype(np.float64)

    def _output_gradient(self, out: np.ndarray, target: torch.Tensor) -> np.ndarray:
        """d(mean data loss) / d(outputs) for a fold-in user: out (k, outputs) -> same shape;
        ``target`` as `_targets` gives it."""
        return 2 * (out - target.numpy()[:, None]) / len(out)

    def _init_output(self, module: _EmbeddingTower, train: Ratings) -> None:
        with torch.no_grad():
            module.layers[-1].bias.fill_(float(train.rating.mean()))

    def _extra_metrics(self, out: torch.Tensor, target: torch.Tensor, prefix: str) -> dict[str, float]:
        return {f"{prefix}_rmse": _rmse(self._to_rating(out), target)}

    def _split_valid(self, train: Ratings, valid: Ratings | None) -> tuple[np.ndarray, Ratings | None]:
        """(training row positions, validation ratings); the base uses all of train."""
        return np.arange(len(train)), valid

    # -- fitting ------------------------------------------------------------------------------------
    def _check_params(self) -> None:
        _check_common(self)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        generator, dropout_generator = _generators(self.random_state, device)
        with torch_threads(self.threads):
            module = _EmbeddingTower(train.n_users, train.n_items, self.factors,
                                     _parse_hidden(self.hidden), self._outputs(train), self.dropout,
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

            reg = float(self.reg)

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
                    out = _in_chunks(lambda u, i: module(u, i)[0], tensors[0], tensors[1])
                    metrics = self._extra_metrics(out, tensors[2], prefix)
                module.train(was_training)
                return metrics

            self.history_ = []

            def on_epoch(event: str, record: dict[str, Any]) -> None:
                record.update(evaluate((users, items, targets), "train"))
                self.history_.append(record)
                if callback is not None:
                    callback(event, dict(record))

            optimizers = [_LazyAdam(table.data, self.learning_rate) for table in (module.user,
                                                                                     module.item)]
            handles = [table.register_post_accumulate_grad_hook(opt.hook)
                       for table, opt in zip((module.user, module.item), optimizers, strict=True)]
            try:
                train_minibatch(
                    module, batch_loss, (users, items, targets),
                    epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                    generator=generator, valid=valid_tensors, weight_decay=self.weight_decay,
                    valid_metrics=(lambda t: evaluate(t, "valid")) if valid_tensors else None,
                    early_stopping=self._patience() if valid_tensors else None,
                    callback=on_epoch,
                )
            finally:
                for handle in handles:
                    handle.remove()
        self._use_module(module.cpu().eval())

    def _patience(self) -> int | None:
        return None

    def _use_module(self, module: _EmbeddingTower) -> None:
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
        for s in range(0, len(user_index), _EVAL_BATCH):
            u, i = user_index[s : s + _EVAL_BATCH], item_index[s : s + _EVAL_BATCH]
            out.append(self._head(self._users_ext[u] @ self._user_weight.T
                                  + self._items_ext[i] @ self._item_weight.T + self._first_bias))
        return np.concatenate(out) if out else np.empty((0, self._layers[-1][1].shape[0]))

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return self._ratings_from(self._outputs_for(user_index, item_index))

    def _scores_for_vectors(self, user_vectors: np.ndarray) -> np.ndarray:
        """Predicted ratings (n, n_items) for user embeddings (n, factors)."""
        n_items, width = self._item_first.shape
        widest = max(width, *(bias.shape[0] for _, bias in self._layers))
        step = max(1, _SCORE_BLOCK // max(1, n_items * widest))
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
            vector = _adam_fold_in(lambda p: self._user_gradient(p, item_first, target), vector,
                                   self._fold_in_lr)
        return self._scores_for_vectors(vector[None, :])[0]

    # -- persistence --------------------------------------------------------------------------------
    def _item_vectors(self) -> np.ndarray:
        return self.module_.item.detach().cpu().numpy()

    def _state(self) -> dict[str, np.ndarray]:
        return module_arrays(self.module_, "net.")

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        outputs = arrays[f"net.layers.{len(_parse_hidden(self.hidden))}.bias"].shape[0]
        module = _EmbeddingTower(len(self.users_), len(self.items_), self.factors,
                                 _parse_hidden(self.hidden), outputs, self.dropout, torch.Generator())
        load_module_arrays(module, arrays, "net.")
        self._use_module(module.eval())


# -- 1. embedding-mlp -------------------------------------------------------------------------------
class EmbeddingMLP(_TowerRecommender):
    """The ml-100k embedding MLP: [user emb | movie emb] -> ReLU layers with dropout -> linear, MSE.

    Args:
        factors: embedding size of users and movies.
        hidden: ReLU layer sizes, ``"64,32"`` or a tuple.
        dropout: dropout rate after each ReLU layer (training only).
        epochs, batch_size, learning_rate: minibatch Adam; a fixed number of epochs.
        reg: L2 penalty ``reg * (|e_u|^2 + |e_i|^2)`` per example on the looked-up embeddings.
        weight_decay: L2 on the dense layers (Adam's weight decay). Without it the layers grow as
            the embeddings shrink, and ``reg`` alone does not regularise.
        random_state: seed of initial weights, batch order and dropout.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"`` or ``"cuda[:N]"``.
        threads: torch CPU threads while fitting (None: leave torch's setting).

    The output layer's bias starts at the training mean, so the network learns deviations from it.
    Validation data, when given, is only monitored (``valid_loss``, ``valid_rmse`` in ``history_``).
    Unknown ids: the average user / movie embedding through the network.
    """

    name = "embedding-mlp"

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


# -- 2. dot-bias-sigmoid ----------------------------------------------------------------------------
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
    fallback, as Keras' validation over the test part does.

    Unknown ids: a zero vector and a zero bias (an untrained row of the example's tables, shrunk by
    its regulariser): an unknown user gets low + range * sigmoid(b_i), an unknown movie
    low + range * sigmoid(b_u), both unknown the middle of the scale.
    """

    name = "dot-bias-sigmoid"
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
        _check_common(self)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        generator, _ = _generators(self.random_state, device)
        n_users, n_items, k = train.n_users, train.n_items, self.factors
        low, high = self.scale_
        with torch_threads(self.threads):
            # One table, rows: users, movies, then the unknown-user and unknown-movie rows.
            # User rows are [p_u, b_u, 1] and movie rows [q_i, 1, b_i], so one dot product of two
            # rows is p_u . q_i + b_u + b_i. The constant columns get no gradient (`grad_mask`).
            table = torch.zeros(n_users + n_items + 2, k + 2)
            users, items = slice(0, n_users), slice(n_users, n_users + n_items)
            table[users, :k] = _he_normal((n_users, k), generator)
            table[items, :k] = _he_normal((n_items, k), generator)
            table[users, k] = _uniform((n_users,), 0.05, generator)  # b_u
            table[users, k + 1] = 1.0
            table[items, k] = 1.0
            table[items, k + 1] = _uniform((n_items,), 0.05, generator)  # b_i
            table[-2, k + 1] = 1.0  # unknown user: [0, 0, 1]
            table[-1, k] = 1.0  # unknown movie: [0, 1, 0]
            table = table.to(device)
            grad_mask = torch.ones(2, 1, k + 2, device=device)
            grad_mask[0, 0, k + 1] = 0
            grad_mask[1, 0, k] = 0
            l2_columns = torch.ones(k + 2, device=device)
            l2_columns[k:] = 0
            adam = _LazyAdam(table, self.learning_rate, self.reg, l2_columns)

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
                z = torch.cat([logits(rows[:, s : s + _EVAL_BATCH])
                               for s in range(0, rows.shape[1], _EVAL_BATCH)])
                return {
                    f"{prefix}_loss": float(F.binary_cross_entropy_with_logits(z, y)),
                    f"{prefix}_rmse": _rmse(torch.sigmoid(z) * (high - low), y * (high - low)),
                }

            self.history_ = []
            n, size = len(targets), self.batch_size
            for epoch in range(1, self.epochs + 1):
                start = time.perf_counter()
                order = torch.randperm(n, generator=generator).to(device)
                epoch_pairs, epoch_targets = pairs[:, order], targets[order]
                for first in range(0, n, size):
                    rows = epoch_pairs[:, first : first + size].reshape(-1)  # user rows, movie rows
                    flat = table.index_select(0, rows)
                    pair = flat.view(2, -1, k + 2)
                    z = torch.linalg.vecdot(pair[0], pair[1])
                    # d BCE(sigmoid(z), y) / dz = sigmoid(z) - y, averaged over the batch
                    dz = torch.sigmoid(z).sub_(epoch_targets[first : first + size]).div_(len(z))
                    grads = pair.flip(0).mul_(dz[:, None]).mul_(grad_mask)
                    adam.step(rows, grads.view(-1, k + 2), flat)
                record: dict[str, Any] = {"epoch": epoch, "epochs": self.epochs}
                with torch.no_grad():
                    record.update(metrics(pairs, targets, "train"))
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

    # -- scoring (numpy: a dot product per pair needs no network) ------------------------------------
    def _to_rating(self, logits: np.ndarray) -> np.ndarray:
        low, high = self.scale_
        return low + (high - low) * _sigmoid(logits.astype(np.float64))

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
                dz = (_sigmoid(q @ x[:k] + x[k] + b_i) - y) / len(y)
                return np.append(dz @ q + 2 * reg * x[:k], dz.sum())

            x = _adam_fold_in(gradient, x, self._fold_in_lr)
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
class RatingClassifier(_TowerRecommender):
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
        self.levels_ = torch.as_tensor(np.unique(train.rating).astype(np.float32))
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
        return _softmax(out.astype(np.float64)) @ self.levels_.numpy().astype(np.float64)

    def _output_gradient(self, out: np.ndarray, target: torch.Tensor) -> np.ndarray:
        probs = _softmax(out)
        probs[np.arange(len(out)), target.numpy()] -= 1.0
        return probs / len(out)

    def _init_output(self, module: _EmbeddingTower, train: Ratings) -> None:
        counts = np.bincount(self._targets(train.rating).numpy(), minlength=len(self.levels_))
        with torch.no_grad():
            module.layers[-1].bias.copy_(torch.as_tensor(np.log(counts / counts.sum()), dtype=torch.float32))

    def _extra_metrics(self, out: torch.Tensor, target: torch.Tensor, prefix: str) -> dict[str, float]:
        levels = self.levels_.to(out.device)
        truth = levels[target]
        metrics = {f"{prefix}_rmse": _rmse(self._to_rating(out), truth)}
        if prefix == "valid":
            best = out.argmax(dim=-1)
            metrics["valid_argmax_rmse"] = _rmse(levels[best], truth)
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
        _check_common(self)
        check_number("init_sd", self.init_sd)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        generator, _ = _generators(self.random_state, device)
        users = torch.as_tensor(train.user_index.astype(np.int64))
        items = torch.as_tensor(train.item_index.astype(np.int64))
        ratings = torch.as_tensor(np.array(train.rating))
        with torch_threads(self.threads):
            net = _MeanNormalizedNet(train.n_users, train.n_items, self.factors, self.init_sd, generator)
            net.item_mean.copy_(torch.as_tensor(
                np.bincount(train.item_index, train.rating, train.n_items)
                / np.maximum(train.item_counts, 1), dtype=torch.float32))
            net.to(device)
            reg = float(self.reg)
            squared_error = [0.0]

            def batch_loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
                error = net(batch[0], batch[1]) - batch[2]
                cost = 0.5 * error.square().sum()
                if net.training:
                    squared_error[0] = float(error.detach().square().mean())
                    cost = cost + reg / 2 * (net.user_factors.square().sum()
                                             + net.item_factors.square().sum())
                return cost / len(error)  # J / n: the same minimiser, and a loss of readable size

            def metrics(tensors: Sequence[torch.Tensor]) -> dict[str, float]:
                return {"valid_rmse": _rmse(net(tensors[0], tensors[1]), tensors[2])}

            self.history_ = []

            def on_epoch(event: str, record: dict[str, Any]) -> None:
                # Full batch: the step's own forward pass already gave the training error.
                record["train_rmse"] = math.sqrt(squared_error[0])
                self.history_.append(record)
                if callback is not None:
                    callback(event, dict(record))

            train_tensors = (users.to(device), items.to(device), ratings.to(device))
            valid_tensors = known_pairs_tensors(self, valid, device)
            if valid_tensors is not None and not len(valid_tensors[0]):
                valid_tensors = None
            train_minibatch(net, batch_loss, train_tensors, epochs=self.epochs, batch_size=len(train),
                            learning_rate=self.learning_rate, generator=generator,
                            valid=valid_tensors, valid_metrics=metrics if valid_tensors else None,
                            callback=on_epoch)
        net = net.cpu()
        self.user_factors_, self.item_factors_, self.user_bias_, self.item_bias_, self.item_mean_ = (
            t.detach().numpy().copy() for t in (net.user_factors, net.item_factors, net.user_bias,
                                                  net.item_bias, net.item_mean))
        self.global_mean_ = float(train.rating.mean())

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

            x = _adam_fold_in(gradient, x, self._fold_in_lr)
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
class EmbeddingRegressor(EmbeddingMLP):
    """A smaller embedding MLP (MSE, Adam) with early stopping on a validation part.

    The validation part is always carved out of train (``valid`` passed to `fit` is ignored: it
    may be a test set, and early stopping chooses weights): ``valid_fraction`` of the training rows,
    random (seeded by ``random_state``), or with ``temporal_valid=True`` the latest ratings by
    timestamp (a time-ordered split: the model is stopped on the future, as it will be used).
    Training stops after ``patience`` epochs without a lower validation MSE and keeps the best
    epoch's weights. ``valid_fraction=0``: a fixed ``epochs`` on all of train.

    Args:
        valid_fraction: share of train held out for early stopping.
        temporal_valid: hold out the latest ratings instead of random ones (needs timestamps).
        patience: epochs without improvement before stopping.
        Others: as `EmbeddingMLP`.

    Raises (from fit): DataError if ``temporal_valid`` is set and train has no timestamps.
    """

    name = "embedding-regressor"

    def __init__(self, factors: int = 16, hidden: str | Sequence[int] = "32", dropout: float = 0.0,
                 epochs: int = 30, batch_size: int = 1024, learning_rate: float = 3e-3,
                 reg: float = 1e-3, weight_decay: float = 1e-3, valid_fraction: float = 0.1,
                 temporal_valid: bool = False, patience: int = 2, random_state: int = 0,
                 device: str = "auto", threads: int | None = 1) -> None:
        super().__init__(factors=factors, hidden=hidden, dropout=dropout, epochs=epochs,
                         batch_size=batch_size, learning_rate=learning_rate, reg=reg,
                         weight_decay=weight_decay, random_state=random_state, device=device,
                         threads=threads)
        self.valid_fraction = valid_fraction
        self.temporal_valid = temporal_valid
        self.patience = patience

    def _check_params(self) -> None:
        super()._check_params()
        _check_fraction("valid_fraction", self.valid_fraction)
        if not isinstance(self.temporal_valid, bool | np.bool_):
            raise ConfigError(f"temporal_valid must be true or false, got {self.temporal_valid!r}")
        check_int("patience", self.patience, 1)

    def _patience(self) -> int | None:
        return int(self.patience)

    def _split_valid(self, train: Ratings, valid: Ratings | None) -> tuple[np.ndarray, Ratings | None]:
        # Early stopping chooses weights, so it watches a part carved out of train and never the
        # caller's `valid`, which may be a test set (see Recommender.fit).
        n = len(train)
        held = math.floor(n * self.valid_fraction)
        if held == 0:
            return np.arange(n), None
        if self.temporal_valid:
            if train.timestamp is None:
                raise DataError("temporal_valid needs timestamps, and these ratings have none")
            order = np.argsort(train.timestamp, kind="stable")
        else:
            order = np.random.default_rng(self.random_state).permutation(n)
        keep = np.sort(order[: n - held])
        return keep, train.take(np.sort(order[n - held :]), reindex=False)
