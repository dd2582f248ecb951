"""What the five classic network presets share (the table of presets is in `movierec.models.classic`).

Conventions shared by all five:

- Raw ids outside, dense indices inside (user ``u``, movie ``i``). Every hyperparameter is stored as
  given; `fit` validates them (`ConfigError` naming the parameter and the value).
- Randomness comes only from ``random_state``: a `torch.Generator` seeds the initial weights, the
  batch order and dropout, so the same seed gives the same model.
- Embedding tables are updated lazily: each step applies Adam to the rows its batch touched
  (`LazyAdam`, TensorFlow's LazyAdam), not to every row of the table. A dense update over a
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
- ``device="auto"`` trains on the CPU for dot-bias-sigmoid, embedding-mlp, embedding-regressor and
  rating-classifier (``auto_cuda = False``): their small embedding steps are slower on a GPU. On an
  H200 against the same machine's 16 CPU cores, ml-latest-small at default settings (2026-12-04):
  dot-bias-sigmoid 7.93 s vs 1.31 s, embedding-mlp 2.90 vs 2.31, embedding-regressor 1.61 vs 0.71,
  rating-classifier 3.42 vs 2.64; mean-normalized-mf, a full-batch model, 0.82 vs 3.08 s (3.8x
  faster), so "auto" takes the GPU for it. ``device="cuda"`` still trains any of them there.
- Fold-in (`recommend_for_ratings`): a fresh user vector (and user bias where the model has one) is
  fitted to the new user's ratings by `FOLD_IN_STEPS` Adam steps with every movie parameter and
  network weight frozen, then all movies are scored; a few milliseconds.
- Unknown ids in `predict`: each preset documents its fallback (an "average" embedding through the
  network, a zero vector, or a mean), so every pair gets a number.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from movierec.models.core.checks import check_fraction, check_int, check_number, parse_hidden
from movierec.models.core.recommender import Recommender
from movierec.models.core.train import Replicas, resolve_device

__all__ = ["EVAL_BATCH", "FOLD_IN_STEPS", "SCORE_BLOCK", "LazyAdam", "adam_fold_in", "check_common",
           "generators", "he_normal", "in_chunks", "rmse", "sigmoid", "softmax", "uniform"]

FOLD_IN_STEPS = 100
EVAL_BATCH = 16384
SCORE_BLOCK = 1 << 22  # floats per block when scoring many users x all movies through a network


def check_common(model: Recommender) -> None:
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
        check_fraction("dropout", params["dropout"])
    if "hidden" in params:
        parse_hidden(params["hidden"])
    check_int("random_state", params["random_state"], 0)
    if params["threads"] is not None:
        check_int("threads", params["threads"], 1)
    resolve_device(params["device"])  # raises ConfigError naming the device


def generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """(CPU generator for initial weights and batch order, generator on ``device`` for dropout)."""
    cpu = torch.Generator().manual_seed(int(seed))
    on_device = cpu if device.type == "cpu" else torch.Generator(device=device).manual_seed(int(seed) + 1)
    return cpu, on_device


def uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def he_normal(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Keras' he_normal for an embedding table: fan_in = its rows; a normal truncated at two sd,
    scaled so that the truncated draw has sd sqrt(2 / fan_in)."""
    sd = math.sqrt(2.0 / shape[0]) / 0.87962566103423978
    out = torch.empty(shape)
    nn.init.trunc_normal_(out, 0.0, sd, -2 * sd, 2 * sd, generator=generator)
    return out


class LazyAdam:
    """Adam on the rows of a table that a step touches (TensorFlow's LazyAdam).

    Keras' update rule (epsilon added to the uncorrected sqrt(v)); ``l2`` adds Keras' L2 regulariser
    gradient ``2 * l2 * w`` to each touched row once per step, on the columns ``l2_columns`` marks.
    Rows may repeat in a step: their gradients are summed first, so a row gets one update.
    ``index_select`` / ``index_copy_`` rather than ``table[rows]``: a third of the per-call cost.

    ``replicas`` (`current_replicas`, data-parallel training): `hook` first puts together every
    replica's gradient of the table, so each replica applies the global batch's update.
    """

    def __init__(self, table: torch.Tensor, learning_rate: float, l2: float = 0.0,
                 l2_columns: torch.Tensor | None = None, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7, replicas: Replicas | None = None) -> None:
        self.table = table
        self.replicas = replicas
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
            rows, values = grad._indices()[0], grad._values()
            if self.replicas is not None:
                # an embedding's sparse gradient holds one entry per looked-up row of the batch, so
                # its length is the batch's rows, and its values are this replica's batch mean
                rows, values = self.replicas.combine_sparse(rows, values, len(rows))
            self.step(rows, values)
            param.grad = None


def adam_fold_in(gradient: Callable[[np.ndarray], np.ndarray], start: np.ndarray,
                  learning_rate: float, steps: int = FOLD_IN_STEPS) -> np.ndarray:
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


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rmse(predicted: torch.Tensor, target: torch.Tensor) -> float:
    return float(torch.sqrt(torch.mean((predicted.double() - target.double()) ** 2)))


def in_chunks(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor,
               size: int = EVAL_BATCH) -> torch.Tensor:
    n = len(tensors[0])
    if n == 0:
        return fn(*tensors)
    return torch.cat([fn(*(t[s : s + size] for t in tensors)) for s in range(0, n, size)])
