"""Known users' top-k on the model's torch device, for models whose scores are inner products.

A model whose known-user scores are ``x_u · y_i + b_i`` (`Recommender._dot_parts`, exact), that opts in
(`Recommender.ranks_on_device`; today iALS, whose CPU scores are float64 like these) and whose
``device`` resolves to CUDA ranks large batches of users
there: the item vectors go to the device once, each block of users is scored by one float64 matrix
product, seen and non-candidate movies are masked in place, and only the top few columns per user
come back to the host. On an
87k-movie catalog this is the difference between shipping 700 MB of scores per 1,024 users and
shipping 8 KB.

Results follow `movierec.models.core.topk`'s contract: best first, equal scores by ascending item
index, -1 / -inf in slots a user cannot fill. The device picks a few columns more than asked
(`_SPARE`) and the host orders them by (score, index), so ties inside the list and at its edge come
out as on the CPU unless more than `_SPARE` movies tie exactly at the edge. Scores are the same
float64 sums as the CPU's, up to the order of additions (a last-bit difference can swap two movies
whose scores differ by ~1e-16).

The code is device-agnostic: on a CPU it gives the CPU path's answers, which is how it is tested
where there is no GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["MIN_DEVICE_SCORES", "DotTopK", "ranker_for"]

# Below this many scores in a call, the copies and kernel launches cost more than the CPU's work
# (a single user's request, a small evaluation): the CPU path serves it.
MIN_DEVICE_SCORES = 1 << 22
# Scores per block on the device: 2 GB of float64, whatever the catalog.
_BLOCK_SCORES = 1 << 28
# Columns picked beyond k, so that ties at the edge of the list resolve by item index on the host.
_SPARE = 8


class DotTopK:
    """Top-k by ``users[u] · items[i] + bias[i]`` on ``device``, item side uploaded once.

    Args:
        users (n_users, f), items (n_items, f), bias (n_items,): the model's arrays (any float dtype;
            scored in float64).
        device: a torch device.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, bias: np.ndarray, device: torch.device
                 ) -> None:
        self.users = users
        self.device = torch.device(device)
        self.items = torch.as_tensor(np.asarray(items, dtype=np.float64)).to(self.device)
        self.bias = torch.as_tensor(np.asarray(bias, dtype=np.float64)).to(self.device)

    def top_k(
        self,
        user_index: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None = None,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(items (n, k') int64, scores (n, k') float64) with k' = min(k, n_items), for user indices
        ``user_index``; ``exclude`` is a users x items CSR whose stored entries are not allowed (rows
        indexed by user index, all users), ``candidates`` a bool mask over items."""
        user_index = np.asarray(user_index, dtype=np.int64)
        n_items = self.items.shape[0]
        width = min(int(k), n_items)
        pick = min(width + _SPARE, n_items)
        out_items = np.full((len(user_index), width), -1, dtype=np.int64)
        out_scores = np.full((len(user_index), width), -np.inf)
        if width == 0 or len(user_index) == 0:
            return out_items, out_scores
        allowed_items = n_items
        blocked = None
        if candidates is not None:
            candidates = np.asarray(candidates, dtype=bool)
            allowed_items = int(candidates.sum())
            blocked = torch.as_tensor(~candidates).to(self.device)
        step = max(1, _BLOCK_SCORES // n_items)
        for start in range(0, len(user_index), step):
            block = user_index[start : start + step]
            vectors = torch.as_tensor(np.asarray(self.users[block], dtype=np.float64)).to(self.device)
            scores = torch.addmm(self.bias[None, :], vectors, self.items.T)
            allowed = np.full(len(block), allowed_items, dtype=np.int64)
            if exclude is not None:
                rows = exclude[block]
                cols = rows.indices.astype(np.int64)
                row_of = np.repeat(np.arange(len(block)), np.diff(rows.indptr))
                if candidates is not None:  # a seen movie that is no candidate is not counted twice
                    keep = candidates[cols]
                    cols, row_of = cols[keep], row_of[keep]
                allowed -= np.bincount(row_of, minlength=len(block))
                scores[torch.as_tensor(row_of).to(self.device),
                       torch.as_tensor(cols).to(self.device)] = -torch.inf
            if blocked is not None:
                scores.masked_fill_(blocked[None, :], -torch.inf)
            values, index = torch.topk(scores, pick, dim=1)
            values, index = values.cpu().numpy(), index.cpu().numpy()
            order = np.lexsort((index, -values), axis=1)[:, :width]
            index = np.take_along_axis(index, order, axis=1)
            values = np.take_along_axis(values, order, axis=1)
            unfilled = np.arange(width)[None, :] >= allowed[:, None]
            index[unfilled], values[unfilled] = -1, -np.inf
            out_items[start : start + len(block)] = index
            out_scores[start : start + len(block)] = values
        return out_items, out_scores


def ranker_for(model: Any, n_users: int) -> DotTopK | None:
    """``model``'s device ranker for a call ranking ``n_users`` users, or None where the CPU serves
    it: CUDA absent, a call under `MIN_DEVICE_SCORES` scores, or no inner-product parts. Built once
    per set of learned arrays and kept on the model."""
    parts = model._dot_parts()
    if parts is None or not parts.exact or n_users * len(model.items_) < MIN_DEVICE_SCORES:
        return None
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda" if model.device == "auto" else model.device)
    cached = getattr(model, "_device_top_k_cache", None)
    if (cached is None or cached[0] is not parts.items or cached[1] is not parts.offsets
            or cached[2] != device):
        ranker = DotTopK(parts.users, parts.items, parts.offsets, device)
        cached = (parts.items, parts.offsets, device, ranker)
        model._device_top_k_cache = cached
    cached[3].users = parts.users
    return cached[3]
