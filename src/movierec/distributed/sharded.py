"""The data path of the sharded models (iALS, biased-MF ALS): rank 0 prepares the training data once,
every rank then holds only its shards, trains, and ranks its block of users for an evaluation.

1. `share_training_data`: rank 0 (which alone loaded and split the ratings) writes the model's training
   matrix (CSR by user and CSR by item) and the ratings matrix as ``.npy`` files into a temporary
   folder, memory-maps them and removes the folder at once (the maps stay valid; nothing is left on
   disk whatever happens next), copies its own shards out of the maps and sends every other rank its
   shards (`TrainShards`) through the group. The caller then drops its own copies of the ratings:
   rank 0 keeps the ratings matrix only as the memory map (the artifact's ``seen_``, read when saved).
2. `fit_sharded`: the training (`movierec.distributed.solvers`); every rank ends with the factors.
3. `rank_across` / `serve_ranking` / `stop_serving`: an evaluation on rank 0 asks every rank to rank
   the evaluated users of its block (it holds their seen items), against the full item factors, and
   gathers the top-k lists; `movierec.eval.protocol.evaluate` computes the metrics from them as it
   does in one process.
"""

from __future__ import annotations

import mmap
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch.distributed as dist

from movierec.data.dataset import Catalog, Ratings, Vocabulary
from movierec.distributed.group import Group, guarded
from movierec.distributed.shard import shard_bounds
from movierec.distributed.solvers import TrainShards, solve_als, solve_ials
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.rating.mf import valid_tensors

__all__ = ["TrainSummary", "cut_shards", "fit_sharded", "give_back_memory", "mapped_copy", "rank_across",
           "row_block", "serve_ranking", "share_training_data", "stop_serving", "write_training_data"]

_PARTS = ("indptr", "indices", "data")


@dataclass(frozen=True)
class TrainSummary:
    """What rank 0 keeps of the training ratings once they are sharded: the vocabularies, the rating
    scale, ratings per movie, the count and fingerprint. Stands in for the training `Ratings` where
    `movierec.eval.protocol.evaluate` reads ``split.train`` (``items``, ``item_counts``, ``len``)."""

    users: Vocabulary
    items: Vocabulary
    scale: tuple[float, float]
    item_counts: np.ndarray
    n_ratings: int
    digest: str

    @classmethod
    def of(cls, train: Ratings) -> TrainSummary:
        return cls(train.users, train.items, train.scale, train.item_counts, len(train),
                   train.fingerprint())

    def __len__(self) -> int:
        return self.n_ratings

    def fingerprint(self) -> str:
        """The training ratings' `Ratings.fingerprint`."""
        return self.digest


def row_block(matrix: sp.csr_matrix, start: int, stop: int) -> sp.csr_matrix:
    """A copy of rows ``start..stop`` of ``matrix`` (of a memory map: reads only those rows)."""
    lo, hi = int(matrix.indptr[start]), int(matrix.indptr[stop])
    indptr = np.asarray(matrix.indptr[start : stop + 1], dtype=np.int64) - lo
    return sp.csr_matrix((np.array(matrix.data[lo:hi]), np.array(matrix.indices[lo:hi]), indptr),
                         shape=(stop - start, matrix.shape[1]))


def _save(folder: Path, name: str, matrix: sp.csr_matrix) -> tuple[int, int]:
    for part in _PARTS:
        np.save(folder / f"{name}.{part}.npy", getattr(matrix, part))
    return matrix.shape


def _mapped(folder: Path, name: str, shape: tuple[int, int]) -> sp.csr_matrix:
    """The saved matrix over memory maps of its files: nothing is read until it is used."""
    indptr, indices, data = (np.load(folder / f"{name}.{part}.npy", mmap_mode="r") for part in _PARTS)
    return sp.csr_matrix((data, indices, indptr), shape=shape, copy=False)


def mapped_copy(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """``matrix`` saved into a temporary folder and mapped back, the folder removed at once (the maps
    outlive their files): rank 0 keeps the whole ratings matrix this way while the ranks train, its
    pages read from the page cache when the artifact is saved or the evaluation needs them."""
    folder = Path(tempfile.mkdtemp(prefix="movierec-seen-"))
    try:
        return _mapped(folder, "seen", _save(folder, "seen", matrix))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_training_data(model: Recommender, train: Ratings, folder: Path
                         ) -> tuple[dict[str, sp.csr_matrix], dict[str, Any]]:
    """Rank 0: the ratings matrix (``seen``), the model's training matrix by user (``rows``; for
    ALS that is ``seen``) and by item (``cols``), saved and mapped back."""
    seen = train.csr
    shapes = {"seen": _save(folder, "seen", seen)}
    if model.name == "ials":
        rows = model.confidence_matrix(train)  # type: ignore[attr-defined]
        shapes["rows"] = _save(folder, "rows", rows)
        shapes["cols"] = _save(folder, "cols", rows.T.tocsr())
        del rows
        mu = 0.0
    else:
        shapes["cols"] = _save(folder, "cols", seen.T.tocsr())
        mu = float(train.rating.astype(np.float64).mean())  # as one process: in the file's order
    maps = {name: _mapped(folder, name, shape) for name, shape in shapes.items()}
    maps.setdefault("rows", maps["seen"])
    meta = {"n_users": train.n_users, "n_ratings": len(train), "mu": mu}
    return maps, meta


def cut_shards(maps: dict[str, sp.csr_matrix], meta: dict[str, Any], rank: int, world: int
         ) -> TrainShards:
    rows, cols, seen = maps["rows"], maps["cols"], maps["seen"]
    user_rows = row_block(rows, *shard_bounds(rows.shape[0], rank, world))
    item_rows = row_block(cols, *shard_bounds(cols.shape[0], rank, world))
    seen_rows = user_rows if rows is seen else row_block(seen, *shard_bounds(seen.shape[0], rank,
                                                                                   world))
    return TrainShards(user_rows, item_rows, seen_rows, meta["n_users"], meta["n_ratings"], meta["mu"])


def share_training_data(group: Group, model: Recommender, train: Ratings | None
                        ) -> tuple[TrainShards, sp.csr_matrix | None]:
    """Every rank's shards of ``model``'s training data, prepared by rank 0 from ``train`` (None on
    the other ranks, which never read the ratings).

    Returns:
        (this rank's `TrainShards`, on rank 0 the users x items ratings matrix over memory maps of
        files already removed, else None).

    Raises:
        DistributedError: another rank stopped or did not answer in time.
    """
    if not group.is_main:
        box: list[Any] = [None]
        guarded(group, "receiving the training data from rank 0",
                lambda: dist.recv_object_list(box, src=0))
        return box[0], None
    assert train is not None
    folder = Path(tempfile.mkdtemp(prefix="movierec-shards-"))
    try:
        maps, meta = write_training_data(model, train, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the maps outlive their files
    for rank in range(1, group.world_size):
        payload = [cut_shards(maps, meta, rank, group.world_size)]
        guarded(group, f"sending rank {rank} its training data",
                lambda payload=payload, rank=rank: dist.send_object_list(payload, dst=rank))
        del payload
    shards = cut_shards(maps, meta, 0, group.world_size)
    _drop_pages(maps["seen"])
    return shards, maps["seen"]


def _drop_pages(matrix: sp.csr_matrix) -> None:
    """Unmap the pages of ``matrix``'s memory maps that cutting the shards read: they count in the
    rank's RSS (every rank's block was read, ~0.1 GB at 16M ratings) until the artifact reads them
    again from the page cache when it is saved."""
    for part in _PARTS:
        array = getattr(matrix, part)
        while getattr(array, "base", None) is not None:
            array = array.base
        if isinstance(array, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            array.madvise(mmap.MADV_DONTNEED)


def give_back_memory() -> None:
    """After rank 0 dropped its ratings: collect their reference cycles and hand the freed heap back
    to the system (glibc keeps freed blocks of the heap otherwise, and the rank's RSS would not drop)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to ask
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def fit_sharded(model: Recommender, shards: TrainShards, group: Group, *,
                summary: TrainSummary | None = None, seen: sp.csr_matrix | None = None,
                valid: Ratings | None = None, callback: Callback | None = None,
                catalog: Catalog | None = None) -> Recommender:
    """Train ``model`` (iALS or biased-MF ALS) on every rank's shards.

    Rank 0 passes ``summary``, ``seen`` (from `share_training_data`), and optionally ``valid`` and
    ``callback``; it ends with the model fitted as `Recommender.fit` leaves it (``seen_`` the whole
    ratings matrix). The other ranks end with the same factors, ``seen_`` holding only their block's
    rows, and index vocabularies: enough to rank their users (`serve_ranking`), nothing to save.
    If training fails the model is left as it was.

    Raises:
        DistributedError: another rank stopped or timed out.
    """
    model._check_params()
    before = dict(model.__dict__)
    n_users, n_items = shards.n_users, shards.n_items
    try:
        model.__dict__.pop("_facts", None)
        model.__dict__.pop("retriever", None)
        if group.is_main:
            assert summary is not None and seen is not None
            model.users_, model.items_, model.scale_ = summary.users, summary.items, summary.scale
            model.seen_ = seen
            model.catalog_ = catalog
        else:
            model.users_ = Vocabulary(np.arange(n_users), "user")
            model.items_ = Vocabulary(np.arange(n_items), "movie")
            model.scale_ = (0.0, 0.0)
            model.seen_ = _padded(shards.seen_rows, *shard_bounds(n_users, group.rank,
                                                                   group.world_size), n_users)
            model.catalog_ = None
        if model.name == "ials":
            guarded(group, f"training {model.name}",
                    lambda: solve_ials(model, shards, group, callback))  # type: ignore[arg-type]
        else:
            rows = valid_tensors(model, valid, group.device) if group.is_main else None
            guarded(group, f"training {model.name}",
                    lambda: solve_als(model, shards, group, callback, rows))  # type: ignore[arg-type]
    except BaseException:
        model.__dict__.clear()
        model.__dict__.update(before)
        raise
    return model


def _padded(block: sp.csr_matrix, start: int, stop: int, n_rows: int) -> sp.csr_matrix:
    """``block`` (rows start..stop) as an n_rows-row matrix whose other rows are empty."""
    indptr = np.concatenate([np.zeros(start, dtype=np.int64), block.indptr,
                             np.full(n_rows - stop, block.nnz, dtype=np.int64)])
    return sp.csr_matrix((block.data, block.indices, indptr), shape=(n_rows, block.shape[1]))


# -- evaluation across the ranks ---------------------------------------------------------------
Ranker = Callable[..., tuple[np.ndarray, np.ndarray]]


def _rank_and_gather(group: Group, model: Recommender, request: tuple[Any, ...]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Rank the requested users whose seen rows this rank holds; rank 0 gets every rank's lists
    back in the requested order (the others get empty arrays)."""
    users, k, exclude_seen, candidates, diversity, workers = request
    start, stop = shard_bounds(len(model.users_), group.rank, group.world_size)
    mine = np.flatnonzero((users >= start) & (users < stop))
    items, scores = model.recommend_indices(users[mine], k, exclude_seen, candidates, diversity,
                                            workers)
    parts: list[Any] | None = [None] * group.world_size if group.is_main else None
    guarded(group, "evaluating across the ranks",
            lambda: dist.gather_object((mine, items, scores), parts, dst=0))
    width = min(int(k), len(model.items_))
    out_items = np.full((len(users) if parts else 0, width), -1, dtype=np.int64)
    out_scores = np.full(out_items.shape, -np.inf)
    for rows, part_items, part_scores in parts or ():
        out_items[rows] = part_items
        out_scores[rows] = part_scores
    return out_items, out_scores


def rank_across(group: Group, model: Recommender) -> Ranker:
    """Rank 0's stand-in for ``model.recommend_indices`` (same arguments and result): every rank
    ranks the users of its block (the others must be in `serve_ranking`)."""

    def rank(user_index: np.ndarray, k: int, exclude_seen: bool = True,
             candidates: np.ndarray | None = None, diversity: float = 0.0, workers: int = 1
             ) -> tuple[np.ndarray, np.ndarray]:
        request = (np.asarray(user_index, dtype=np.int64), int(k), bool(exclude_seen), candidates,
                   float(diversity), int(workers))
        guarded(group, "evaluating across the ranks",
                lambda: dist.broadcast_object_list([request], src=0))
        return _rank_and_gather(group, model, request)

    return rank


def serve_ranking(group: Group, model: Recommender) -> None:
    """A rank > 0 after training: rank its block's users for rank 0's requests until `stop_serving`."""
    while True:
        box: list[Any] = [None]
        guarded(group, "waiting for rank 0's evaluation",
                lambda box=box: dist.broadcast_object_list(box, src=0))
        if box[0] is None:
            return
        _rank_and_gather(group, model, box[0])


def stop_serving(group: Group) -> None:
    """Rank 0: tell the ranks in `serve_ranking` that the evaluation is over."""
    guarded(group, "ending the evaluation", lambda: dist.broadcast_object_list([None], src=0))
