"""How the work is cut between ranks: contiguous row blocks for the ALS solvers, a strided sampler of
rating rows for the gradient-trained models, and the all-gather that puts blocks back together.

Rank r of W owns rows ``shard_bounds(n, r, W)``: the first ``n % W`` ranks take one row more, so the
blocks differ by at most one row and together cover 0..n-1 in order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["all_gather_rows", "shard_bounds", "strided_shard"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """(start, stop) of rank ``rank``'s contiguous block of ``n`` rows among ``world_size`` ranks."""
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"need 0 <= rank < world_size and n >= 0, got rank {rank}, world_size "
                         f"{world_size}, n {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def strided_shard(n: int, rank: int, world_size: int) -> np.ndarray:
    """Row positions ``rank, rank + W, ...`` of ``n`` rows, padded (by repeating the shard's first
    rows) to ``ceil(n / W)`` so that every rank runs the same number of steps, as
    `torch.utils.data.DistributedSampler` pads; int64."""
    rows = np.arange(rank, n, world_size, dtype=np.int64)
    size = -(-n // world_size)
    if len(rows) < size:
        pad = rows if len(rows) else np.arange(min(n, 1), dtype=np.int64)
        rows = np.concatenate([rows, np.resize(pad, size - len(rows))]) if len(pad) else rows
    return rows


def all_gather_rows(block: torch.Tensor, n: int, world_size: int, out: torch.Tensor | None = None
                    ) -> torch.Tensor:
    """Every rank's contiguous row block (`shard_bounds`) put together: (n, ...) on every rank.

    Blocks may differ by one row; each is padded to the largest for the collective (gloo and NCCL
    gather equal shapes). A full-sized block is received straight into its rows of ``out`` (a
    contiguous one); only the one-row-short blocks pass through a buffer of their own. That saves
    one copy of the whole side against gathering into a list of blocks and copying them into place
    (2 gloo processes, a 122 MB side: 185 MB added instead of 307); gloo (and NCCL for equal
    blocks) still stages the side in a flat buffer of its own. ``block`` must not be a view of
    ``out``.
    """
    size = -(-n // world_size)
    padded = block
    if len(block) < size:
        padded = torch.cat([block, block.new_zeros((size - len(block), *block.shape[1:]))])
    if out is None:
        out = block.new_empty((n, *block.shape[1:]))
    parts: list[torch.Tensor] = []
    short: list[tuple[torch.Tensor, int, int]] = []
    for rank in range(world_size):
        start, stop = shard_bounds(n, rank, world_size)
        if stop - start == size and out.is_contiguous():
            parts.append(out[start:stop])  # rows of a contiguous tensor: contiguous themselves
        else:
            parts.append(block.new_empty((size, *block.shape[1:])))
            short.append((parts[-1], start, stop))
    dist.all_gather(parts, padded.contiguous())
    for part, start, stop in short:
        out[start:stop].copy_(part[: stop - start])
    return out
