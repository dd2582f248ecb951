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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from movierec.distributed.group import Group
from movierec.distributed.shard import strided_shard
from movierec.errors import ConfigError

__all__ = ["GradientReplicas"]


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
            dist.broadcast(tensor, 0)

    def reduce_gradients(self, module: nn.Module, rows: int) -> None:
        params = [p for p in module.parameters() if p.requires_grad]
        if any(p.grad is not None and p.grad.is_sparse for p in params):
            raise ConfigError("--distributed covers models with dense gradients; this one steps "
                              "sparse embedding gradients itself")
        if not params:
            return
        present = torch.tensor([float(rows)] + [float(p.grad is not None) for p in params],
                               dtype=torch.float64, device=params[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params]) * float(rows)
        dist.all_reduce(present)
        dist.all_reduce(flat)
        flat /= float(present[0])
        offset = 0
        for p, seen in zip(params, present[1:].tolist(), strict=True):
            size = p.numel()
            p.grad = flat[offset:offset + size].view_as(p).clone() if seen > 0 else None
            offset += size

    def reduce_sum(self, total: float, count: int) -> tuple[float, int]:
        device = self.group.device
        both = torch.tensor([float(total), float(count)], dtype=torch.float64, device=device)
        dist.all_reduce(both)
        return float(both[0]), round(float(both[1]))
