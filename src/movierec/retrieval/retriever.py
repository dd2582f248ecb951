"""Known users' top-k from an `AnnIndex`, with the exact path's guarantees, and `attach`, the policy
that decides when a model gets one.

`AnnRetriever.top_k` answers `Recommender.recommend_indices` (diversity 0) for a model whose
`DotParts` it was built from. Per user it over-fetches: first ``k`` plus the seen movies the model is
expected to rank above the k-th unseen one (`AnnIndex.seen_ahead`, measured at calibration), divided
by the share of movies that pass the filters, plus a margin; drops seen and
filtered movies; orders the rest by the index's inner products, re-scores the list exactly (float64;
with `_SPARE` more candidates where the index's float32 products cannot tell the k-th from the next
within their rounding bound) and orders it by (score, item index) as `movierec.models.core.topk`
does. A user whose list does not fill is fetched twice as deep each round, up to deep enough for all
their seen movies, and with more lists probed where the probed ones ran out; one whose candidates
still run out before ``k`` while allowed movies remain, or who would need more than
`_MAX_FETCH_SHARE` of the catalog fetched, is scored exactly by the model instead: filters and
seen-item exclusion hold whatever the index returns.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from movierec._arrays import concat_ranges
from movierec.errors import ConfigError
from movierec.models.core.dot_topk import rescore_top
from movierec.models.core.recommender import DotParts, Recommender, block_users
from movierec.models.core.topk import top_k
from movierec.retrieval.index import AnnIndex, check_gpu, exact_scores, faiss_gpus, load_faiss

__all__ = ["ANN_MIN_ITEMS", "ANN_MODES", "EXACT_SHARE", "AnnRetriever", "attach", "describe"]

log = logging.getLogger(__name__)

#: ``ann="auto"`` uses an index from this many movies up (below it, scoring every movie is fast).
ANN_MIN_ITEMS = 20_000
#: ``ann="auto"`` uses no index for a model whose exact ranking computes at most this share of the
#: (user, movie) scores (`DotTopK32.scored_share`, measured on the calibration users): there the
#: exact path runs at half the index's speed or better (iALS on 80k movies: it scores a 32nd of them,
#: 54k users a second against faiss' 67k), and its lists are exact.
EXACT_SHARE = 0.125
ANN_MODES = ("auto", "on", "off")
# A user needing more than this share of the catalog fetched is cheaper to score exactly.
_MAX_FETCH_SHARE = 0.25
# Fetched entries handled per block (users x fetched), to bound scratch memory.
_BLOCK_ELEMENTS = 1 << 20
# Users x movies in the scratch mask that drops seen movies from fetched lists (bytes: one each).
_MASK_ELEMENTS = 1 << 22
# Candidates fetched beyond those a user's list is expected to need (`AnnRetriever.top_k`).
_FETCH_MARGIN = 4
# Candidates re-scored exactly beyond k, so that near-ties at the list's edge resolve exactly.
_SPARE = 8
# Users whose lists calibrate the index.
_CALIBRATION_USERS = 300


class AnnRetriever:
    """`Recommender.retriever` over an `AnnIndex` built from ``parts``.

    Attributes:
        index: the `AnnIndex`.
        ann_users, exact_users: users answered from the index, and users scored exactly instead
            (candidates ran out, or too many to fetch), since construction.
        batch_users: users a caller should ask for at once (`movierec.export.recommend_all`'s chunk):
            the scratch of a call grows with users x fetched movies, not users x movies, and the
            index answers a large batch far faster per user than many small ones (recommend-all
            for 60k users over 80k movies: 2.3 s in chunks of 194 users, the exact path's, against
            1.2 s in chunks of 4,096).
    """

    batch_users = 4096

    def __init__(self, index: AnnIndex, parts: DotParts) -> None:
        self.index = index
        self._items, self._offsets = parts.items, parts.offsets
        self.ann_users = 0
        self.exact_users = 0

    def top_k(self, model: Recommender, user_index: np.ndarray, k: int, exclude: sp.csr_matrix | None,
              candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        parts = model._dot_parts()
        if parts is None or parts.items is not self._items or parts.offsets is not self._offsets:
            return None  # the model changed since the index was built: score exactly
        n_items = len(parts.items)
        width = min(int(k), n_items)
        items = np.full((len(user_index), width), -1, dtype=np.int64)
        scores = np.full((len(user_index), width), -np.inf)
        if width == 0 or len(user_index) == 0:
            return items, scores
        allowed_items = n_items if candidates is None else int(np.count_nonzero(candidates))
        user_index = np.asarray(user_index, dtype=np.int64)
        excluded = np.zeros(len(user_index), dtype=np.int64)
        seen_rows = None  # each user's excluded movies: where their run starts in exclude.indices, its length
        if exclude is not None:
            seen_rows = _SeenRows(exclude, user_index)
            excluded = seen_rows.lengths
            if candidates is not None:
                row_of, movies = seen_rows.pairs(np.arange(len(user_index)))
                excluded = np.bincount(row_of[candidates[movies]], minlength=len(user_index))
        allowed = allowed_items - excluded
        share = allowed_items / n_items

        def rounded(need: np.ndarray) -> np.ndarray:  # powers of two: few distinct batch shapes
            return np.minimum(1 << np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64), n_items)

        # Fetch enough for k allowed movies first: k divided by the share of movies the filters
        # allow, plus the seen movies the model is expected to rank among them (the index's
        # calibrated share of a user's seen movies that rank above their 10th unseen one: a rating
        # model rarely puts seen movies first, an implicit one often does), plus `_FETCH_MARGIN`.
        # A user whose list does not fill is fetched twice as deep each round, up to deep enough for
        # all their excluded movies; one whose probed lists ran out probes 4x the lists; one who
        # still has too few once every list is probed is scored exactly. Doubling, not jumping
        # straight to the deepest fetch, because a fetch costs with its depth (faiss keeps a heap of
        # it): on 80k movies faiss answers a fetch of 16 about 1.1x as fast as one of 32.
        deep = rounded(np.ceil((width + excluded) / max(share, 1e-12) * 1.2).astype(np.int64) + 16)
        ahead = np.ceil(self.index.seen_ahead * excluded)
        need = np.ceil((width + ahead) / max(share, 1e-12)).astype(np.int64) + _FETCH_MARGIN
        fetch = np.minimum(rounded(need), deep)
        # too deep to be worth it, or every list probed in vain: scored exactly below
        left = deep > max(_MAX_FETCH_SHARE * n_items, 4 * width + 64)
        answered = np.zeros(len(user_index), dtype=bool)
        index = self.index
        probe = np.full(len(user_index), min(index.nprobe, index.nlist), dtype=np.int64)
        probed = probe.copy()  # lists the last fetch probed
        ran_out = np.zeros(len(user_index), dtype=bool)
        while True:
            todo = np.flatnonzero(~answered & ~left)
            if not len(todo):
                break
            # users fetched alike, one search each: (depth, lists) as one integer key
            key = fetch[todo] * (index.nlist + 1) + probe[todo]
            for both in np.unique(key).tolist():
                m, p = divmod(both, index.nlist + 1)
                group = todo[key == both]
                step = max(1, _BLOCK_ELEMENTS // m)
                # lists hold n_items / nlist movies on average: probe enough to hold m twice over
                probes = max(p, min(index.nlist, -(-2 * m * index.nlist // max(index.index.ntotal, 1))))
                for start in range(0, len(group), step):
                    chosen = group[start : start + step]
                    got, got_scores, full, exhausted, unsettled = self._from_index(
                        parts, user_index[chosen], m, width,
                        None if seen_rows is None else seen_rows.pairs(chosen), candidates, allowed[chosen],
                        probes)
                    items[chosen[full]], scores[chosen[full]] = got[full], got_scores[full]
                    answered[chosen[full]] = True
                    ran_out[chosen], probed[chosen] = exhausted, probes
                    left[chosen[unsettled]] = True  # near-ties past the spares: exact scoring
            todo = todo[~answered[todo]]
            deeper = todo[~ran_out[todo] & (fetch[todo] < deep[todo])]
            fetch[deeper] = np.minimum(2 * fetch[deeper], deep[deeper])
            wider = np.setdiff1d(todo, deeper, assume_unique=True)
            left[wider[probed[wider] >= index.nlist]] = True
            probe[wider] = np.minimum(4 * probed[wider], index.nlist)
        self.ann_users += int(answered.sum())
        rest = np.flatnonzero(~answered)
        if len(rest):
            self.exact_users += len(rest)
            items[rest], scores[rest] = _exact(model, user_index[rest], width, exclude, candidates)
        if not parts.exact:  # ranked by a monotone stand-in: show the model's own scores
            filled = items >= 0
            rows = np.repeat(user_index, width).reshape(items.shape)
            scores[filled] = model._predict(rows[filled], items[filled])
        return items, scores

    def _from_index(self, parts: DotParts, users: np.ndarray, m: int, width: int,
                    seen: tuple[np.ndarray, np.ndarray] | None, candidates: np.ndarray | None,
                    allowed: np.ndarray, nprobe: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Top ``width`` of ``m`` fetched per user, which users' lists are complete, whose probed
        lists ran out before ``m`` movies (a deeper fetch with as many lists finds no more), and
        whose near-ties at the list's edge the index's products cannot settle. Only complete lists
        are re-scored (the others are fetched again): the rest of the rows are -1 / -inf. ``seen``:
        the users' excluded movies as (row within ``users``, movie) pairs, rows ascending."""
        found, inner = self.index.search(parts.users[users], m, nprobe)
        valid = found >= 0
        ran_out = ~valid[:, -1]  # the probed lists held fewer than m movies: fetching deeper cannot help
        if candidates is not None:
            valid &= candidates[np.maximum(found, 0)]
        if seen is not None:
            _drop_seen(valid, found, seen, len(parts.items))
        n_valid = valid.sum(axis=1)
        full = (n_valid >= width) | (n_valid >= allowed)  # list filled, or every allowed movie found
        # The index's float32 products pick the list; float64 re-scoring orders it as the exact path
        # does (score, then item index). The first valid candidates in the index's order are taken
        # (best first; the movies of one stored row in ascending index order, as ties break). Where
        # the width-th product is more than twice their error bound above the next, the list's movies
        # are known and only they are re-scored; elsewhere (near-ties at the edge) `_SPARE` more are,
        # so that those fall the exact path's way (a fetch too shallow to hold them all is not
        # full: fetched twice as deep); a user whose near-ties run past them too is scored exactly
        # (`unsettled`).
        kept = np.where(valid, found, -1)
        users64 = np.asarray(parts.users[users], np.float64)
        short = min(m - 1, width + _SPARE)  # the next fetched one tells whether the spares settle it
        unsettled = np.zeros(len(found), dtype=bool)
        top = np.full((len(found), width), -1, dtype=np.int64)
        top_values = np.full((len(found), width), -np.inf)

        def rescore(which: np.ndarray, slots: np.ndarray) -> None:
            if which.any():
                top[which], top_values[which] = rescore_top(users64[which], parts.items, parts.offsets,
                                                            slots[which], width)

        if m <= width or m >= len(parts.items):  # nothing past the fetch: re-score all of it
            rescore(full, kept)
            return top, top_values, full, ran_out, unsettled
        rows = np.arange(len(found))[:, None]
        pick = np.argsort(~valid, axis=1, kind="stable")[:, : short + 1]  # valid ones first, in order
        kept, inner = kept[rows, pick], np.where(valid[rows, pick], inner[rows, pick], -np.inf)
        bound = self._bound(users64)
        with np.errstate(invalid="ignore"):  # inf - inf where factors overflowed: not proven
            proven = (inner[:, width] == -np.inf) | (inner[:, width - 1] - inner[:, width] > bound)
            unsettled = ~proven & (inner[:, short] > -np.inf) & ~(inner[:, short - 1] - inner[:, short]
                                                                   > bound)
        full &= ~unsettled
        if short < width + _SPARE:  # the fetch held fewer spares: a deeper one holds them all
            unsettled[:] = False  # (not full: fetched again twice as deep)
        rescore(proven & full, kept[:, :width])
        rescore(~proven & full, kept[:, :short])  # full excludes the unsettled
        return top, top_values, full, ran_out, unsettled

    def _bound(self, users64: np.ndarray) -> np.ndarray:
        """Twice the most by which the index's float32 product of each user's query and any stored
        row can differ from the exact one: two products compared each carry that much. A float32
        sum of d products is within (d + 2) u sum_j |q_j r_j| of the exact sum (Higham's gamma
        bound; u = 2^-24), the float32 rounding of float64 factors adds 2 u sum_j |q_j r_j|, and
        sum_j |q_j r_j| <= |q| |r| = |q| radius (Cauchy-Schwarz: every stored row has the index's
        radius as its norm, and a query is 0 in the lift column). Where values fall below float32's
        normal range each rounding may also be off by half the smallest subnormal, 2^-150: at most
        d 2^-149 over the sum's 2d operations, and 2^-150 sqrt(d) (|q| + radius) for the factors'
        rounding. The 1e-6 of slack covers the float64 re-scoring's own rounding (about 2^-29 of
        the float32 bound)."""
        index = self.index
        kept = users64[:, index.keep]
        query_norm = np.sqrt(np.einsum("ij,ij->i", kept, kept) + 1.0)  # the 1: the offset's column
        d = kept.shape[1] + 2
        relative = (d + 4) * 2.0**-24 * query_norm * index.radius
        subnormal = d * 2.0**-149 + 2.0**-150 * np.sqrt(d) * (query_norm + index.radius)
        return 2.0 * (relative + subnormal) * (1 + 1e-6)


class _SeenRows:
    """Some users' rows of a CSR matrix read in place (through its ``indptr``): slicing rows out of a
    scipy matrix costs ~0.25 ms a call whatever their size, most of a one-user request's time."""

    def __init__(self, matrix: sp.csr_matrix, users: np.ndarray) -> None:
        n = matrix.shape[0]
        if len(users) and (users.min() < -n or users.max() >= n):
            raise IndexError(f"user index out of range for {n} users")
        # negative indices count from the end, as numpy's (not through np.arange(n)[users]: making
        # that range costs 70 us at 200k users, a fifth of a one-user request)
        users = np.where(users < 0, users + n, users)
        self.indices = matrix.indices
        self.starts = matrix.indptr[users].astype(np.int64)
        self.lengths = matrix.indptr[users + 1].astype(np.int64) - self.starts

    def pairs(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The entries of rows ``chosen`` (positions among the users) as (position in ``chosen``,
        column), positions ascending."""
        lengths = self.lengths[chosen]
        return (np.repeat(np.arange(len(chosen)), lengths),
                self.indices[concat_ranges(self.starts[chosen], lengths)])


def _drop_seen(valid: np.ndarray, found: np.ndarray, seen: tuple[np.ndarray, np.ndarray],
               n_items: int, mask_elements: int = _MASK_ELEMENTS) -> None:
    """Clear ``valid`` where ``found[r, j]`` is among row r's ``seen`` movies, through a boolean
    (users x movies) scratch mask of ``mask_elements``, a block of users at a time: marking a block's
    seen movies and reading the found ones are two gathers, where a sorted search over (user, movie)
    codes cost a binary search per found movie."""
    position, movies = seen
    block = max(1, mask_elements // max(n_items, 1))
    n = len(found)
    mask = np.zeros(min(block, n) * n_items, dtype=bool)  # flat (users x movies)
    bounds = np.searchsorted(position, np.arange(0, n + block, block))
    marked = position * n_items + movies  # flat codes, rows ascending
    looked = np.arange(n, dtype=np.int64)[:, None] * n_items + np.maximum(found, 0)
    for b, start in enumerate(range(0, n, block)):
        stop, shift = min(start + block, n), start * n_items
        codes = marked[bounds[b] : bounds[b + 1]] - shift
        mask[codes] = True
        valid[start:stop] &= ~mask[looked[start:stop] - shift]
        mask[codes] = False


def _exact(model: Recommender, users: np.ndarray, width: int, exclude: sp.csr_matrix | None,
           candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The model's own exact ranking (every movie scored), a block of users at a time."""
    items = np.empty((len(users), width), dtype=np.int64)
    scores = np.empty((len(users), width))
    step = block_users(len(model.items_))
    for start in range(0, len(users), step):
        block = users[start : start + step]
        excl = exclude[block] if exclude is not None else None
        got = top_k(model._score_users(block), width, excl, candidates)
        items[start : start + len(block)], scores[start : start + len(block)] = got
    return items, scores


def attach(model: Recommender, folder: str | Path | None = None, ann: str = "auto", *,
           min_items: int | None = None, target_recall: float = 0.98,
           gpu: bool | None = None) -> AnnRetriever | None:
    """Give ``model`` an approximate retriever per ``ann`` and return it (None: exact scoring).

    ``ann``: ``"off"`` never; ``"on"`` whenever the model's scores are inner products; ``"auto"``
    when they are, the catalog has at least ``min_items`` movies (default `ANN_MIN_ITEMS`) and the
    model's exact ranking would score more than `EXACT_SHARE` of the movies (it stops early for
    factors whose norms fall off with popularity, as a fitted iALS's do). The
    index comes from ``folder`` (a model folder) when one saved there was built for this very model (same
    `fingerprint`); otherwise it is built and calibrated to ``target_recall`` (recall@10 against
    exact lists), then saved into ``folder`` for the next time (a folder that cannot be written only
    costs the rebuild). Without faiss the model scores exactly, with one logged warning.

    ``gpu``: search the index on a GPU (`AnnIndex.to_gpu`, GPU 0); None (default) does where faiss
    can use one (faiss-gpu and a GPU; if placing it there fails, one logged warning and the CPU).

    Raises:
        ConfigError: ``ann`` is not one of `ANN_MODES`, ``"on"`` for a model whose scores are not
            inner products, or ``gpu=True`` where faiss cannot use a GPU.
    """
    if ann not in ANN_MODES:
        raise ConfigError(f"ann must be one of {', '.join(ANN_MODES)}, got {ann!r}")
    model.retriever = None
    if ann == "off":
        return None
    model._require_fitted()
    if ann == "auto" and len(model.items_) < (ANN_MIN_ITEMS if min_items is None else min_items):
        return None
    parts = model._dot_parts()
    if parts is None:
        if ann == "on":
            raise ConfigError(f"{model.name} does not score by inner products, so it has no approximate "
                              f"retrieval; use --ann auto or off (e.g. ials, biased-mf-als have one)")
        return None
    if ann == "auto":
        share = _exact_share(model)
        if share <= EXACT_SHARE:
            log.info("%s ranks exactly: its exact ranking scores %.1f%% of the movies, no slower than "
                     "an index", model.name, 100 * share)
            return None
    if load_faiss() is None:
        log.warning("faiss is not installed (pip install 'movierec[ann]'): scoring every movie exactly")
        return None
    if gpu:
        check_gpu(0)  # before any work: an explicit GPU request that cannot be met is bad input
    folder = Path(folder) if folder is not None else None
    index = AnnIndex.load(folder, model.name, parts) if folder is not None else None
    built = index is None
    if built:
        index = AnnIndex.build(parts)
    if gpu or (gpu is None and faiss_gpus()):
        try:
            index.to_gpu(0)
        except (RuntimeError, ConfigError) as exc:
            if gpu:
                raise
            log.warning("could not put the ann index on the GPU (%s); searching it on the CPU", exc)
    if built:
        _calibrate(AnnRetriever(index, parts), model, target_recall)
        if folder is not None:
            try:
                index.save(folder, model.name)
            except OSError as exc:
                log.warning("could not save the ann index into %s (%s); it lives in memory only", folder,
                            exc)
    retriever = AnnRetriever(index, parts)
    model.retriever = retriever
    return retriever


def _calibration_users(n_users: int, seed: int = 0) -> np.ndarray:
    """The `_CALIBRATION_USERS` users (sorted indices) whose lists calibrate an index."""
    return np.sort(np.random.default_rng(seed).choice(n_users, min(_CALIBRATION_USERS, n_users),
                                                      replace=False))


def _exact_share(model: Recommender) -> float:
    """The share of the (user, movie) scores the model's exact ranking computes for the calibration
    users' top 10 (1.0 for a model that scores every movie)."""
    ranker = model._cpu_dot_top_k()
    if ranker is None:
        return 1.0
    users = _calibration_users(len(model.users_))
    return ranker.scored_share(users, 10, model.seen_[users])


def _calibrate(retriever: AnnRetriever, model: Recommender, target: float, k: int = 10,
               seed: int = 0) -> None:
    """Set the index's ``nprobe`` from the lists users get: recall@``k`` (seen movies excluded) of
    `AnnRetriever.top_k` against the exact path, on `_CALIBRATION_USERS` random users. A returned
    movie counts when its exact score reaches the k-th exact one (ties swap freely)."""
    parts = model._dot_parts()
    users = _calibration_users(len(parts.users), seed)
    width = min(k, len(parts.items))
    want, _ = _exact(model, users, width, model.seen_, None)
    wanted = int((want >= 0).sum())
    kth = exact_scores(parts, users, want[:, -1:])  # -inf where a user has fewer than k movies left
    # the score a movie must reach to count (ties swap freely)
    reach = kth - 1e-6 * np.maximum(np.abs(np.where(np.isfinite(kth), kth, 0.0)), 1.0)

    def recall_at(nprobe: int) -> float:
        retriever.index.nprobe = nprobe
        got, _ = retriever.top_k(model, users, width, model.seen_, None)
        hit = (got >= 0) & (exact_scores(parts, users, got) >= reach)
        return float(hit.sum() / max(wanted, 1))

    retriever.index.seen_ahead = _seen_ahead(parts, users, reach, model.seen_[users])
    retriever.index.calibrate(recall_at, target)
    retriever.ann_users = retriever.exact_users = 0


def _seen_ahead(parts: DotParts, users: np.ndarray, kth: np.ndarray, seen: sp.csr_matrix,
                quantile: float = 0.9) -> float:
    """The ``quantile`` over ``users`` of the share of each one's ``seen`` movies (rows: the users)
    whose exact score reaches their ``kth`` (n, 1) score; users without seen movies, or with fewer
    than k unseen ones (``kth`` -inf: every list runs out anyway), do not count. 1.0 when none
    counts."""
    counts = np.diff(seen.indptr)
    rows = np.repeat(np.arange(len(users)), counts)
    scores = exact_scores(parts, users[rows], seen.indices[:, None])[:, 0]  # one (user, movie) a row
    ahead = np.bincount(rows[scores >= kth[rows, 0]], minlength=len(users))
    counted = (counts > 0) & np.isfinite(kth[:, 0])
    if not counted.any():
        return 1.0
    return float(np.quantile(ahead[counted] / counts[counted], quantile))


def describe(retriever: Any) -> str:
    """One line for people: what the retriever is and how good its calibration was."""
    index = retriever.index
    where = "" if index.gpu is None else f" on GPU {index.gpu_device}"
    return (f"approximate top-k (faiss IVF{where}, {index.nlist} lists, nprobe {index.nprobe}): "
            f"recall@10 {index.recall:.3f} against exact lists")
