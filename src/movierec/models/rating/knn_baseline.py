"""Item-based k nearest neighbours on baseline residuals, for rating prediction (Koren 2010; Surprise's
KNNBaseline): `ItemKNNBaseline`. Its ranking cousin, on implicit feedback, is
`movierec.models.ranking.item_knn`.

Notation (as Surprise documents it). Baselines b_ui = mu + b_u + b_i come from the regularised bias
model (`BiasRecommender`, alternating closed-form sweeps). Residuals e_uj = r_uj - b_uj. For movies i, j
with n_ij common raters U_ij, the similarity is the shrunk Pearson-baseline correlation

    s_ij = sum e_ui e_uj / sqrt(sum e_ui^2 * sum e_uj^2) * (n_ij - 1) / (n_ij - 1 + shrinkage)

(every sum over U_ij), and a rating is predicted from the ``k`` movies most similar to i among those u
rated, N_k(i; u):

    r̂_ui = b_ui + sum_{j in N_k(i; u), s_ij > 0} s_ij e_uj / sum_{j in N_k(i; u), s_ij > 0} s_ij

As in Surprise 1.1, only positive similarities take part (so the denominator is sum |s_ij| over them);
with fewer than ``min_k`` of them the prediction is the baseline b_ui. Since nothing else can
contribute, the model keeps max(s_ij, 0): the k largest of those are the same neighbours. Differences
from Surprise, none of which touches the result for a movie the user has not rated, bar exact ties:

- a movie is never its own neighbour (Surprise sets s_ii = 1, which matters only when "predicting" a
  training rating);
- pairs with fewer than 2 common raters have s_ij = 0 whatever ``shrinkage`` (with ``shrinkage`` > 0
  the factor above is 0 for them anyway; with 0 it would be 0/0);
- when several rated movies tie at the k-th largest similarity, all of them are kept (Surprise keeps
  the first in its training order), so results do not depend on the order of a user's ratings.

Computation. Movies with fewer than 2 training ratings are similar to nothing, so the matrix covers
only the others ("active" movies): a dense float32 array of (n_active + 1)^2 whose last row and column
are zero (where inactive movies and padding point). Its ingredients (sum e_i e_j, n_ij and the two
sums of squares over common raters) are sparse (movies x users) times dense (users x columns)
products, each costing n_ratings * n_active multiply-adds; then a few elementwise passes. Memory:
4 * n_active^2 bytes for the matrix (n_active = 20,000 -> 1.6 GB, the default `max_items` guard) plus
up to four 256 MB blocks while fitting. Prediction gathers, for many (user, movie) rows at once, the
similarities to the user's rated movies into a padded block, zeroes all but the k largest per row (a
vectorised sort finds the k-th) and takes the weighted mean with array sums; rows are grouped by the
user's rating count in classes a factor 2^(1/4) wide, so padding adds at most 19%. Scoring every
movie for a user costs about n_active * n_u, so a top-N pass over all users costs about
n_active * n_ratings (ml-latest-small: 5 s of CPU; ml-100k: 1 s).

Fallback for pairs unknown to training: an unknown user gets mu + b_i, an unknown movie mu + b_u, both
unknown mu (the baseline's own fallback, with no neighbourhood term).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int, check_number, is_int
from movierec.models.core.memory import csr_bytes
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.rating.bias import BiasRecommender

__all__ = ["ItemKNNBaseline"]

# Float32 elements of one padded similarity block during prediction (16 MB, plus a sorted copy):
# large enough that per-block overhead is negligible.
_BLOCK_ELEMENTS = 1 << 22
# Fitting works on dense float32 blocks of at most this many elements (256 MB each): users x columns
# slices of the residuals and movies x columns slices of the sums (at most four alive at once). Up to
# ~8,000 active movies the whole matrix is one block.
_DENSE_ELEMENTS = 1 << 26
# Rows per step when mirroring the upper triangle of the similarity matrix.
_SIM_COLUMNS = 256
# Replaces a zero Pearson denominator (whose numerator is zero too).
_TINY = np.float32(1e-30)


class ItemKNNBaseline(Recommender):
    """Item-based kNN with baseline estimates and shrunk Pearson-baseline similarity.

    Args:
        k: the most neighbours (movies the user rated, most similar first) per prediction.
        min_k: fewer positive-similarity neighbours than this -> the baseline alone.
        shrinkage: pulls similarities with few common raters towards 0 (Surprise's default 100).
        reg_user, reg_item: L2 penalties of the baseline's user and movie biases.
        baseline_epochs: alternating sweeps of the baseline solve.
        max_items: the most movies (with 2+ training ratings) the dense similarity matrix may hold;
            its memory is 4 * max_items^2 bytes (20,000 -> 1.6 GB).

    Fitted attributes: ``global_mean_``, ``user_bias_`` (n_users,), ``item_bias_`` (n_items,);
    ``active_`` (n_active,) movie indices covered by the similarity matrix; ``similarity_``
    (n_active + 1, n_active + 1) float32, max(s_ij, 0) with a zero diagonal and a zero last row and
    column; ``residual_`` (n_ratings,) float32, e_uj aligned with ``seen_.data``.

    Ranking: `_score_users` scores every movie by r̂_ui, so top-N lists rank by predicted rating.
    Progress: `fit` passes the baseline's ``"epoch"`` events to the callback, then one
    ``("similarity", {"block": b, "blocks": n})`` per block of similarity columns.
    """

    name = "item-knn-baseline"

    def __init__(
        self,
        k: int = 40,
        min_k: int = 1,
        shrinkage: float = 100.0,
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        baseline_epochs: int = 10,
        max_items: int = 20_000,
    ) -> None:
        self.k = k
        self.min_k = min_k
        self.shrinkage = shrinkage
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.baseline_epochs = baseline_epochs
        self.max_items = max_items

    def _check_params(self) -> None:
        for name in ("k", "baseline_epochs", "max_items"):
            check_int(name, getattr(self, name))
        if not is_int(self.min_k) or not 1 <= self.min_k <= self.k:
            raise ConfigError(f"min_k must be an int between 1 and k ({self.k}), got {self.min_k!r}")
        for name in ("shrinkage", "reg_user", "reg_item"):
            check_number(name, getattr(self, name))

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        active = np.flatnonzero(train.item_counts >= 2)
        if len(active) > self.max_items:
            gigabytes = 4 * len(active) ** 2 / 1e9
            raise ConfigError(
                f"max_items is {self.max_items}, but the similarity matrix would cover {len(active):,} "
                f"movies ({gigabytes:.1f} GB dense); raise max_items if memory allows"
            )
        baseline = BiasRecommender(self.reg_user, self.reg_item, self.baseline_epochs)
        baseline.fit(train, callback=callback)
        self.global_mean_ = baseline.global_mean_
        self.user_bias_ = baseline.user_bias_
        self.item_bias_ = baseline.item_bias_
        self.active_ = active
        self.residual_ = self._residuals()
        self.similarity_ = self._similarity(callback)
        self._prepare()

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """The float32 similarity over the movies (at most ``max_items``; quadratic), one float64
        block of the products that build it, and residuals by movie."""
        n = min(n_items, int(self.max_items)) + 1
        return int(4 * n * n + 8 * min(n * n, _DENSE_ELEMENTS) + 5 * csr_bytes(n_users, n_ratings))

    def _residuals(self) -> np.ndarray:
        """e_uj = r_uj - mu - b_u - b_j for every stored rating of ``seen_`` (float32, data order)."""
        seen = self.seen_
        rows = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        baseline = self.global_mean_ + self.user_bias_[rows] + self.item_bias_[seen.indices]
        return (seen.data.astype(np.float64) - baseline).astype(np.float32)

    def _similarity(self, callback: Callback | None) -> np.ndarray:
        """max(s_ij, 0) over the active movies, padded with a zero row and column (see module doc)."""
        n_active = len(self.active_)
        seen = self.seen_
        residual = sp.csr_matrix((self.residual_, seen.indices, seen.indptr), shape=seen.shape)
        columns = residual[:, self.active_].tocsc()  # users x active movies, renumbered 0..n_active-1
        columns.sort_indices()
        # One more, empty, column: the padding row and column of the result come out of the products.
        indptr = np.append(columns.indptr, columns.indptr[-1])
        shape = (seen.shape[0], n_active + 1)
        operands = []
        for data in (columns.data, columns.data * columns.data, np.ones_like(columns.data)):
            # The CSC arrays of users x movies are the CSR arrays of its transpose: no copy.
            operands.append((sp.csr_matrix((data, columns.indices, indptr), shape=shape[::-1]),
                             sp.csc_matrix((data, columns.indices, indptr), shape=shape)))
        (values_t, values), (squares_t, squares), (rated_t, rated) = operands
        width = max(_SIM_COLUMNS, _DENSE_ELEMENTS // max(shape))
        starts = range(0, n_active + 1, width)
        similarity = None
        for step, start in enumerate(starts):
            block = slice(start, min(start + width, n_active + 1))
            # Sparse x dense products cost n_ratings * width each: the ratings are sparse enough that
            # this beats dense BLAS several times over on MovieLens.
            rated_block = rated[:, block].toarray(order="C")
            prods = values_t @ values[:, block].toarray(order="C")  # sum e_i e_j over common raters
            freq = rated_t @ rated_block  # n_ij
            denominator = squares_t @ rated_block  # sum e_i^2 over common raters
            del rated_block
            denominator *= rated_t @ squares[:, block].toarray(order="C")  # times sum e_j^2
            # Plain (unmasked) array arithmetic: numpy's masked ufuncs are several times slower.
            np.sqrt(denominator, out=denominator)
            # A zero denominator has a zero numerator too (Cauchy-Schwarz): the ratio becomes 0.
            np.maximum(denominator, _TINY, out=denominator)
            prods /= denominator
            if self.shrinkage > 0:  # (n_ij - 1) / (n_ij - 1 + shrinkage), which is 0 for n_ij <= 1
                freq -= 1
                np.maximum(freq, 0, out=freq)
                np.add(freq, self.shrinkage, out=denominator)
                freq /= denominator
            else:  # no shrinkage: 1 for n_ij >= 2, 0 below (a correlation needs two raters)
                np.greater_equal(freq, 2, out=freq, casting="unsafe")
            prods *= freq
            del freq, denominator
            np.maximum(prods, 0, out=prods)
            if len(starts) == 1:
                similarity = prods
            else:
                if similarity is None:
                    similarity = np.empty((n_active + 1, n_active + 1), dtype=np.float32)
                similarity[:, block] = prods
            if callback is not None:
                callback("similarity", {"block": step + 1, "blocks": len(starts)})
        _symmetrise(similarity)
        return similarity

    def _prepare(self) -> None:
        """Lookup tables for prediction: every training rating's similarity column and residual, in
        ``seen_`` order, each with one padding entry at the end (the zero column, residual 0)."""
        n_active = len(self.active_)
        position = np.full(len(self.item_bias_), n_active, dtype=np.int64)
        position[self.active_] = np.arange(n_active)
        self._position = position
        self._column = np.append(position[self.seen_.indices], n_active)
        self._padded_residual = np.append(self.residual_, np.float32(0))
        self._counts = np.diff(self.seen_.indptr)

    # -- scoring -------------------------------------------------------------------------------
    def _padded(self, users: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Rated movies (as similarity columns) and residuals of ``users``, padded to ``width``.

        Returns (n, width) int64 columns (padding -> the zero column) and (n, width) float32 residuals
        (padding -> 0), in the user's ``seen_`` order.
        """
        offset = np.arange(width)
        slot = self.seen_.indptr[users][:, None] + offset
        slot = np.where(offset < self._counts[users][:, None], slot, len(self._column) - 1)
        return self._column[slot], self._padded_residual[slot]

    def _keep_top(self, sims: np.ndarray, axis: int) -> np.ndarray:
        """Zero every similarity below the k-th largest along ``axis`` (in place; returns ``sims``).

        Ties at the k-th value are all kept, so the result does not depend on the order of a user's
        ratings. Lanes with at most k positive values stay as they are.
        """
        width = sims.shape[axis]
        if width <= self.k:
            return sims
        lanes = np.moveaxis(sims, axis, -1)  # a view: writing to it writes to sims
        need = np.count_nonzero(lanes, axis=-1) > self.k
        if not need.any():
            return sims
        # A full sort finds the k-th value: numpy's vectorised sort is several times faster than
        # `partition`, whose selection degrades on lanes that are mostly zeros (as these are). It
        # runs on a contiguous copy of the lanes (all of them, or only those with over k positives).
        if 2 * np.count_nonzero(need) > need.size:
            ordered = lanes.copy(order="C")
            ordered.sort(axis=-1)
            kth = ordered[..., width - self.k]
        else:
            ordered = lanes[need]
            ordered.sort(axis=-1)
            kth = np.zeros(need.shape, dtype=sims.dtype)
            kth[need] = ordered[:, width - self.k]
        lanes *= lanes >= kth[..., None]
        return sims

    def _mean(self, numerator: np.ndarray, total: np.ndarray, count: np.ndarray | None) -> np.ndarray:
        """numerator / total where at least min_k neighbours (``count``; None -> total > 0), else 0."""
        enough = total > 0 if count is None else count >= self.min_k
        return np.where(enough, numerator / np.where(enough, total, 1), 0)

    def _groups(self, counts: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Positions grouped by rating count in classes a factor 2^(1/4) wide (so padding adds at
        most 19% to the work), each with its padded width."""
        group = np.ceil(4 * np.log2(np.maximum(counts, 1))).astype(np.int64)
        groups = []
        for value in np.unique(group):
            members = np.flatnonzero(group == value)
            groups.append((members, max(1, int(counts[members].max()))))
        return groups

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        known_user, known_item = user_index >= 0, item_index >= 0
        scores = np.full(len(user_index), self.global_mean_)
        scores += np.where(known_user, self.user_bias_[np.maximum(user_index, 0)], 0.0)
        scores += np.where(known_item, self.item_bias_[np.maximum(item_index, 0)], 0.0)
        pairs = np.flatnonzero(known_user & known_item)
        flat = self.similarity_.reshape(-1)
        n_rows = self.similarity_.shape[0]
        for members, width in self._groups(self._counts[user_index[pairs]]):
            step = max(1, _BLOCK_ELEMENTS // width)
            for start in range(0, len(members), step):
                rows = pairs[members[start : start + step]]
                columns, residuals = self._padded(user_index[rows], width)
                # s_ij for every pair (row) and rated movie j (column): one flat gather.
                sims = self._keep_top(flat[self._position[item_index[rows]][:, None] * n_rows + columns], 1)
                count = None if self.min_k == 1 else np.count_nonzero(sims, axis=1)
                numerator = np.einsum("pj,pj->p", sims, residuals)
                scores[rows] += self._mean(numerator, sims.sum(axis=1), count)
        return scores

    def _score_block(self, columns: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """Neighbourhood terms for every movie, for users given by padded (n, L) rated columns and
        residuals: (n, n_items) float64, 0 for movies outside the similarity matrix."""
        n, width = columns.shape
        n_rows = self.similarity_.shape[0]
        terms = np.empty((n, n_rows))
        flat = columns.reshape(-1)
        step = max(1, _BLOCK_ELEMENTS // (n * width))
        for start in range(0, n_rows, step):
            # The matrix is symmetric: s_ij for rated j and target i is row j, so the gather copies
            # contiguous pieces of only the rows the users rated. Shape (n, L, targets).
            sims = self.similarity_[flat, start : start + step].reshape(n, width, -1)
            sims = self._keep_top(sims, 1)
            count = None if self.min_k == 1 else np.count_nonzero(sims, axis=1)
            # (einsum, not a batched matmul: BLAS is several times slower on these thin products)
            numerator = np.einsum("nlt,nl->nt", sims, residuals)
            terms[:, start : start + step] = self._mean(numerator, sims.sum(axis=1), count)
        return terms[:, self._position]

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        scores = (self.global_mean_ + self.user_bias_[user_index])[:, None] + self.item_bias_[None, :]
        n_rows = self.similarity_.shape[0]
        for members, width in self._groups(self._counts[user_index]):
            step = max(1, _BLOCK_ELEMENTS // (width * n_rows))
            for start in range(0, len(members), step):
                rows = members[start : start + step]
                scores[rows] += self._score_block(*self._padded(user_index[rows], width))
        return scores

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        # The user bias is the baseline's own closed-form solve with the movie biases frozen (what
        # its last training sweep computes for a known user); residuals then feed the same formula.
        item_index = np.asarray(item_index, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        user_bias = float(np.sum(ratings - self.global_mean_ - self.item_bias_[item_index])
                          / (self.reg_user + len(ratings)))
        scores = self.global_mean_ + user_bias + self.item_bias_
        if len(item_index) == 0:
            return scores
        residuals = (ratings - self.global_mean_ - user_bias - self.item_bias_[item_index])
        return scores + self._score_block(self._position[item_index][None, :],
                                          residuals.astype(np.float32)[None, :])[0]

    # -- persistence ---------------------------------------------------------------------------
    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        # Its own shrunk Pearson-baseline similarities; movies outside the matrix get 0.
        position = np.full(len(self.items_), len(self.active_), dtype=np.int64)  # the zero row
        position[self.active_] = np.arange(len(self.active_))
        return self.similarity_[position[np.asarray(item_index)]][:, position].astype(np.float64)

    def _state(self) -> dict[str, np.ndarray]:
        # The similarity is symmetric and mostly zero: its positive upper triangle as coordinates.
        # The residuals are recomputed from seen_ (saved by the base) and the biases.
        rows, cols = np.nonzero(np.triu(self.similarity_, 1))
        return {
            "global_mean": np.array([self.global_mean_]),
            "user_bias": self.user_bias_,
            "item_bias": self.item_bias_,
            "active": self.active_.astype(np.int64),
            "sim_rows": rows.astype(np.int32),
            "sim_cols": cols.astype(np.int32),
            "sim_values": self.similarity_[rows, cols],
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_mean_ = float(arrays["global_mean"][0])
        self.user_bias_ = arrays["user_bias"]
        self.item_bias_ = arrays["item_bias"]
        self.active_ = arrays["active"]
        n = len(self.active_) + 1
        rows, cols = arrays["sim_rows"], arrays["sim_cols"]
        if len(rows) and (max(rows.max(), cols.max()) >= n - 1 or min(rows.min(), cols.min()) < 0):
            raise ValueError("similarity coordinates out of range")  # load_model: "incomplete artifact"
        similarity = np.zeros((n, n), dtype=np.float32)
        similarity[rows, cols] = arrays["sim_values"]
        _symmetrise(similarity)
        self.similarity_ = similarity
        self.residual_ = self._residuals()
        self._prepare()


def _symmetrise(matrix: np.ndarray) -> None:
    """Copy the strict upper triangle onto the lower one and zero the diagonal, in place.

    (x, y) and (y, x) come from different products that agree only up to rounding; one triangle makes
    the matrix exactly symmetric, so the upper triangle alone (what `_state` saves) restores it.
    """
    n = matrix.shape[0]
    for start in range(0, n, _SIM_COLUMNS):
        stop = min(start + _SIM_COLUMNS, n)
        matrix[start:stop, :start] = matrix[:start, start:stop].T
        block = np.triu(matrix[start:stop, start:stop], 1)
        matrix[start:stop, start:stop] = block + block.T
