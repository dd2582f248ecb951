"""GF-CF: a closed-form graph filter over the user-item graph (Shen et al. 2021, "How Powerful is
Graph Convolution for Recommendation?").

Notation. X is the users x items interaction matrix (`movierec.models.core.interactions`), d_u its row
sums and d_i its column sums (the degrees of the bipartite graph), and

    R~ = D_u^-1/2 X D_i^-1/2

the degree-normalised matrix (what LightGCN-style graph convolutions propagate over). GF-CF scores
a user's interaction row x_u (users x items: raw, not normalised) through a fixed items x items
filter W with two parts:

    W = R~^T R~  +  ideal_weight * D_i^-1/2 V V^T D_i^1/2,      score_u = x_u W.

The first term is a linear low-pass filter: item-item co-occurrence where a co-rating by a heavy
user and co-occurrence with a popular movie count less (the D_u^-1 and D_i^-1/2 factors). The
second is an "ideal" low-pass filter: V (n_items, ``factors``) holds the top right singular vectors
of R~ (the eigenvectors of R~^T R~ with the largest eigenvalues), so it keeps only the smoothest
``factors`` components of the user's row and drops the rest, which a linear filter only damps. There
is no training beyond one sparse product and one partial symmetric eigendecomposition, no
randomness, and nothing to tune but ``factors`` and ``ideal_weight``.

Sessions. With timestamps and ``session_weight`` w > 0, every rating session of two or more
interactions (a user's ratings cut wherever more than ``session_gap`` seconds pass; see
`movierec.models.core.interactions.session_rows`) joins the graph as an extra user node whose row is
w times the session's interactions: X is replaced by [X ; w S] when building R~ and the degrees, so
movies rated in one sitting become closer (a session row s of degree d_s adds w s^T s / d_s to
R~^T R~). Users are still scored with their own rows x_u, so scoring and fold-in need no timestamps.

Scores are not ratings. Fold-in is the same product with the row built from a new user's ratings
(exact, O(n_rated * n_items)); the contribution of rated item j to target i is x_uj W_ji (they sum
to the score). Fallback for pairs unknown to training: 0.

Cost: R~^T R~ is dense n_items^2 (8 bytes each); the top eigenvectors come from Lanczos on the
sparse R~ (O(nnz) per step): ml-100k (1.7k movies) fits in a fraction of a second, ml-latest-small
(9.7k) in seconds. A catalog larger than ``max_items`` is filtered on its ``max_items`` most-rated
movies (the graph restricted to them), the rest scored by a popularity fallback below them
(`movierec.models.ranking.item_item`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg

from movierec.data.dataset import Ratings
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.interactions import check_interaction_params, interaction_matrix, session_rows
from movierec.models.core.memory import cooccurrence_pairs, csr_bytes
from movierec.models.core.recommender import Callback
from movierec.models.ranking.item_item import DenseItemItem

__all__ = ["GFCF", "gfcf_filter"]

class GFCF(DenseItemItem):
    """GF-CF's linear + ideal low-pass graph filter (see the module docstring).

    Args:
        factors: number of top singular vectors of R~ in the ideal low-pass term (>= 1; capped at
            the number of movies).
        ideal_weight: the weight of the ideal low-pass term (>= 0; 0 gives the linear filter alone).
        session_gap: seconds between two of a user's consecutive ratings that start a new session.
        session_weight: the weight of the session nodes in the graph (0: sessions ignored; see the
            module docstring).
        min_rating, weighting: the shared interaction hyperparameters
            (`movierec.models.core.interactions`).
        max_items: the most movies W covers (int >= 1); with more in training, W is learned on the
            ``max_items`` most-rated ones and the rest are scored below them by popularity
            (`movierec.models.ranking.item_item`).

    Fitted attributes: ``weights_`` (n, n) float64 W (row j: how much interacting with kept movie j
    raises each kept movie's score), ``kept_`` and ``fallback_`` (see `DenseItemItem`; None unless
    the catalog exceeds ``max_items``).

    Defaults: factors 64 and ideal_weight 0.3 were best alone on three validation carve-outs of
    ml100k-strat75's training part (validation NDCG@10 0.235; 128 / 256 factors and weight 1.0
    lower, the linear filter alone 0.225); benchmarks/selection/blend_ltr.py reproduces the grid. Sessions
    (session_weight 0.3) were chosen later on five carve-outs: 0.2414 against 0.2347 without
    (0.15: 0.2409, 0.6: 0.2371; every carve-out gained).
    """

    name = "gf-cf"

    def __init__(
        self,
        factors: int = 64,
        ideal_weight: float = 0.3,
        session_gap: float = 30.0,
        session_weight: float = 0.3,
        min_rating: float = 0.0,
        weighting: str = "binary",
        max_items: int = 16_000,
    ) -> None:
        self.factors = factors
        self.ideal_weight = ideal_weight
        self.session_gap = session_gap
        self.session_weight = session_weight
        self.min_rating = min_rating
        self.weighting = weighting
        self.max_items = max_items

    def _check_params(self) -> None:
        check_int("factors", self.factors)
        check_number("ideal_weight", self.ideal_weight)
        check_number("session_gap", self.session_gap)
        check_number("session_weight", self.session_weight)
        check_interaction_params(self.min_rating, self.weighting)
        check_int("max_items", self.max_items)

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        interactions = interaction_matrix(self.seen_, self.min_rating, self.weighting)
        graph = interactions
        if self.session_weight > 0 and train.timestamp is not None:
            # sessions join the graph as extra user nodes (see the module docstring)
            sessions = session_rows(train, self.session_gap, self.min_rating, self.weighting)
            graph = sp.vstack([sp.csr_matrix(interactions, dtype=np.float64),
                               float(self.session_weight) * sessions]).tocsr()
        # the kept movies are chosen by the users' interactions alone, sessions restricted to them
        self._select_items(interactions)
        if self.kept_ is not None:
            graph = sp.csr_matrix(graph)[:, self.kept_]
        self.weights_ = gfcf_filter(graph, self.factors, self.ideal_weight)
        if callback is not None:
            callback("solve", {"items": graph.shape[1]})

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Quadratic in movies: the dense float64 linear filter, the ideal low-pass term and their
        sum (three n^2), and the sparse co-occurrence product before densifying."""
        n = min(n_items, int(self.max_items))
        dense = 8 * n * n * (3 if self.ideal_weight > 0 else 1)
        return int(dense + 12 * cooccurrence_pairs(n_users, n, n_ratings)
                   + 4 * csr_bytes(n_users, n_ratings) + 3 * 8 * n * int(self.factors))


def gfcf_filter(interactions: sp.spmatrix, factors: int, ideal_weight: float) -> np.ndarray:
    """The GF-CF filter W (n_items, n_items) float64 for a users x items interaction matrix X
    (non-negative values): R~^T R~ + ideal_weight * D_i^-1/2 V V^T D_i^1/2 (module docstring).
    Users and movies without interactions get degree 0 and contribute nothing."""
    x = sp.csr_matrix(interactions, dtype=np.float64)
    user_degree = np.asarray(x.sum(axis=1)).ravel()
    item_degree = np.asarray(x.sum(axis=0)).ravel()
    user_scale = np.divide(1.0, np.sqrt(user_degree), out=np.zeros_like(user_degree),
                           where=user_degree > 0)
    item_scale = np.divide(1.0, np.sqrt(item_degree), out=np.zeros_like(item_degree),
                           where=item_degree > 0)
    normalised = sp.diags(user_scale) @ x @ sp.diags(item_scale)
    linear = np.asarray((normalised.T @ normalised).toarray())
    if ideal_weight == 0:
        return linear
    n_items = linear.shape[0]
    k = min(int(factors), n_items)
    # The right singular vectors of R~ are the eigenvectors of R~^T R~; only the top k are needed (an
    # eigenvector's sign cancels in V V^T). Lanczos on the sparse product R~^T (R~ v) costs O(nnz) per
    # step, where a dense eigensolver costs O(n_items^3) whatever the subset (100 s against 0.3 s on
    # ml-latest-small's 9.7k movies); a fixed start vector keeps it deterministic. Tiny catalogs, where
    # Lanczos cannot take k, and matrices of rank below k (Lanczos finds an invariant subspace it
    # cannot extend) go to LAPACK.
    vectors = None
    if n_items > 2 * k + 1:
        transposed = normalised.T.tocsr()
        operator = scipy.sparse.linalg.LinearOperator(
            (n_items, n_items), matvec=lambda v: transposed @ (normalised @ v), dtype=np.float64)
        try:
            _, vectors = scipy.sparse.linalg.eigsh(operator, k=k, which="LA", tol=0,
                                                   v0=np.full(n_items, 1 / np.sqrt(n_items)))
        except scipy.sparse.linalg.ArpackError:
            vectors = None
    if vectors is None:
        _, vectors = scipy.linalg.eigh(linear, subset_by_index=[n_items - k, n_items - 1])
    ideal = (vectors * item_scale[:, None]) @ (vectors.T * np.sqrt(item_degree)[None, :])
    ideal *= ideal_weight  # in place: two dense n_items^2 buffers alive, not four (same values)
    linear += ideal
    return linear
