"""ALS across ranks: iALS and biased-MF ALS with the training matrix sharded by user and by item.

Rank r of W holds two shards of the training matrix and nothing more of it (`TrainShards`, cut by
`movierec.distributed.sharded`): the rows of its block of users (`shard_bounds` over the users, iALS's
session pseudo-users after them) and the columns of its block of items. The epochs are the models' own
(`ImplicitALS._alternate`, `BiasedMFALS._alternate`); what this module supplies is the exchange
(`ShardedExchange`): each rank solves its block of a side and the blocks are all-gathered, so every rank
has the whole side before the other side is solved:

1. every rank solves its block of items against the full user factors (its item-columns shard holds
   every rating of those items), then the blocks are all-gathered, so every rank has every item;
2. every rank solves its block of users against the full item factors (its user-rows shard), and
   the user blocks are all-gathered.

Each row's solve reads only that row's ratings and the other side's factors, so the result is the
single-process one up to rounding; the factors (not the ratings) are what every rank holds in full.
The initial factors are drawn from the model's seed on every rank, as one process draws them. Every
rank ends with the learned state (the factors are gathered): the ranks then rank their block of users
for an evaluation (`movierec.distributed.sharded`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from movierec.distributed.group import Group
from movierec.distributed.shard import all_gather_rows, shard_bounds
from movierec.models.core.exchange import RowExchange
from movierec.models.core.recommender import Callback
from movierec.models.ranking.ials import ImplicitALS
from movierec.models.rating.als import BiasedMFALS

__all__ = ["ShardedExchange", "TrainShards", "solve_als", "solve_ials"]


class ShardedExchange(RowExchange):
    """Rank r solves the rows `shard_bounds` gives it; the solved blocks are all-gathered and the
    training sums all-reduced over the group."""

    def __init__(self, group: Group) -> None:
        self.group = group

    def bounds(self, n: int) -> tuple[int, int]:
        return shard_bounds(n, self.group.rank, self.group.world_size)

    def gather(self, block: torch.Tensor, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is not None:
            block = block.clone()  # a view of ``out``'s rows: the gather overwrites them
        return all_gather_rows(block, n, self.group.world_size, out=out)

    def total(self, value: float) -> float:
        summed = torch.tensor([value], dtype=torch.float64, device=self.group.device)
        dist.all_reduce(summed)
        return float(summed[0])


@dataclass
class TrainShards:
    """One rank's pieces of the training data (`movierec.distributed.sharded` cuts them).

    Attributes:
        user_rows: the rows ``shard_bounds(n_rows)`` of the model's training matrix (block x n_items
            CSR; iALS: c - 1 values, session pseudo-users after the users; ALS: the ratings).
        item_rows: its columns ``shard_bounds(n_items)``, as rows (block x n_rows CSR).
        seen_rows: the rows ``shard_bounds(n_users)`` of the training ratings (block x n_items CSR):
            the items each of the rank's users has seen, for ranking them.
        n_users: users (real ones; iALS's session rows come after them in ``user_rows``).
        n_ratings: training ratings. mu: their mean (float64, in the file's order, as one process
            computes it).
    """

    user_rows: sp.csr_matrix
    item_rows: sp.csr_matrix
    seen_rows: sp.csr_matrix
    n_users: int
    n_ratings: int
    mu: float

    @property
    def n_items(self) -> int:
        return int(self.user_rows.shape[1])

    def take(self, name: str) -> sp.csr_matrix:
        """Hand over ``user_rows`` or ``item_rows`` (left empty here), so that the solver's copy is the
        only one once it has built its own."""
        matrix = getattr(self, name)
        setattr(self, name, sp.csr_matrix(matrix.shape, dtype=matrix.dtype))
        return matrix


def solve_ials(model: ImplicitALS, shards: TrainShards, group: Group,
               callback: Callback | None = None) -> None:
    """`ImplicitALS` training across the group on this rank's shards; every rank ends with the
    learned factors (``user_factors_``, ``item_factors_``, ``item_bias_``, ``history_``)."""
    model._alternate(shards.take("user_rows"), shards.take("item_rows"), shards.n_users,
                     ShardedExchange(group), callback, group.device)


def solve_als(model: BiasedMFALS, shards: TrainShards, group: Group, callback: Callback | None = None,
              valid_rows: tuple[torch.Tensor, ...] | None = None) -> None:
    """`BiasedMFALS` training across the group on this rank's shards; every rank ends with the
    learned state. ``valid_rows`` (rank 0: user index, item index, rating tensors) adds
    ``valid_rmse`` per epoch."""
    device, n_items = group.device, shards.n_items
    model._alternate(_rated(shards.user_rows, shards.mu, device),  # also the seen rows: kept
                     _rated(shards.take("item_rows"), shards.mu, device), shards.n_users, n_items,
                     shards.n_ratings, shards.mu, ShardedExchange(group), valid_rows, callback, device)


def _rated(rows: sp.csr_matrix, mu: float, device: torch.device
           ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A CSR shard as `BiasedMFALS._alternate` takes a side: (row in block, column, rating - mu)."""
    local = np.repeat(np.arange(rows.shape[0], dtype=np.int64), np.diff(rows.indptr))
    residual = rows.data.astype(np.float32) - np.float32(mu)
    return local, rows.indices, torch.as_tensor(residual, device=device)
