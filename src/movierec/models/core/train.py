"""The minibatch trainer every gradient-trained model uses, and the torch plumbing they share.

`train_minibatch` runs epochs over shuffled minibatches with Adam, AdamW, SGD or Adagrad, an optional
learning-rate schedule, optional early stopping on a validation set (restoring the best weights), and
returns the per-epoch history it also reports through the callback. Randomness comes only from the
`torch.Generator` passed in, so the same seed gives the same model.

The loop runs over batches, never over ratings: a batch is a slice of index tensors.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.core.recommender import Callback, Recommender

__all__ = [
    "OPTIMIZERS",
    "Replicas",
    "check_schedule",
    "current_replicas",
    "gathered",
    "known_pairs_tensors",
    "load_module_arrays",
    "module_arrays",
    "pooled",
    "record_epoch",
    "replica_generator",
    "replica_steps",
    "resolve_device",
    "start_replicas",
    "summed",
    "torch_threads",
    "train_minibatch",
    "training_mean",
    "training_replicas",
]

OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad")


def resolve_device(device: str | torch.device | None, *, strict: bool = True, prefer_cuda: bool = True
                   ) -> torch.device:
    """``"auto"``/None -> CUDA when available (and ``prefer_cuda``), else CPU; anything else as torch
    reads it.

    With ``strict=False`` a CUDA device on a machine without CUDA falls back to the CPU (a model
    trained on a GPU still scores on a CPU-only machine). A model that is slower on a GPU than on a
    CPU passes ``prefer_cuda=False`` (its ``auto_cuda``), so "auto" keeps it on the CPU.

    Raises:
        ConfigError: for an unknown device, or (strict) CUDA asked for where there is none.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if prefer_cuda and torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        if not strict:
            return torch.device("cpu")
        raise ConfigError(f"device {device!r} asked for, but CUDA is not available here")
    return resolved


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count at ``threads`` (None: leave it), restoring
    the caller's count afterwards."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Replicas(Protocol):
    """What `train_minibatch` asks of a data-parallel launch (`movierec.distributed` provides one):
    the model code is the same whether one process trains or several."""

    rank: int  # this replica's place among them, 0..count-1

    def shard(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """The row-aligned training tensors of this replica's shard, padded (by repeating its first
        rows) to as many rows as the largest replica's, so every replica takes the same steps."""

    def batch_size(self, batch_size: int) -> int:
        """This replica's share of a global batch of ``batch_size`` rows."""

    def start(self, module: nn.Module) -> None:
        """Make every replica's weights equal before the first step."""

    def reduce_gradients(self, module: nn.Module, rows: int) -> None:
        """Replace each gradient by the row-weighted mean over the replicas (``rows``: this batch)."""

    def reduce_sum(self, total: float, count: int) -> tuple[float, int]:
        """Sums of an epoch's figure and its row count over the replicas."""

    def combine_sparse(self, indices: torch.Tensor, values: torch.Tensor, rows: int | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """A row-sparse table gradient (or update) put together from every replica's piece.

        ``indices`` (n,) are table rows, repeats allowed; ``values`` (n, width) their gradients.
        Returns every replica's pieces concatenated in replica order (the same on every replica),
        meant to be summed per row (``index_add_``). With ``rows`` (this replica's batch rows) each
        replica's values are scaled by its share of the global batch's rows, so a per-replica mean
        over its batch becomes the mean over the global batch; with None they are summed as given.
        Every replica must call this at the same point (it is a collective).
        """

    def total(self, values: np.ndarray) -> np.ndarray:
        """``values`` (float64, the same shape on every replica) summed over the replicas."""

    def gather(self, values: np.ndarray) -> np.ndarray:
        """Every replica's ``values`` (1-d, any length) concatenated in replica order."""

    def agree(self, stop: bool) -> bool:
        """The first replica's ``stop`` on every replica (early stopping decided once)."""


_REPLICAS: contextvars.ContextVar[Replicas | None] = contextvars.ContextVar("replicas", default=None)


@contextlib.contextmanager
def training_replicas(replicas: Replicas | None) -> Iterator[None]:
    """Run `train_minibatch` calls in the block as one replica of several (None: a single process)."""
    token = _REPLICAS.set(replicas)
    try:
        yield
    finally:
        _REPLICAS.reset(token)


def current_replicas() -> Replicas | None:
    """The replicas `training_replicas` set around this call (None: a single process).

    A model whose training loop is its own (not `train_minibatch`) asks for them once, in the thread
    that fits it, and keeps them for hooks that run elsewhere (autograd's CUDA thread)."""
    return _REPLICAS.get()


def summed(values: np.ndarray) -> np.ndarray:
    """``values`` summed over the replicas' shards of the training data (float64); in one process
    ``values`` as given. For the figures a model derives from all its training ratings (their
    count, per-movie sums, ratings per user) where each replica holds only its shard."""
    replicas = _REPLICAS.get()
    return values if replicas is None else replicas.total(np.asarray(values, dtype=np.float64))


def training_mean(values: np.ndarray) -> float:
    """The mean of ``values`` (one per training rating) over every replica's shard; in one process
    ``values.mean()`` itself (in its own dtype, so results stay those of earlier releases)."""
    replicas = _REPLICAS.get()
    if replicas is None:
        return float(values.mean())
    total, count = replicas.total(np.array([values.sum(dtype=np.float64), len(values)]))
    return float(total / count) if count else math.nan


def pooled(figures: dict[str, float], count: int) -> dict[str, float]:
    """Per-row figures of this replica's ``count`` training rows (means; root mean squares for keys
    ending in ``_rmse``) as the same figures over every replica's rows; in one process ``figures``
    as given. Every replica calls it at the same point (it is a collective)."""
    replicas = _REPLICAS.get()
    if replicas is None:
        return figures
    keys = list(figures)
    squares = [key.endswith("_rmse") for key in keys]
    # a replica without rows adds nothing (its means are NaN: NaN x 0 would spoil every replica's)
    sums = [(figures[key] ** 2 if square else figures[key]) * count if count else 0.0
            for key, square in zip(keys, squares, strict=True)]
    total = replicas.total(np.array([*sums, count], dtype=np.float64))
    n = total[-1]
    return {key: (math.sqrt(value / n) if square else float(value / n)) if n else math.nan
            for key, square, value in zip(keys, squares, total[:-1], strict=True)}


def gathered(values: np.ndarray) -> np.ndarray:
    """Every replica's ``values`` (1-d) concatenated; in one process ``values`` as given."""
    replicas = _REPLICAS.get()
    return values if replicas is None else replicas.gather(np.asarray(values))


def replica_generator(generator: torch.Generator) -> torch.Generator:
    """``generator`` itself in one process; under data-parallel training, a generator of this
    replica's own, seeded from one draw of ``generator`` (the same on every replica) and the
    replica's rank, so replicas shuffle their shards and draw negatives and dropout masks
    independently rather than in lockstep (the same positions of the same stream on every one)."""
    replicas = _REPLICAS.get()
    if replicas is None:
        return generator
    drawn = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    seed = int(np.random.SeedSequence([drawn, int(replicas.rank)]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=generator.device).manual_seed(seed)


def replica_steps(replicas: Replicas, tensors: Sequence[torch.Tensor], batch_size: int,
                  generator: torch.Generator) -> tuple[tuple[torch.Tensor, ...], int, torch.Generator]:
    """A replica's side of a data-parallel epoch loop over its shard's row-aligned ``tensors``: them
    padded to the longest shard (`Replicas.shard`), its share of a global batch of ``batch_size``
    (`Replicas.batch_size`) and a generator of its own (`replica_generator`)."""
    return replicas.shard(tensors), replicas.batch_size(batch_size), replica_generator(generator)


def start_replicas(replicas: Replicas, tensors: Sequence[torch.Tensor]) -> None:
    """`Replicas.start` for plain tensors (a hand-rolled model's tables): equal on every replica."""
    holder = nn.Module()
    for number, tensor in enumerate(tensors):
        holder.register_buffer(f"t{number}", tensor)
    replicas.start(holder)


def check_schedule(schedule: str | None) -> tuple[str, tuple[float, ...]]:
    """Parse a learning-rate schedule spec: None/"constant", "cosine", "step:GAMMA:EVERY",
    "exponential:GAMMA" -> (kind, numbers).

    Raises:
        ConfigError: naming the spec.
    """
    if schedule is None or schedule == "constant":
        return ("constant", ())
    kind, *args = str(schedule).split(":")
    try:
        if kind == "cosine" and not args:
            return ("cosine", ())
        if kind == "step" and len(args) == 2:
            gamma, every = float(args[0]), int(args[1])
            if 0 < gamma <= 1 and every >= 1:
                return ("step", (gamma, every))
        if kind == "exponential" and len(args) == 1 and 0 < float(args[0]) <= 1:
            return ("exponential", (float(args[0]),))
    except ValueError:
        pass
    raise ConfigError(
        "lr_schedule must be 'constant', 'cosine', 'step:GAMMA:EVERY' or 'exponential:GAMMA', "
        f"got {schedule!r}"
    )


def _make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str | None, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    kind, args = check_schedule(schedule)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(args[1]), gamma=args[0])
    if kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args[0])
    return None


def _make_optimizer(
    name: str, params: Any, learning_rate: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, weight_decay=weight_decay, momentum=momentum)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=learning_rate, weight_decay=weight_decay)
    raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def _sum_over_batches(
    batch_loss: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    tensors: Sequence[torch.Tensor],
    batch_size: int,
) -> tuple[float, int]:
    """(the loss summed over the rows of ``tensors``, their count), a batch at a time."""
    n = len(tensors[0])
    total = 0.0
    for start in range(0, n, batch_size):
        batch = tuple(t[start : start + batch_size] for t in tensors)
        total += float(batch_loss(batch)) * len(batch[0])
    return total, n


def train_minibatch(
    module: nn.Module,
    batch_loss: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
    train: Sequence[torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    generator: torch.Generator,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    lr_schedule: str | None = None,
    valid: Sequence[torch.Tensor] | None = None,
    valid_metrics: Callable[[Sequence[torch.Tensor]], dict[str, float]] | None = None,
    early_stopping: int | None = None,
    callback: Callback | None = None,
) -> list[dict[str, float]]:
    """Train ``module`` by minimising ``batch_loss`` over shuffled minibatches of ``train``.

    Args:
        module: the parameters to learn (moved to the right device by the caller).
        batch_loss: maps a batch (a tuple of row-aligned tensors sliced from ``train``) to the mean
            loss over that batch; called under ``torch.no_grad`` for validation.
        train: row-aligned tensors (e.g. user indices, item indices, targets).
        epochs, batch_size, learning_rate: the usual; ``batch_size`` >= n gives full-batch training.
        generator: the only source of randomness (batch order).
        optimizer: ``adam``, ``adamw``, ``sgd`` (with ``momentum``) or ``adagrad``.
        weight_decay: the optimizer's L2 term (models usually regularise inside ``batch_loss``).
        lr_schedule: see `check_schedule`; stepped once per epoch.
        valid: row-aligned validation tensors; adds ``valid_loss`` (and ``valid_metrics``) per epoch.
        early_stopping: with ``valid``, stop after this many epochs without a lower ``valid_loss``
            and restore the best epoch's weights.
        callback: receives ``("epoch", record)`` after every epoch.

    Returns:
        One record per epoch: ``epoch``, ``epochs``, ``train_loss``, ``lr``, ``seconds`` and, with
        validation, ``valid_loss`` plus whatever ``valid_metrics`` returns.

    Raises:
        ConfigError: on a bad optimizer, schedule, or non-positive sizes.
    """
    if early_stopping is not None and valid is None:
        raise ConfigError("early_stopping needs validation data")
    if batch_size < 1 or epochs < 1:
        raise ConfigError(f"batch_size and epochs must be >= 1, got {batch_size} and {epochs}")
    replicas = _REPLICAS.get()
    # With early stopping every replica holds a validation part (carved from its shard): their
    # losses are put together, so every replica stops at the same epoch on the same figure.
    shared_valid = replicas is not None and early_stopping is not None
    if replicas is not None:  # data-parallel: ``train`` is this process's shard of the rows
        rows = len(train[0])
        if batch_size >= replicas.reduce_sum(0.0, rows)[1]:
            batch_size = max(rows, 1)  # full batch: one step a replica, each on its whole shard
            generator = replica_generator(generator)
        else:
            train, batch_size, generator = replica_steps(replicas, train, batch_size, generator)
        replicas.start(module)
    opt = _make_optimizer(optimizer, module.parameters(), learning_rate, weight_decay, momentum)
    scheduler = _make_scheduler(opt, lr_schedule, epochs)
    n = len(train[0])
    history: list[dict[str, float]] = []
    best_loss, best_state, since_best = math.inf, None, 0
    device = train[0].device
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        module.train()
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for first in range(0, n, batch_size):
            rows = order[first : first + batch_size]
            loss = batch_loss(tuple(t[rows] for t in train))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if replicas is not None:
                replicas.reduce_gradients(module, len(rows))
            opt.step()
            total += float(loss.detach()) * len(rows)
        count = n
        if replicas is not None:
            total, count = replicas.reduce_sum(total, n)
        record: dict[str, float] = {
            "epoch": epoch,
            "epochs": epochs,
            "train_loss": total / max(1, count),
            "lr": opt.param_groups[0]["lr"],
        }
        if valid is not None and (len(valid[0]) or shared_valid):
            module.eval()
            with torch.no_grad():
                total, count = _sum_over_batches(batch_loss, valid, max(batch_size, 8192))
                if shared_valid:
                    total, count = replicas.reduce_sum(total, count)
                if count:
                    record["valid_loss"] = total / count
                if valid_metrics is not None and len(valid[0]):
                    record.update(valid_metrics(valid))
        if scheduler is not None:
            scheduler.step()
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if callback is not None:
            callback("epoch", dict(record))
        stop = False
        if early_stopping is not None and "valid_loss" in record:
            if record["valid_loss"] < best_loss - 1e-7:
                best_loss, since_best = record["valid_loss"], 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                since_best += 1
                stop = since_best >= early_stopping
        if replicas is not None:  # the first replica decides, or the others' collectives would hang
            stop = replicas.agree(stop)
        if stop:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


def known_pairs_tensors(
    model: Recommender, ratings: Ratings | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(user index, item index, rating) tensors of the rows of ``ratings`` whose user and movie the
    fitted ``model`` knows (validation data for early stopping); None if ``ratings`` is None."""
    if ratings is None:
        return None
    users = model.users_.indices(ratings.user_ids, missing="mask")
    items = model.items_.indices(ratings.item_ids, missing="mask")
    keep = (users >= 0) & (items >= 0)
    return (
        torch.as_tensor(users[keep], device=device),
        torch.as_tensor(items[keep], device=device),
        torch.as_tensor(ratings.rating[keep], device=device),
    )


def module_arrays(module: nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    """A module's parameters and buffers as numpy arrays (CPU), for an artifact."""
    return {prefix + k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_module_arrays(module: nn.Module, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
    """Load arrays written by `module_arrays` back into ``module`` (on its device).

    Raises:
        KeyError / RuntimeError: if the arrays do not fit the module (the artifact loader turns
        these into a DataError).
    """
    device = next(iter(module.state_dict().values())).device if module.state_dict() else "cpu"
    state = {k[len(prefix) :]: torch.as_tensor(v, device=device) for k, v in arrays.items()
             if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)


def record_epoch(history: list[dict[str, float]], record: dict[str, float], callback: Callback | None
                 ) -> None:
    """Append an epoch's ``record`` to ``history`` and report a copy as ``callback("epoch", ...)``."""
    history.append(record)
    if callback is not None:
        callback("epoch", dict(record))
