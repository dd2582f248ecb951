"""Top-k selection over dense score matrices: the hot path behind every `recommend` call.

`top_k` is the fast, vectorised selection; `top_k_reference` is a plain per-row ``sorted()`` kept
beside it so that a test can prove the two agree, tie for tie (as the `implicit` library does).

Contract shared by both:

- rows are users (or any queries), columns are item *indices* (dense, 0-based), never raw ids;
- row r of the result lists the k highest-scoring *allowed* items of row r, best first; equal scores
  are ordered by ascending item index, so results are deterministic (and, since vocabularies are sorted,
  ties fall to the lowest raw id as BENCHMARKS.md asks);
- an item is not allowed for row r when it is a stored entry of row r of ``exclude`` (the sparsity
  structure; values, even explicit zeros, are ignored), when ``candidates`` is False for it, or when its
  score is NaN; ``-inf`` is an ordinary (lowest) score and such items can be returned;
- k' = min(k, n_items) columns come back; slots a row cannot fill (fewer than k' allowed items) hold
  index -1 and score -inf.
"""

from __future__ import annotations

import operator

import numpy as np
import scipy.sparse as sp

from movierec._arrays import run_positions

__all__ = ["check_exclude", "top_k", "top_k_reference"]

# Rows are processed in blocks of about this many scores: bounds the scratch memory (a masked copy of
# the block, plus a negated copy and a mask on the exact path) to tens of MB whatever the batch size,
# and keeps each block cache-friendly. Tests shrink it to exercise block boundaries.
_BLOCK_ELEMENTS = 1 << 22
# Columns per group of the prefilter (see `_select_block`); larger groups make the group maxima cheaper
# to rank but each selected group costlier to scan.
_GROUP_MAX = 64


def top_k(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
    *,
    overwrite: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best allowed items of every row of a score matrix, best first.

    Args:
        scores: (n_users, n_items) real scores, higher is better; columns are item indices. Not
            modified unless ``overwrite``: masking happens on a copy, one block of rows at a time (no
            copy at all when neither ``exclude`` nor ``candidates`` is given). Integer and bool scores
            rank as float64.
        k: how many items per row, an int >= 0. Larger than n_items is fine: n_items columns come back.
        exclude: optional sparse (n_users, n_items); the stored entries of row r (e.g. the items user r
            rated in train) are never returned for row r. Any scipy sparse format; dense is converted.
        candidates: optional bool mask, (n_items,) for all rows or (n_users, n_items) per row; items
            where it is False are never returned.
        overwrite: ``scores`` is the caller's scratch: mask it in place instead of copying each
            block (its values are undefined afterwards).

    Returns:
        ``(indices, values)``, both (n_users, k') with k' = min(k, n_items): ``indices`` int64 item
        indices, best first, ties by ascending index, -1 in unfilled slots; ``values`` their scores
        (the float dtype of ``scores``, float64 for integer input), -inf in unfilled slots.

    Raises:
        ValueError: on a k that is not an int >= 0, scores that are not a 2-D real array, or an
            ``exclude`` / ``candidates`` of the wrong shape or dtype.
    """
    scores, k = _check_scores_and_k(scores, k)
    n_users, n_items = scores.shape
    excl = check_exclude(exclude, scores.shape)
    banned = _check_candidates(candidates, scores.shape)
    work_dtype = _work_dtype(scores.dtype)
    kk = min(k, n_items)
    indices = np.empty((n_users, kk), dtype=np.int64)
    values = np.empty((n_users, kk), dtype=work_dtype)
    if kk == 0 or n_users == 0:
        return indices, values

    masked = excl is not None or banned is not None
    block = max(1, _BLOCK_ELEMENTS // n_items)
    for r0 in range(0, n_users, block):
        r1 = min(r0 + block, n_users)
        # NaN marks "not allowed" from here on: NaN-ignoring reductions skip it, comparisons reject it
        # and sorts put it last, while -inf stays an ordinary score.
        # C order: the exclusion scatter below writes through a flat view.
        work = scores[r0:r1].astype(work_dtype, order="C", copy=masked and not overwrite)
        if excl is not None:
            lo, hi = excl.indptr[r0], excl.indptr[r1]
            rows = np.repeat(np.arange(r1 - r0, dtype=np.int64), np.diff(excl.indptr[r0 : r1 + 1]))
            work.reshape(-1)[rows * n_items + excl.indices[lo:hi]] = np.nan
        if banned is not None:
            np.copyto(work, np.nan, where=banned if banned.ndim == 1 else banned[r0:r1])
        indices[r0:r1], values[r0:r1] = _select_block(work, kk)
    return indices, values


def _select_block(work: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Top kk of each row of ``work`` (b, n), NaN = not allowed; ``work`` is only read.

    A full-row (arg)partition costs ~1 s per 10^8 scores, so rows are first cut down exactly: split
    the columns into groups and take each group's maximum. The kk-th largest group maximum t is a lower
    bound on the row's kk-th largest score (kk distinct elements reach it), so the top kk are among
    the elements >= t, and every element > t lies in one of the (< kk) groups whose maximum is > t.
    Usually only about kk groups reach t, and scanning them is all it takes. Where many groups tie
    at t, the elements > t come from the few groups above t and the rest are the lowest-indexed
    elements equal to t. Rows where t does not exist (fewer than kk groups hold an allowed item) go
    to the exact full-row path.
    """
    b, n = work.shape
    g = min(_GROUP_MAX, n // (8 * kk))
    if g < 4:  # small catalog or large k: grouping would not shrink the problem
        return _select_exact(work, kk)
    n_groups = n // g
    body = n_groups * g
    # Group j is the strided set of columns j, j + n_groups, ..., so the reshape is a view and the
    # reduction runs over whole contiguous rows; tail columns past `body` are groups of one.
    gmax = np.fmax.reduce(work[:, :body].reshape(b, g, n_groups), axis=1)
    if body < n:
        gmax = np.concatenate([gmax, work[:, body:]], axis=1)
    with np.errstate(invalid="ignore"):
        t = -np.partition(-gmax, kk - 1, axis=1)[:, kk - 1]
        reach = gmax >= t[:, None]
        above = gmax > t[:, None]
    n_reach = np.count_nonzero(reach, axis=1)
    found = n_reach >= kk  # False exactly where t is NaN
    tied = found & (n_reach > max(4 * kk, gmax.shape[1] // 4))
    scan = np.where(tied[:, None], above, reach)
    scan[~found] = False

    r, j = np.nonzero(scan)
    in_body = j < n_groups
    rows = np.concatenate([np.repeat(r[in_body], g), r[~in_body]])
    cols = np.concatenate(
        [(j[in_body, None] + n_groups * np.arange(g)).ravel(), j[~in_body] - n_groups + body]
    )
    vals = work[rows, cols]
    keep = (vals > t[rows]) | ((vals == t[rows]) & ~tied[rows])
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    short = np.flatnonzero(tied)
    room = kk - np.bincount(rows, minlength=b)[short]
    short, room = short[room > 0], room[room > 0]
    if short.size:
        at, col = _first_equal(work, short, t[short], room)
        rows = np.concatenate([rows, short[at]])
        cols = np.concatenate([cols, col])
        vals = np.concatenate([vals, t[short[at]]])
    indices, values = _best_of_candidates(rows, cols, vals, b, kk)
    if not found.all():
        indices[~found], values[~found] = _select_exact(work[~found], kk)
    return indices, values


def _select_exact(work: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Top kk of each row of ``work`` (NaN = not allowed) from a full-row partition."""
    # Negated, the kk best are the kk smallest, and NaN (which partitions place after every number)
    # comes after them, including after the +inf that a genuine -inf score becomes. Partitioning
    # values is faster than argpartition, and the index sets follow from the bound anyway.
    neg = np.negative(work)
    bound = np.partition(neg, kk - 1, axis=1)[:, kk - 1]
    # A NaN bound means fewer than kk allowed items: take them all.
    bound[np.isnan(bound)] = np.inf
    take = neg <= bound[:, None]
    # Ties at the bound can make whole rows candidates (all-equal scores); cut each such row to the
    # kk that win: everything strictly better plus the lowest-indexed equal ones.
    over = np.flatnonzero(np.count_nonzero(take, axis=1) > kk)
    if over.size:
        take[over] = neg[over] < bound[over, None]
        room = kk - np.count_nonzero(take[over], axis=1)
        at, col = _first_equal(neg, over, bound[over], room)
        take[over[at], col] = True
    rows, cols = np.nonzero(take)
    return _best_of_candidates(rows, cols, work[rows, cols], work.shape[0], kk)


def _first_equal(
    work: np.ndarray, rows: np.ndarray, target: np.ndarray, room: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``room[i]`` columns of row ``rows[i]`` of ``work`` whose value equals ``target[i]``.

    Every row must hold at least ``room[i]`` such values. Returns ``(i, column)`` pairs, ``i``
    indexing ``rows``.
    """
    # Ties to break are plentiful where this is called, so a short prefix of the row usually holds
    # enough of them; widen it only for the rows that need more, instead of a cumsum over whole rows.
    n = work.shape[1]
    width = min(n, max(64, 8 * int(room.max())))
    todo = np.arange(rows.size)
    found_at, found_col = [], []
    while todo.size:
        equal = work[rows[todo], :width] == target[todo, None]
        seen = np.cumsum(equal, axis=1, dtype=np.int64)
        done = seen[:, -1] >= room[todo]
        at, col = np.nonzero(equal[done] & (seen[done] <= room[todo[done], None]))
        found_at.append(todo[done][at])
        found_col.append(col)
        todo = todo[~done]
        width = min(n, 8 * width)
    return np.concatenate(found_at), np.concatenate(found_col)


def _best_of_candidates(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int, kk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the kk best of the candidate (row, col, value) triples, best first, ties by col.

    Rows with fewer than kk candidates are padded with index -1 and value -inf.
    """
    order = np.lexsort((cols, -vals, rows))
    counts = np.bincount(rows, minlength=n_rows)
    rank = run_positions(counts)
    keep = rank < kk
    order, rank = order[keep], rank[keep]
    indices = np.full((n_rows, kk), -1, dtype=np.int64)
    values = np.full((n_rows, kk), -np.inf, dtype=vals.dtype)
    indices[rows[order], rank] = cols[order]
    values[rows[order], rank] = vals[order]
    return indices, values


def top_k_reference(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` written the obvious way: one Python ``sorted()`` per row. Slow; for tests.

    Same arguments, result and errors as `top_k`.
    """
    scores, k = _check_scores_and_k(scores, k)
    n_users, n_items = scores.shape
    excl = check_exclude(exclude, scores.shape)
    banned = _check_candidates(candidates, scores.shape)
    if banned is not None:
        banned = np.broadcast_to(banned, scores.shape)
    kk = min(k, n_items)
    indices = np.full((n_users, kk), -1, dtype=np.int64)
    values = np.full((n_users, kk), -np.inf, dtype=_work_dtype(scores.dtype))
    for u in range(n_users):
        row = [float(x) for x in scores[u]]
        skip = set() if excl is None else set(excl.indices[excl.indptr[u] : excl.indptr[u + 1]].tolist())
        allowed = [
            (-row[j], j)
            for j in range(n_items)
            if j not in skip and not (banned is not None and banned[u, j]) and row[j] == row[j]
        ]
        best = [j for _, j in sorted(allowed)[:kk]]
        indices[u, : len(best)] = best
        values[u, : len(best)] = [row[j] for j in best]
    return indices, values


def _check_scores_and_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    try:
        k = operator.index(k)
    except TypeError:
        raise ValueError(f"k must be an int >= 0, got {k!r}") from None
    if isinstance(k, bool) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (n_users, n_items), got shape {scores.shape}")
    if scores.dtype.kind not in "biuf":
        raise ValueError(f"scores must hold real numbers, got dtype {scores.dtype}")
    return scores, k


def _work_dtype(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def check_exclude(exclude: object, shape: tuple[int, int]) -> sp.csr_matrix | None:
    """``exclude`` as CSR, checked to have ``shape`` (None stays None)."""
    if exclude is None:
        return None
    excl = sp.csr_matrix(exclude) if sp.issparse(exclude) else sp.csr_matrix(np.asarray(exclude))
    if excl.shape != shape:
        raise ValueError(f"exclude must have the shape of scores {shape}, got {excl.shape}")
    return excl


def _check_candidates(candidates: object, shape: tuple[int, int]) -> np.ndarray | None:
    """The negation of ``candidates`` (True = banned), validated."""
    if candidates is None:
        return None
    cand = np.asarray(candidates)
    if cand.dtype != np.bool_:
        raise ValueError(f"candidates must be a bool array, got dtype {cand.dtype}")
    if cand.shape not in (shape[1:], shape):
        raise ValueError(f"candidates must have shape ({shape[1]},) or {shape}, got {cand.shape}")
    return ~cand
