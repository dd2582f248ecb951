"""Data-parallel training of the gradient-trained models: one replica of the model per rank, each
holding and stepping on its shard of the training ratings, gradients averaged over the ranks before
every step.

The data: rank 0 alone reads the ratings and cuts them (`cut_ratings`) into blocks of users with about
equal numbers of ratings; every rank receives its block (`share_ratings`), every rating of its users,
and fits the model on it. What a model derives from all its training ratings (their mean, per-movie
sums, the rating levels) it asks of `movierec.models.core.train` (`summed`, `training_mean`,
`gathered`), which sums over the ranks here. Holding all of a user's ratings, a rank can draw BPR's
negatives and SVD++'s implicit sums for its users without the others.

`GradientReplicas` is what `movierec.models.core.train.train_minibatch` asks for (its `Replicas`):
under `training_replicas(GradientReplicas(group))` the model's own training code runs unchanged. Each
rank's shard is padded (repeating its first rows) to the longest shard's length, so every rank takes
the same number of steps, reshuffled every epoch by the model's own generator, in batches of
``ceil(batch_size / W)``; after each backward pass every gradient becomes the mean over the W batches
weighted by their rows (one all-reduce), which is the gradient of the global batch for a loss that
is a mean over its rows. So W processes take as many steps as one process, on batches of the same
total size; the batches hold other rows than one process's, so results differ as another seed's.

Embedding tables whose gradients are row-sparse (the tower presets look them up with
``sparse=True`` and step them in a backward hook; dot-bias-sigmoid and BPR step theirs by hand) are
not all-reduced: each rank's (rows, values) are all-gathered (`combine_sparse`, the arithmetic in
`combine_parts`) and every rank applies all of them, so the tables stay equal without sending
their untouched rows. dot-bias-sigmoid and BPR run their own loops over their shard the same way
(`Replicas.shard`, `Replicas.batch_size`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from movierec._arrays import stable_argsort
from movierec.data.dataset import Ratings
from movierec.distributed.group import Group, guarded
from movierec.distributed.shard import padded_rows, rating_blocks
from movierec.errors import ConfigError, DataError

__all__ = ["GradientReplicas", "combine_parts", "cut_ratings", "share_ratings"]


def combine_parts(parts: Sequence[tuple[torch.Tensor, torch.Tensor, int]], weighted: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-sparse pieces of W ranks, ``(indices (n_r,), values (n_r, width), rows_r)`` in rank order,
    as one (indices, values): concatenated, and with ``weighted`` each rank's values scaled by
    rows_r / sum(rows). Summed per row, a weighted combination of per-rank batch means is the mean
    over the union of the batches; unweighted, it is the sum of the pieces."""
    indices = torch.cat([index for index, _, _ in parts])
    if not weighted:
        return indices, torch.cat([values for _, values, _ in parts])
    total = float(sum(rows for _, _, rows in parts)) or 1.0  # 0: every piece is empty
    return indices, torch.cat([values * (rows / total) for _, values, rows in parts])


def cut_ratings(train: Ratings, world_size: int) -> Iterator[Ratings]:
    """``train`` cut into ``world_size`` shards by blocks of users with about equal numbers of
    ratings (`rating_blocks`): shard r holds every rating of its users, in the file's order, with
    the whole vocabularies (an index means the same movie and user in every shard). The shards are
    made one at a time, as they are asked for.

    Raises:
        DataError: a shard would hold no rating (fewer ratings or users than processes, or one user
            with more than a share); raised before the first shard is made.
    """
    bounds = rating_blocks(train.user_counts, world_size)
    sizes = np.diff(np.concatenate([[0], np.cumsum(train.user_counts)])[bounds])
    if (sizes == 0).any():
        raise DataError(f"{len(train):,} ratings of {train.n_users:,} users cannot be cut into "
                        f"{world_size} shards that each hold ratings; use fewer processes")
    # every block's rows, in the file's order: a stable sort of the rows by their user's block
    order = stable_argsort(np.searchsorted(bounds, train.user_index, side="right"))
    return _shards(train, np.split(order, np.cumsum(sizes)[:-1]))


def _shards(train: Ratings, blocks: list[np.ndarray]) -> Iterator[Ratings]:
    for rows in blocks:
        yield train.take(rows, reindex=False)


def share_ratings(group: Group, train: Ratings | None) -> Ratings:
    """This rank's shard of the training ratings (`cut_ratings`): rank 0, which alone read them,
    sends every other rank theirs, one shard made and sent at a time, and keeps its own; the others
    pass None and receive. So a rank holds its users' ratings and the vocabularies, never the whole
    ratings (rank 0 holds them besides, having read them).

    Raises:
        DataError: the ratings cannot be cut into a shard per rank (on every rank).
        DistributedError: another rank stopped or did not answer in time.
    """
    if not group.is_main:
        box: list[Any] = [None]
        guarded(group, "receiving the training ratings from rank 0",
                lambda: dist.recv_object_list(box, src=0))
        if isinstance(box[0], str):
            raise DataError(box[0])
        return box[0]
    assert train is not None
    try:
        shards = cut_ratings(train, group.world_size)
    except DataError as exc:
        line = str(exc)
        for rank in range(1, group.world_size):  # every rank stops with the same line
            guarded(group, "sending the training ratings",
                    lambda rank=rank: dist.send_object_list([line], dst=rank))
        raise
    own = next(shards)
    for rank, shard in enumerate(shards, start=1):
        guarded(group, "sending the training ratings",
                lambda rank=rank, shard=shard: dist.send_object_list([shard], dst=rank))
        del shard
    return own


class GradientReplicas:
    """Gradient all-reduce and the padded shard sampler over ``group`` (see the module docstring)."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.rank = group.rank

    def shard(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        n = len(tensors[0])
        # the longest shard and (negated) the shortest, in one exchange: every rank learns both
        extremes = torch.tensor([n, -n], dtype=torch.int64, device=self.group.device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        size, shortest = int(extremes[0]), -int(extremes[1])
        if shortest == 0:  # raised on every rank alike, so none waits for the others
            raise DataError(f"a shard of the {self.group.world_size} ranks holds no training rows "
                            f"(its users' ratings all below min_rating, or too few ratings); use "
                            f"fewer processes")
        if size == n:
            return tuple(tensors)
        index = torch.as_tensor(padded_rows(n, size))
        return tuple(t.index_select(0, index.to(t.device)) for t in tensors)

    def total(self, values: np.ndarray) -> np.ndarray:
        summed = torch.as_tensor(np.ascontiguousarray(values, dtype=np.float64)).to(self.group.device)
        dist.all_reduce(summed)
        return summed.cpu().numpy()

    def gather(self, values: np.ndarray) -> np.ndarray:
        parts: list[Any] = [None] * self.group.world_size
        dist.all_gather_object(parts, np.asarray(values))
        return np.concatenate(parts)

    def batch_size(self, batch_size: int) -> int:
        return max(1, -(-int(batch_size) // self.group.world_size))

    def start(self, module: nn.Module) -> None:
        # one seed gives every rank the same start already; rank 0's weights make sure of it
        for tensor in module.state_dict().values():
            if tensor.device == self.group.device:
                dist.broadcast(tensor, 0)
            else:  # a CPU-only model (BPR) under NCCL: the collective runs on the rank's GPU
                moved = tensor.to(self.group.device)
                dist.broadcast(moved, 0)
                tensor.copy_(moved)

    def reduce_gradients(self, module: nn.Module, rows: int) -> None:
        params = [p for p in module.parameters() if p.requires_grad]
        if any(p.grad is not None and p.grad.is_sparse for p in params):
            raise ConfigError("--distributed covers models with dense gradients; this one steps "
                              "sparse embedding gradients itself")
        if not params:
            return
        present = torch.tensor([float(rows)] + [float(p.grad is not None) for p in params],
                               dtype=torch.float64, device=params[0].device)
        dist.all_reduce(present)
        # parameters no rank has a gradient for (tables a backward hook already stepped) are not sent
        seen = [count > 0 for count in present[1:].tolist()]
        sent = [p for p, s in zip(params, seen, strict=True) if s]
        if sent:
            flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                              for p in sent]) * float(rows)
            dist.all_reduce(flat)
            flat /= float(present[0])
        offset = 0
        for p, s in zip(params, seen, strict=True):
            if not s:
                p.grad = None
                continue
            size = p.numel()
            p.grad = flat[offset:offset + size].view_as(p).clone()
            offset += size

    def combine_sparse(self, indices: torch.Tensor, values: torch.Tensor, rows: int | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        device, world = self.group.device, self.group.world_size
        sizes = torch.tensor([len(indices), rows or 0], dtype=torch.int64, device=device)
        all_sizes = [torch.empty_like(sizes) for _ in range(world)]
        dist.all_gather(all_sizes, sizes)
        counts = [(int(s[0]), int(s[1])) for s in all_sizes]
        longest = max(count for count, _ in counts)
        # One gather of integers: the indices, then the values' bits (an integer of their width;
        # a gather copies bytes and never adds them), so nothing is converted or rounded.
        bits = {4: torch.int32, 8: torch.int64}[values.element_size()]
        packed = torch.zeros((longest, values.shape[1] + 1), dtype=bits, device=device)
        packed[: len(indices), 0] = indices.to(device, bits)
        packed[: len(indices), 1:] = values.to(device).view(bits)
        gathered = [torch.empty_like(packed) for _ in range(world)]
        dist.all_gather(gathered, packed)
        parts = [(part[:count, 0], part[:count, 1:].contiguous().view(values.dtype), share)
                 for part, (count, share) in zip(gathered, counts, strict=True)]
        index, combined = combine_parts(parts, weighted=rows is not None)
        return index.to(indices.device, indices.dtype), combined.to(values.device)

    def agree(self, stop: bool) -> bool:
        flag = torch.tensor([1.0 if stop else 0.0], device=self.group.device)
        dist.broadcast(flag, 0)
        return bool(flag.item() > 0)

    def reduce_sum(self, total: float, count: int) -> tuple[float, int]:
        both = self.total(np.array([float(total), float(count)]))
        return float(both[0]), round(float(both[1]))
