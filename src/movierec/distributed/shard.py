"""How the work is cut between ranks: contiguous row blocks for the ALS solvers, blocks of users with
about equal numbers of ratings for the gradient-trained models (padded to equal lengths), and the
all-gather that puts blocks back together.

Rank r of W owns rows ``shard_bounds(n, r, W)``: the first ``n % W`` ranks take one row more, so the
blocks differ by at most one row and together cover 0..n-1 in order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["all_gather_rows", "padded_rows", "rating_blocks", "shard_bounds"]


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """(start, stop) of rank ``rank``'s contiguous block of ``n`` rows among ``world_size`` ranks."""
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"need 0 <= rank < world_size and n >= 0, got rank {rank}, world_size "
                         f"{world_size}, n {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def padded_rows(n: int, size: int) -> np.ndarray:
    """Positions 0..n-1, then the first ones again until there are ``size`` (>= n >= 1): a shard
    of ``n`` rows made as long as the longest, as `torch.utils.data.DistributedSampler` pads."""
    if not 1 <= n <= size:
        raise ValueError(f"need 1 <= n <= size, got n {n}, size {size}")
    return np.resize(np.arange(n, dtype=np.int64), size)


def rating_blocks(user_counts: np.ndarray, world_size: int) -> np.ndarray:
    """User bounds (world_size + 1,) cutting users 0..U-1 into contiguous blocks with about equal
    numbers of ratings (``user_counts``: ratings per user): block r is users
    ``bounds[r]:bounds[r + 1]``. Counting the ratings user by user, cut r is the boundary between
    two users nearest to rating ``r * N // W`` (the earlier one on a tie), so a block misses its
    share by at most half the ratings of the users at its edges; it can be empty where one user
    holds more than a share."""
    if world_size < 1:
        raise ValueError(f"need world_size >= 1, got {world_size}")
    starts = np.concatenate([[0], np.cumsum(np.asarray(user_counts, dtype=np.int64))])
    targets = (np.arange(1, world_size, dtype=np.int64) * int(starts[-1])) // world_size
    after = np.minimum(np.searchsorted(starts, targets), len(starts) - 1)  # first boundary >= target
    before = np.maximum(after - 1, 0)
    cuts = np.where(targets - starts[before] <= starts[after] - targets, before, after)
    return np.concatenate([[0], cuts, [len(starts) - 1]]).astype(np.int64)


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
