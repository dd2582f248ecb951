"""Data-parallel training of the gradient-trained models: one replica of the model per rank, each
stepping on its shard of the rating rows, gradients averaged over the ranks before every step.

`GradientReplicas` is what `movierec.models.core.train.train_minibatch` asks for (its `Replicas`):
under `training_replicas(GradientReplicas(group))` the model's own training code runs unchanged. The
sampler: rank r of W keeps rows r, r + W, ... of the training tensors (padded to equal length, so
every rank takes the same number of steps), reshuffled every epoch by the model's own generator, in
batches of ``ceil(batch_size / W)``; after each backward pass every gradient becomes the mean over
the W batches weighted by their rows (one all-reduce), which is the gradient of the global batch for
a loss that is a mean over its rows. So W processes take the steps one process takes, on batches of
the same total size.

Embedding tables whose gradients are row-sparse (the tower presets look them up with
``sparse=True`` and step them in a backward hook; dot-bias-sigmoid and BPR step theirs by hand) are
not all-reduced: each rank's (rows, values) are all-gathered (`combine_sparse`, the arithmetic in
`combine_parts`) and every rank applies all of them, so the tables stay equal without sending
their untouched rows. dot-bias-sigmoid and BPR run their own loops: every rank draws the
single-process epoch (order, and BPR's negatives) from the shared seed and takes rows
r, r + W, ... of each batch (`batch_share`), so the W pieces of a step are one process's batch and
the result is the single-process one up to the order of float sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from movierec.distributed.group import Group
from movierec.distributed.shard import strided_shard
from movierec.errors import ConfigError

__all__ = ["GradientReplicas", "combine_parts"]


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


class GradientReplicas:
    """Gradient all-reduce and a strided ratings sampler over ``group`` (see the module docstring)."""

    def __init__(self, group: Group) -> None:
        self.group = group

    def shard(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        rows = strided_shard(len(tensors[0]), self.group.rank, self.group.world_size)
        index = torch.as_tensor(rows, device=tensors[0].device)
        return tuple(t.index_select(0, index.to(t.device)) for t in tensors)

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

    def batch_share(self, rows: int) -> slice:
        return slice(self.group.rank, rows, self.group.world_size)

    def agree(self, stop: bool) -> bool:
        flag = torch.tensor([1.0 if stop else 0.0], device=self.group.device)
        dist.broadcast(flag, 0)
        return bool(flag.item() > 0)

    def reduce_sum(self, total: float, count: int) -> tuple[float, int]:
        device = self.group.device
        both = torch.tensor([float(total), float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(both)
        return float(both[0]), round(float(both[1]))
