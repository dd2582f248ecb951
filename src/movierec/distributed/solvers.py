"""ALS across ranks: iALS and biased-MF ALS with the ratings sharded by user and by item.

Rank r of W holds two shards of the training matrix and nothing more of it: the rows of its block of
users (`shard_bounds` over the users, iALS's session pseudo-users after them) and the columns of its
block of items. Each half-epoch is the single-process one, cut by rows:

1. every rank solves its block of items against the full user factors (its item-columns shard holds
   every rating of those items), then the blocks are all-gathered, so every rank has every item;
2. every rank solves its block of users against the full item factors (its user-rows shard), and
   the user blocks are all-gathered.

Each row's solve reads only that row's ratings and the other side's factors, so the result is the
single-process one up to rounding; the factors (not the ratings) are what every rank holds in full.
The initial factors are drawn from the model's seed on every rank, as one process draws them.

The solvers run the collectives; rank 0 returns the learned arrays, the other ranks None.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist

from movierec.data.dataset import Ratings
from movierec.distributed.group import Group
from movierec.distributed.shard import all_gather_rows, shard_bounds
from movierec.models.core.interactions import interaction_weights, session_rows
from movierec.models.core.recommender import Callback
from movierec.models.core.train import record_epoch

# `_Pattern` is iALS's own torch CSR holder; reusing it keeps the distributed solve the same code path
from movierec.models.ranking.ials import _Pattern, ials_cg_solve
from movierec.models.rating.als import RowBlocks, als_solve_rows
from movierec.models.rating.mf import rmse

__all__ = ["ials_shards", "solve_als", "solve_ials"]


def ials_shards(model: Any, train: Ratings, rank: int, world_size: int
                ) -> tuple[sp.csr_matrix, sp.csr_matrix, int, int]:
    """This rank's shards of iALS's confidence matrix (values c - 1 = alpha * v), built from the
    rating arrays without forming the whole matrix.

    Returns:
        (user rows: (rows in block) x n_items CSR, item columns: (items in block) x n_rows CSR,
        n_rows (users, then session pseudo-users), n_real users).
    """
    n_real, n_items = train.n_users, train.n_items
    users, items = train.user_index.astype(np.int64), train.item_index.astype(np.int64)
    rating = train.rating.astype(np.float64)
    keep = rating >= float(model.min_rating)
    mean = None
    if model.weighting == "centered":  # as `interaction_matrix`: the mean over all the user's ratings
        mean = (np.bincount(users, rating, n_real)
                / np.maximum(np.bincount(users, minlength=n_real), 1))[users][keep]
    rows, cols = users[keep], items[keep]
    values = interaction_weights(rating[keep], model.weighting, mean)
    n_rows = n_real
    if float(model.session_weight) > 0 and train.timestamp is not None:
        sessions = session_rows(train, float(model.session_gap), model.min_rating, model.weighting)
        coo = sessions.tocoo()
        rows = np.concatenate([rows, coo.row.astype(np.int64) + n_real])
        cols = np.concatenate([cols, coo.col.astype(np.int64)])
        values = np.concatenate([values, (float(model.session_weight) * coo.data).astype(np.float32)])
        n_rows += sessions.shape[0]
        del sessions, coo
    values = values.astype(np.float32) * np.float32(model.alpha)
    r0, r1 = shard_bounds(n_rows, rank, world_size)
    c0, c1 = shard_bounds(n_items, rank, world_size)
    mine = (rows >= r0) & (rows < r1)
    by_user = sp.csr_matrix((values[mine], (rows[mine] - r0, cols[mine])), shape=(r1 - r0, n_items),
                            dtype=np.float32)
    mine = (cols >= c0) & (cols < c1)
    by_item = sp.csr_matrix((values[mine], (cols[mine] - c0, rows[mine])), shape=(c1 - c0, n_rows),
                            dtype=np.float32)
    return by_user, by_item, n_rows, n_real


def solve_ials(model: Any, train: Ratings, group: Group, callback: Callback | None = None
               ) -> dict[str, Any] | None:
    """`ImplicitALS` training across the group (see the module docstring).

    Returns:
        On rank 0: ``user_factors_``, ``item_factors_``, ``item_bias_``, ``history_`` as the model
        keeps them; elsewhere None.
    """
    device, world, rank = group.device, group.world_size, group.rank
    user_shard, item_shard, n_rows, n_real = ials_shards(model, train, rank, world)
    n_items = train.n_items
    by_user, by_item = _Pattern(user_shard, device), _Pattern(item_shard, device)
    del user_shard, item_shard
    r0, r1 = shard_bounds(n_rows, rank, world)
    c0, c1 = shard_bounds(n_items, rank, world)
    generator = torch.Generator().manual_seed(int(model.random_state))
    k, reg, steps = int(model.factors), float(model.reg), int(model.cg_steps)
    users = (torch.randn(n_rows, k, generator=generator) * 0.01).to(device)
    items = (torch.randn(n_items, k, generator=generator) * 0.01).to(device)
    history: list[dict[str, float]] = []
    for epoch in range(1, int(model.epochs) + 1):
        start = time.perf_counter()
        ials_cg_solve(by_item, users, items[c0:c1], reg, steps)  # in place, on this rank's rows
        all_gather_rows(items[c0:c1].clone(), n_items, world, out=items)
        ials_cg_solve(by_user, items, users[r0:r1], reg, steps)
        all_gather_rows(users[r0:r1].clone(), n_rows, world, out=users)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        record_epoch(history, {"epoch": epoch, "epochs": model.epochs,
                               "seconds": time.perf_counter() - start}, callback)
    if not group.is_main:
        return None
    return {"user_factors_": users[:n_real].cpu().numpy(), "item_factors_": items.cpu().numpy(),
            "item_bias_": np.zeros(n_items, dtype=np.float32), "history_": history}


def solve_als(model: Any, train: Ratings, group: Group, callback: Callback | None = None,
              valid_rows: tuple[torch.Tensor, ...] | None = None) -> dict[str, Any] | None:
    """`BiasedMFALS` training across the group (see the module docstring).

    ``valid_rows`` (rank 0: user index, item index, rating tensors) adds ``valid_rmse`` per epoch.

    Returns:
        On rank 0: ``global_mean_``, the biases, the factors and ``history_``; elsewhere None.
    """
    device, world, rank = group.device, group.world_size, group.rank
    dtype = torch.float32
    n_users, n_items, k = train.n_users, train.n_items, int(model.factors)
    user_index, item_index = train.user_index.astype(np.int64), train.item_index.astype(np.int64)
    mu = float(train.rating.astype(np.float64).mean())
    residual = train.rating.astype(np.float32) - np.float32(mu)
    u0, u1 = shard_bounds(n_users, rank, world)
    i0, i1 = shard_bounds(n_items, rank, world)
    mine_u = np.flatnonzero((user_index >= u0) & (user_index < u1))
    mine_i = np.flatnonzero((item_index >= i0) & (item_index < i1))
    by_user = RowBlocks(user_index[mine_u] - u0, item_index[mine_u], u1 - u0, n_items, device)
    by_item = RowBlocks(item_index[mine_i] - i0, user_index[mine_i], i1 - i0, n_users, device)
    user_items = torch.as_tensor(item_index[mine_u], device=device)  # the user shard's movies
    item_users = torch.as_tensor(user_index[mine_i], device=device)  # the item shard's users
    residual_u = torch.as_tensor(residual[mine_u], device=device)
    residual_i = torch.as_tensor(residual[mine_i], device=device)
    del mine_u, mine_i, residual, user_index, item_index

    generator = torch.Generator().manual_seed(int(model.random_state))
    user_side = torch.ones(n_users, k + 1, dtype=dtype, device=device)  # [p_u, 1]
    user_side[:, :k] = torch.randn(n_users, k, generator=generator, dtype=dtype).to(device) * 0.1
    user_bias = torch.zeros(n_users, dtype=dtype, device=device)
    item_side = torch.ones(n_items, k + 1, dtype=dtype, device=device)  # [q_i, 1]
    item_bias = torch.zeros(n_items, dtype=dtype, device=device)
    reg, bias_reg = float(model.reg), float(model.bias_reg)
    history: list[dict[str, float]] = []
    for epoch in range(1, int(model.epochs) + 1):
        start = time.perf_counter()
        targets = residual_i - torch.index_select(user_bias, 0, item_users)
        solved, _ = als_solve_rows(by_item, user_side, targets, reg, bias_reg)
        solved = all_gather_rows(solved, n_items, world)
        item_side[:, :k], item_bias = solved[:, :k], solved[:, k].contiguous()
        targets = residual_u - torch.index_select(item_bias, 0, user_items)
        solved, sse = als_solve_rows(by_user, item_side, targets, reg, bias_reg)
        solved = all_gather_rows(solved, n_users, world)
        user_side[:, :k], user_bias = solved[:, :k], solved[:, k].contiguous()
        total = torch.tensor([sse], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        record = {"epoch": epoch, "epochs": model.epochs,
                  "train_rmse": math.sqrt(max(float(total[0]), 0.0) / len(train))}
        if valid_rows is not None:
            vu, vi, truth = valid_rows
            dot = (torch.index_select(user_side[:, :k], 0, vu)
                   * torch.index_select(item_side[:, :k], 0, vi)).sum(1)
            record["valid_rmse"] = rmse(truth - (mu + user_bias[vu] + item_bias[vi] + dot))
        record["seconds"] = time.perf_counter() - start
        record_epoch(history, record, callback)
    if not group.is_main:
        return None
    return {"global_mean_": mu, "user_bias_": user_bias.cpu().numpy(),
            "item_bias_": item_bias.cpu().numpy(),
            "user_factors_": user_side[:, :k].contiguous().cpu().numpy(),
            "item_factors_": item_side[:, :k].contiguous().cpu().numpy(), "history_": history}
