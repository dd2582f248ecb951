"""Item-based k nearest neighbours for ranking, on implicit feedback (cosine or BM25 similarity):
`ItemKNN`, documented on the class."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.interactions import (
    check_interaction_params,
    interaction_matrix,
    user_interactions,
)
from movierec.models.core.memory import csr_bytes
from movierec.models.core.recommender import Callback, Recommender

__all__ = ["ItemKNN", "bm25_rows", "knn_similarity"]


class ItemKNN(Recommender):
    """Item-based kNN for ranking on implicit feedback: scores = x_u S, S sparse items x items.

    Notation. X is the users x items interaction matrix (`movierec.models.core.interactions`); x_u its row
    for user u; n_ij the number of users with interactions on both i and j. The similarity of movie j
    to movie i is

    - ``"cosine"``: s_ji = sum_u x_uj x_ui / (||x_j|| ||x_i||), the cosine of the two item columns;
    - ``"bm25"``: s_ji = sum_u w_ju w_iu, a dot product of BM25-weighted item rows (items are the
      "documents", users the "terms", as implicit's ``bm25_weight`` on the items x users matrix):
      w_iu = x_ui (K1 + 1) / (K1 * ((1 - B) + B * |i| / avg|i|) + x_ui) * idf_u, with
      idf_u = log(n_items) - log(1 + n_u), |i| = sum_u x_ui. Heavy users (who rated everything) say
      little about any pair; the length norm damps popular items.

    then shrunk towards 0 when few users support it: s_ji * n_ji / (n_ji + shrink); the diagonal is 0
    (a movie is not its own neighbour). Each row j keeps only its ``neighbors`` largest entries (the
    movies most similar to j), and the score of movie i for user u is

        score_ui = sum_j x_uj s_ji,

    so a movie collects evidence from every rated movie that counts it among its neighbours; the
    contribution of rated movie j to target i is x_uj s_ji. Fold-in is the same product for a new
    user's row. Scores are not ratings.

    Args:
        similarity: ``"cosine"`` or ``"bm25"``.
        neighbors: the most neighbours kept per movie (row of S).
        shrink: the support shrinkage above (0 = none).
        bm25_k1, bm25_b: BM25's K1 (saturation of a weight, > 0) and B (length normalisation in
            [0, 1]); used only by ``"bm25"``.
        min_rating: ratings below it are not interactions.
        weighting: ``"binary"``, ``"rating"`` or ``"centered"`` interaction values.

    Fitted attributes: ``similarity_`` (n_items, n_items) float32 CSR S, row j = j's neighbours.

    Cost: S is built in blocks of its rows (columns of the CSR X): a sparse product X[:, block]^T X
    (n_ratings-proportional), densified to (block, n_items) with at most 2^24 values, weighted, then
    cut to the top ``neighbors`` per row and appended as CSR rows, so memory stays at one dense block
    plus n_items * neighbors stored similarities (4 + 4 bytes each): the dense items x items matrix
    is never formed (87k movies: 30 GB dense, 280 MB as 400 neighbours each).

    Fallback for pairs unknown to training: 0.
    """

    name = "item-knn"
    predicts_ratings = False

    def __init__(
        self,
        similarity: str = "bm25",
        neighbors: int = 400,
        shrink: float = 0.0,
        bm25_k1: float = 0.5,
        bm25_b: float = 0.5,
        min_rating: float = 0.0,
        weighting: str = "centered",
    ) -> None:
        self.similarity = similarity
        self.neighbors = neighbors
        self.shrink = shrink
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.min_rating = min_rating
        self.weighting = weighting

    def _check_params(self) -> None:
        if self.similarity not in _SIMILARITIES:
            raise ConfigError(f"similarity must be one of {', '.join(_SIMILARITIES)}, "
                              f"got {self.similarity!r}")
        check_int("neighbors", self.neighbors)
        check_number("shrink", self.shrink)
        check_number("bm25_k1", self.bm25_k1, strict=True)
        check_number("bm25_b", self.bm25_b)
        if self.bm25_b > 1:
            raise ConfigError(f"bm25_b must be a number in [0, 1], got {self.bm25_b!r}")
        check_interaction_params(self.min_rating, self.weighting)

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        interactions = interaction_matrix(self.seen_, self.min_rating, self.weighting)
        self.similarity_ = knn_similarity(interactions, self.similarity, self.neighbors, self.shrink,
                                          self.bm25_k1, self.bm25_b, callback)

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """A dense float64 block of similarity rows with its selection temporaries (4 x 2^24 cells at
        most), the kept neighbours as COO then CSR, and the weighted interaction copies."""
        block = min(float(n_items) ** 2, _KNN_ELEMENTS)
        kept = n_items * min(int(self.neighbors), max(n_items - 1, 1))
        return int(4 * 8 * block + 48 * kept + 5 * csr_bytes(n_items, n_ratings))

    # -- scoring -------------------------------------------------------------------------------
    def _interactions(self, user_index: np.ndarray) -> sp.csr_matrix:
        return interaction_matrix(self.seen_[user_index], self.min_rating, self.weighting)

    def _values(self, ratings: np.ndarray) -> np.ndarray:
        """A new user's interaction values for all their ratings (0 below ``min_rating``), as training
        builds them (the ``"centered"`` mean runs over all the user's ratings)."""
        return user_interactions(ratings, self.min_rating, self.weighting)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        rows = self._interactions(np.asarray(user_index, dtype=np.int64))
        return (rows @ self.similarity_).toarray().astype(np.float64)

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        scores = np.zeros(len(user_index))
        pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
        if len(pairs):
            rows = self._interactions(user_index[pairs])
            # sum_j x_uj s_ji per pair: the pair's interaction row times column i of S, elementwise.
            columns = self.similarity_.T.tocsr()[item_index[pairs]]
            scores[pairs] = np.asarray(rows.multiply(columns).sum(axis=1), dtype=np.float64).ravel()
        return scores

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        values = self._values(ratings)
        rows = self.similarity_[np.asarray(item_index, dtype=np.int64)]
        return np.asarray(rows.T @ values, dtype=np.float64).ravel()

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): x_uj * s_ji, summing over j to the fold-in score of i."""
        values = self._values(ratings).astype(np.float64)
        rows = self.similarity_[np.asarray(item_index, dtype=np.int64)]
        block = rows[:, np.asarray(target, dtype=np.int64)].toarray().astype(np.float64)
        return (block * values[:, None]).T

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """Rows of S: each movie's kept neighbours and their similarities (0 elsewhere)."""
        return self.similarity_[np.asarray(item_index, dtype=np.int64)].toarray().astype(np.float64)

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        s = self.similarity_
        return {"sim_indptr": s.indptr.astype(np.int64), "sim_indices": s.indices.astype(np.int32),
                "sim_values": s.data}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        n = self.seen_.shape[1]
        indptr, indices = arrays["sim_indptr"], arrays["sim_indices"]
        if len(indptr) != n + 1 or (len(indices) and (indices.min() < 0 or indices.max() >= n)):
            raise ValueError("similarity does not match the catalog")  # load_model: incomplete
        self.similarity_ = sp.csr_matrix((arrays["sim_values"], indices, indptr), shape=(n, n))


_SIMILARITIES = ("cosine", "bm25")
# Rows of S per block while fitting: (block x n_items) dense float32 at most 64 MB.
_KNN_ELEMENTS = 1 << 24


def bm25_rows(item_users: sp.csr_matrix, k1: float, b: float) -> sp.csr_matrix:
    """BM25-weighted items x users matrix (float64 CSR): see `ItemKNN` for the formula."""
    m = sp.csr_matrix(item_users, dtype=np.float64)
    n_docs = m.shape[0]
    idf = np.log(n_docs) - np.log1p(np.bincount(m.indices, minlength=m.shape[1]))
    lengths = np.asarray(m.sum(axis=1)).ravel()
    norm = (1.0 - b) + b * lengths / max(lengths.mean(), np.finfo(float).tiny)
    rows = np.repeat(np.arange(n_docs), np.diff(m.indptr))
    data = m.data * (k1 + 1.0) / (k1 * norm[rows] + m.data) * idf[m.indices]
    return sp.csr_matrix((data, m.indices, m.indptr), shape=m.shape)


def knn_similarity(
    interactions: sp.csr_matrix,
    similarity: str = "cosine",
    neighbors: int = 100,
    shrink: float = 0.0,
    k1: float = 100.0,
    b: float = 0.8,
    callback: Callback | None = None,
) -> sp.csr_matrix:
    """The items x items float32 CSR S of `ItemKNN` from a users x items interaction matrix."""
    x = sp.csr_matrix(interactions, dtype=np.float64)
    n_items = x.shape[1]
    item_users = x.T.tocsr()
    if similarity == "bm25":
        left = bm25_rows(item_users, k1, b)
        right = left.T.tocsc()
        scale = np.ones(n_items)
    else:
        left, right = item_users, x.tocsc()
        norms = np.sqrt(np.asarray(item_users.multiply(item_users).sum(axis=1)).ravel())
        scale = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    binary = item_users.copy()
    binary.data[:] = 1.0
    binary_t = binary.T.tocsc()
    keep = min(neighbors, max(n_items - 1, 1))
    step = max(1, _KNN_ELEMENTS // max(n_items, 1))
    starts = range(0, n_items, step)
    counts_out, cols_out, vals_out = [], [], []
    for number, start in enumerate(starts):
        stop = min(start + step, n_items)
        block = (left[start:stop] @ right).toarray()
        block *= scale[start:stop, None] * scale[None, :]
        if shrink > 0:
            support = (binary[start:stop] @ binary_t).toarray()
            block *= support / (support + shrink)
        block[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-neighbour
        # The top `keep` per row: a partial selection (a full sort of every row costs several times
        # more on a 10k catalog); which of several entries tied at the cut survive is arbitrary but
        # fixed for the same input.
        if keep < n_items:
            order = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
        else:
            order = np.broadcast_to(np.arange(n_items), block.shape)
        values = np.take_along_axis(block, order, axis=1)
        positive = values > 0
        # row-major boolean indexing keeps each row's entries together: the block is CSR rows already
        counts_out.append(positive.sum(axis=1))
        cols_out.append(order[positive].astype(np.int32))
        vals_out.append(values[positive].astype(np.float32))
        del block, order, values
        if callback is not None:
            callback("similarity", {"block": number + 1, "blocks": len(starts)})
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts_out), out=indptr[1:])
    result = sp.csr_matrix((np.concatenate(vals_out), np.concatenate(cols_out), indptr),
                           shape=(n_items, n_items))
    result.sort_indices()
    return result
