"""Who solves which rows of an alternating solve, and how the solved rows come back together.

The ALS models (`movierec.models.rating.als`, `movierec.models.ranking.ials`) alternate between
solving every item and every user; each row's solve reads only that row's ratings and the other side's
factors. Their epoch loops take a `RowExchange`: this process solves the rows ``bounds(n)`` of a side
and ``gather`` puts every process's solved rows back into the whole side. One process (`LOCAL`)
solves every row and gathers nothing; `movierec.distributed.solvers` supplies one that all-gathers
the blocks of the ranks of a torch.distributed group, so the models never see torch.distributed.
"""

from __future__ import annotations

import torch

__all__ = ["LOCAL", "RowExchange"]


class RowExchange:
    """The single-process exchange: every row is this process's, nothing to gather."""

    def bounds(self, n: int) -> tuple[int, int]:
        """(start, stop): the contiguous block of a side's ``n`` rows this process solves."""
        return 0, n

    def gather(self, block: torch.Tensor, n: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Every process's solved block put together: (n, ...) rows in order. ``out``: where to put
        them (may hold ``block`` itself, as a view of its rows ``bounds(n)``)."""
        if out is None or out.data_ptr() == block.data_ptr():
            return block if out is None else out
        out.copy_(block)
        return out

    def total(self, value: float) -> float:
        """``value`` summed over the processes (a training sum of squares)."""
        return value


LOCAL = RowExchange()
