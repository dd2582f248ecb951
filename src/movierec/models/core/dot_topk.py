"""Known users' top-k on the CPU for inner-product models: a float32 pass, proven in float64.

A model whose known-user scores are ``x_u · y_i + b_i`` in float64 (`Recommender._dot_parts`, exact;
the models that opt in with `Recommender.ranks_on_device`) spends most of a full-ranking evaluation
or a recommend-all on two things: the float64 matrix product and the selection over its rows. Both
cost about a third as much in float32 (one block of 1,024 users by 86,000 movies at 64 factors, one
thread: 0.71 s + 0.25 s in float64 against 0.20 s + 0.13 s in float32). `DotTopK32` takes the
float32 road and still returns float64's answer:

1. score a block of users in float32 and keep, per user, the best ``k + spare`` allowed movies by
   `top_k` (seen and non-candidate movies masked as everywhere). The movies are scored in stages,
   largest possible score first (ordered by ``|y_i| c + b_i``, c a typical user norm): the first
   `FIRST_STAGE` movies (or a 32nd of the catalog), then twice as many, and so on. After a stage, a
   user whose kept list is full stops when no later movie can reach its last kept score: by
   Cauchy-Schwarz every later movie scores at most ``|x_u| max_later |y_i| + max_later b_i``. A
   fitted iALS's movie norms fall off with popularity like its ratings do, so on 32M MovieLens-shaped
   ratings (87k movies, 64 factors) 99% of the users stop after the first 2.7k movies and a block
   costs a tenth of scoring every movie; factors whose norms are all alike (rating models with a
   bias folded in) never stop early and cost what one full pass does;
2. re-score those movies in float64, pair by pair as ``_predict`` does (so a list's scores are the
   model's `predict` scores, whatever the block), and order them by (score, item index);
3. prove the list. A float32 sum of the d products ``x_u,j y_i,j`` plus ``b_i`` differs from the
   exact one by at most ``(d + 2) u (sum_j |x_u,j y_i,j| + |b_i|)`` with u = 2^-24 (Higham's
   gamma bound, the float32 rounding of float64 inputs included), and ``sum_j |x_u,j y_i,j| <=
   |x_u| |y_i|``. `bound` doubles that, with ``max_i |y_i|`` and ``max_i |b_i|``, which also covers
   the float64 sums' own rounding. Every allowed movie left out of step 1 scored at most ``t`` (the
   last kept movie's float32 score) or was never scored and is bounded by ``t`` exactly, so its
   float64 score is at most ``t + bound``; where the k-th
   refined score is above that, no movie outside can enter the list or tie with it, and the list is
   the float64 one. Rows where it is not (many movies within rounding of the k-th: ties, equal
   vectors, non-finite factors) are ranked again from full float64 rows and refined the same way.

Results follow `movierec.models.core.topk`'s contract: best first, equal scores by ascending item
index, -1 / -inf in slots a user cannot fill.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from movierec._arrays import concat_ranges
from movierec.models.core.topk import check_exclude, top_k

__all__ = ["MIN_ITEMS", "DotTopK32", "rescore_top"]

#: Catalogs smaller than this are ranked in float64 directly: a row of a few thousand scores costs
#: too little for the two passes to pay off.
MIN_ITEMS = 4096

#: Movies in the float32 pass's first stage (or a 32nd of the catalog, if more); each later stage
#: doubles the movies scored.
FIRST_STAGE = 1024
# Scores computed at once within a stage (rows x the stage's movies), float64 scores in the rows
# ranked again from full rows, and float64 products re-scored at once (rows x kept x factors):
# bounds the scratch whatever the block of users.
_STAGE_ELEMENTS = 1 << 22
_REDO_ELEMENTS = 1 << 22
_RESCORE_ELEMENTS = 1 << 22

_U32 = 2.0**-24


class DotTopK32:
    """Top-k by ``users[u] · items[i] + offsets[i]`` in float64, found by a float32 pass.

    Args:
        users (n_users, d), items (n_items, d), offsets (n_items,): the model's `DotParts` arrays.
        full_scores: float64 score rows for user indices (the model's ``_score_users``), for the rows
            the float32 pass cannot prove.

    Attributes:
        batch_users: users a caller should rank at once: a call's scratch is bounded by its stages'
            pieces, not by its users, and large batches spread the per-call costs (selection set-up,
            a Parquet row group in `recommend-all`) over more users.
    """

    batch_users = 4096

    def __init__(self, users: np.ndarray, items: np.ndarray, offsets: np.ndarray,
                 full_scores: Callable[[np.ndarray], np.ndarray]) -> None:
        self.users = users
        self.items32 = np.ascontiguousarray(items, dtype=np.float32)
        self.offsets32 = np.ascontiguousarray(offsets, dtype=np.float32)
        self.items64 = np.asarray(items, dtype=np.float64)
        self.offsets64 = np.asarray(offsets, dtype=np.float64)
        self.full_scores = full_scores
        d = self.items64.shape[1]
        norms = _norms(self.items64)
        with np.errstate(invalid="ignore"):
            item_norm = float(np.max(norms, initial=0.0))
            offset_max = float(np.max(np.abs(self.offsets64), initial=0.0))
        self._item_norm, self._offset_max = item_norm, offset_max
        self._factor = 2.0 * (d + 2) * _U32
        self._prepare_stages(users, norms)

    def _prepare_stages(self, users: np.ndarray, norms: np.ndarray) -> None:
        """The movies in the order the float32 pass scores them (largest score bound first) and, for
        each stage boundary, the bound on every later movie's vector norm (``norms``) and offset."""
        n_items = self.items64.shape[0]
        sample = _norms(np.asarray(users[:: max(1, len(users) // 4096)], np.float64))
        with np.errstate(over="ignore", invalid="ignore"):
            typical = float(np.median(sample)) if len(sample) else 1.0
            key = norms * (typical if np.isfinite(typical) else 1.0) + self.offsets64
        # NaN keys sort last; a NaN norm or offset makes every bound before it NaN (never proven)
        order = np.argsort(-key, kind="stable")
        self._order = order
        self._inverse = np.empty(n_items, dtype=np.int64)
        self._inverse[order] = np.arange(n_items)
        self._items32_ordered = np.ascontiguousarray(self.items32[order])
        self._offsets32_ordered = np.ascontiguousarray(self.offsets32[order])
        # suffix maxima: _tail_norm[h] bounds |y_i| and _tail_offset[h] bounds b_i for the movies
        # from position h on (NaN-propagating maximum: a NaN anywhere later poisons the bound)
        self._tail_norm = np.maximum.accumulate(norms[order][::-1])[::-1]
        self._tail_offset = np.maximum.accumulate(self.offsets64[order][::-1])[::-1]
        first = min(n_items, max(FIRST_STAGE, n_items // 32, 1))
        ends = [first]
        while ends[-1] < n_items:
            ends.append(min(n_items, 2 * ends[-1]))
        self._stage_ends = ends

    def bound(self, users64: np.ndarray) -> np.ndarray:
        """Per user (rows of ``users64``), how far a float32 score may be from the exact one."""
        return self._bound(_norms(users64))

    def _bound(self, norms: np.ndarray) -> np.ndarray:
        """`bound` from the users' vector norms. Below float32's normal range each rounding may also
        be off by half the smallest subnormal, 2^-150: at most d 2^-149 over the sum's products, and
        2^-150 (sqrt(d) (|x_u| + max |y_i|) + 1) for the float32 rounding of the factors and the
        offset; doubled with the rest."""
        d = self.items64.shape[1]
        with np.errstate(over="ignore", invalid="ignore"):
            subnormal = d * 2.0**-149 + 2.0**-150 * (np.sqrt(d) * (norms + self._item_norm) + 1.0)
            return self._factor * (norms * self._item_norm + self._offset_max) + 2.0 * subnormal

    def _no_overflow(self, norms: np.ndarray) -> np.ndarray:
        """Per user (its vector norm), whether no float32 factor, product or partial sum of its
        scores can overflow (every one is at most |x_u| max |y_i| + max |b_i|, with rounding's
        growth, kept below 2^126). Where one could, a movie may have dropped out of the float32 pass
        as NaN: such rows are ranked from float64 rows."""
        with np.errstate(over="ignore", invalid="ignore"):
            largest = np.maximum(norms * self._item_norm + self._offset_max, norms)
            return (largest < 2.0**126) & (max(self._item_norm, self._offset_max) < 2.0**126)

    def top_k(self, user_index: np.ndarray, k: int, exclude: sp.csr_matrix | None = None,
              candidates: np.ndarray | None = None, spare: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """(items (n, k') int64, scores (n, k') float64), k' = min(k, n_items), for the users
        ``user_index``; ``exclude`` holds their rows only (n x n_items, stored entries not allowed),
        ``candidates`` is a bool mask over items. ``spare``: movies kept beyond k' in the float32
        pass (default max(8, k' // 4))."""
        user_index = np.asarray(user_index, dtype=np.int64)
        n_items = self.items32.shape[0]
        exclude = check_exclude(exclude, (len(user_index), n_items))
        if candidates is not None:
            candidates = np.asarray(candidates)
            if candidates.dtype != np.bool_ or candidates.shape != (n_items,):
                raise ValueError(f"candidates must be a bool array of shape ({n_items},), got "
                                 f"{candidates.dtype} {candidates.shape}")
        width = min(int(k), n_items)
        pick = _picked(width, n_items, spare)
        if width == 0 or len(user_index) == 0:
            return (np.full((len(user_index), width), -1, dtype=np.int64),
                    np.full((len(user_index), width), -np.inf))
        block = self.users[user_index]
        users64 = block.astype(np.float64)
        norms = _norms(users64)
        with np.errstate(over="ignore", invalid="ignore"):  # such rows go to float64 (_no_overflow)
            kept, kept32, _ = self._staged_pass(block.astype(np.float32, copy=False), norms, pick,
                                                exclude, candidates)
        items = np.empty((len(user_index), width), dtype=np.int64)
        scores = np.empty((len(user_index), width))
        step = max(1, _RESCORE_ELEMENTS // (pick * max(self.items64.shape[1], 1)))
        for start in range(0, len(user_index), step):  # a piece of rows at a time: bounded scratch
            rows = slice(start, start + step)
            items[rows], scores[rows] = rescore_top(users64[rows], self.items64, self.offsets64,
                                                    kept[rows], width)
        last = kept32[:, -1].astype(np.float64)
        with np.errstate(invalid="ignore"):
            # a row that kept fewer than `pick` movies kept every allowed one: nothing was left out
            proven = self._no_overflow(norms) & (
                (kept[:, -1] < 0) | (scores[:, -1] > last + self._bound(norms)))
        redo = np.flatnonzero(~proven)
        step = max(1, _REDO_ELEMENTS // n_items)
        for start in range(0, len(redo), step):
            rows = redo[start : start + step]
            full = self.full_scores(user_index[rows])
            again, _ = top_k(full, pick, None if exclude is None else exclude[rows], candidates,
                             overwrite=True)
            del full
            items[rows], scores[rows] = rescore_top(users64[rows], self.items64, self.offsets64, again,
                                                    width)
        return items, scores

    def _staged_pass(self, users32: np.ndarray, user_norm: np.ndarray, pick: int,
                     exclude: sp.csr_matrix | None, candidates: np.ndarray | None
                     ) -> tuple[np.ndarray, np.ndarray, int]:
        """Step 1 in stages: per row, the ``pick`` best allowed movies by float32 score (item indices,
        -1 where fewer are allowed), their float32 scores and the number of (row, movie) scores
        computed, where a row stops being scored once no
        movie after the current stage can reach its ``pick``-th float32 score (|x_u| times the
        largest later |y_i|, plus the largest later offset, bounds their exact scores), so that
        every movie a row leaves out scored at most its last kept float32 score or was never
        reached by it. ``user_norm``: the rows' float64 vector norms; ``exclude`` as `check_exclude`
        gives it."""
        n_rows = len(users32)
        kept = np.full((n_rows, pick), -1, dtype=np.int64)
        kept32 = np.full((n_rows, pick), np.nan, dtype=np.float32)
        if exclude is not None:
            excl_pos = self._inverse[exclude.indices]  # each seen movie's place in the scoring order
        banned = None if candidates is None else ~candidates[self._order]
        active = np.arange(n_rows)
        lo = scored = 0
        for hi in self._stage_ends:
            scored += len(active) * (hi - lo)
            step = max(1, _STAGE_ELEMENTS // (hi - lo))
            for start in range(0, len(active), step):
                rows = active[start : start + step]
                scores32 = users32[rows] @ self._items32_ordered[lo:hi].T
                if self._offset_max:
                    scores32 += self._offsets32_ordered[lo:hi]
                if banned is not None:
                    scores32[:, banned[lo:hi]] = np.nan
                if exclude is not None:  # the piece's own seen movies, through the CSR's row pointers
                    counts = exclude.indptr[rows + 1] - exclude.indptr[rows]
                    pos = excl_pos[concat_ranges(exclude.indptr[rows], counts)]
                    r = np.repeat(np.arange(len(rows)), counts)
                    hit = (pos >= lo) & (pos < hi)
                    scores32[r[hit], pos[hit] - lo] = np.nan
                # the rows' kept movies compete with the stage's: NaN (not allowed) in unfilled slots
                top, top32 = top_k(np.hstack([kept32[rows], scores32]), pick, overwrite=True)
                del scores32
                from_kept = (top >= 0) & (top < pick)
                merged = np.where(top >= pick, self._order[np.clip(top - pick + lo, 0, None)], -1)
                merged[from_kept] = np.take_along_axis(kept[rows], np.where(from_kept, top, 0),
                                                       axis=1)[from_kept]
                top32[top < 0] = np.nan
                kept[rows], kept32[rows] = merged, top32
            if hi == len(self._order):
                break
            with np.errstate(over="ignore", invalid="ignore"):
                reach = user_norm[active] * self._tail_norm[hi] + self._tail_offset[hi]
                reach += 1e-9 * (np.abs(reach) + np.abs(self._tail_offset[hi]))  # float64 rounding
                done = (kept[active, -1] >= 0) & (reach <= kept32[active, -1])
            active = active[~done]
            if not len(active):
                break
            lo = hi
        kept32[kept < 0] = -np.inf
        return kept, kept32, scored

    def scored_share(self, user_index: np.ndarray, k: int, exclude: sp.csr_matrix | None = None) -> float:
        """The share of (user, movie) scores the float32 pass computes for these users' top ``k``
        (1.0: every movie scored; ``exclude`` as in `top_k`): what exact ranking costs here, against
        scoring every movie."""
        user_index = np.asarray(user_index, dtype=np.int64)
        n_items = len(self._order)
        if len(user_index) == 0 or n_items == 0:
            return 1.0
        block = self.users[user_index]
        pick = _picked(min(int(k), n_items), n_items, None)
        exclude = check_exclude(exclude, (len(user_index), n_items))
        with np.errstate(over="ignore", invalid="ignore"):
            _, _, scored = self._staged_pass(block.astype(np.float32, copy=False),
                                             _norms(block.astype(np.float64)), pick, exclude, None)
        return scored / (len(user_index) * n_items)


def _norms(rows: np.ndarray) -> np.ndarray:
    """Each row's Euclidean norm, float64 (inf or NaN where the row has such values)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sqrt(np.einsum("ij,ij->i", rows, rows))


def _picked(width: int, n_items: int, spare: int | None) -> int:
    """Movies the float32 pass keeps per row for a list of ``width``: ``spare`` more (default
    max(8, width // 4)), at most the catalog."""
    return min(n_items, width + (max(8, width // 4) if spare is None else int(spare)))


def rescore_top(users64: np.ndarray, items: np.ndarray, offsets: np.ndarray, kept: np.ndarray,
                width: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's kept movies (``kept``, -1 in unused slots) re-scored in float64, pair by pair as
    ``_predict`` does (``users64[r] · items[i] + offsets[i]``; float32 factors widen exactly), and
    ordered by (score, index), cut to ``width``; -1 slots stay -1 / -inf and sort last."""
    filled = kept >= 0
    safe = np.where(filled, kept, 0)
    # (rows, slots, d) against each row's user: the reduction over d runs in einsum's same inner loop
    # as _predict's "nk,nk->n" (contiguous d, one sum per pair), without repeating each user's vector
    # per slot first (2.4x faster on 2,000 x 18 pairs; the equality is held to the bit by the tests)
    with np.errstate(invalid="ignore", over="ignore"):  # unfilled slots may read inf factors
        exact = (np.einsum("nsk,nk->ns", np.asarray(items[safe], np.float64), users64)
                 + np.asarray(offsets[safe], np.float64))
    exact[~filled] = -np.inf
    # by score; rows where two movies score the same (equal vectors) by (score, index):
    # a sort by one key and a check for ties cost a third of sorting every row by two keys
    order = np.argsort(-exact, axis=1)
    rows = np.arange(len(kept))[:, None]  # plain fancy indexing: take_along_axis costs ~5 us more a call
    ordered = exact[rows, order]
    tied = np.flatnonzero(((ordered[:, 1:] == ordered[:, :-1]) & np.isfinite(ordered[:, 1:])).any(axis=1)
                          | (filled & ~np.isfinite(exact)).any(axis=1))
    if len(tied):
        key = np.where(filled[tied], kept[tied], len(items))  # unfilled slots after any movie
        order[tied] = np.lexsort((key, -exact[tied]), axis=1)
    order = order[:, :width]
    return kept[rows, order], exact[rows, order]
