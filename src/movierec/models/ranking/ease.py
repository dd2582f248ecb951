"""EASE: an item-item linear model with a closed form (Steck 2019, "Embarrassingly Shallow Autoencoders").

Notation. X is the users x items interaction matrix (`movierec.models.core.interactions`), G = X^T X its
Gram matrix. EASE learns an items x items weight matrix B that reconstructs every user's row from the
user's other items, x_u B ~ x_u, by minimising

    ||X - X B||^2 + sum_j lambda_j B_jj'^2 (over all entries of row j)    subject to diag(B) = 0.

The zero diagonal forbids the trivial answer B = I (an item explaining itself), so the model must learn
which items predict which. With Lambda = diag(lambda_j) the constrained solution is closed:

    P = (G + Lambda)^-1,    B_ji = -P_ji / P_ii  (j != i),    B_ii = 0.

Lambda = reg * I is Steck's EASE. ``dropout`` p > 0 adds the dropout penalty of Steck 2020
("Autoencoders that don't overfit towards the identity"): training on inputs where each interaction is
dropped with probability p is, in expectation, the same least squares problem with the extra penalty
p / (1 - p) * G_jj on row j (emphasised denoising, EDLAE, full rank: the zero diagonal stays). It
shrinks the weights of popular input items more than plain ridge does.

Sessions. Two movies rated in the same sitting say more about each other than two rated months apart
(MovieLens users rate in bursts: 44% of consecutive ml-100k ratings share their second, as a page of
ratings is submitted at once). With timestamps, a user's ratings split into sessions wherever more
than ``session_gap`` seconds pass between consecutive ratings; S is the sessions x items interaction
matrix, and the Gram matrix counts co-occurrence within a session ``1 + session_weight`` times:

    G = X^T X + session_weight * S^T S.

Only fitting reads timestamps; B is still items x items, so scoring and fold-in need none. Without
timestamps (or with ``session_weight`` 0) G = X^T X.

Scores. score_ui = sum_j x_uj B_ji, the dot product of the user's interaction row and column i of B;
a new user's scores (fold-in) are the same product with the row built from their ratings, exact and
in O(n_rated * n_items). The contribution of rated item j to target i is x_uj B_ji (they sum to the
score). Scores are not ratings; they can be negative.

Cost. S^T S is one sparse product. G is dense n_items^2 (float64, 8 bytes each) and the inverse
runs in O(n_items^3) through a Cholesky factorisation (G + Lambda is symmetric positive definite):
ml-100k (1.7k movies) fits in well under a second, ml-latest-small (9.7k) in tens of seconds.
A catalog larger than ``max_items`` (default 16,000: 2 GB per matrix) is fitted on its ``max_items``
most-rated movies, the rest scored by a popularity fallback below them
(`movierec.models.ranking.item_item`), so the full MovieLens 32M (87k movies) fits in bounded memory.

Fallback for pairs unknown to training: 0 (an unknown user has no interactions; an unknown movie no
weights).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.interactions import check_interaction_params, interaction_matrix, session_matrix
from movierec.models.core.memory import cooccurrence_pairs, csr_bytes
from movierec.models.core.recommender import Callback
from movierec.models.ranking.item_item import DenseItemItem

__all__ = ["EASE", "ease_weights"]

# Rows per band when mirroring the inverse's triangle (a band is a strided copy of 256 x n values).
_MIRROR_ROWS = 256


class EASE(DenseItemItem):
    """Steck's EASE with the EDLAE dropout penalty and session co-occurrence (see the module docstring).

    Args:
        reg: lambda, the L2 penalty on every weight (> 0). Larger values trust co-occurrence less.
        dropout: p in [0, 1): adds p / (1 - p) * G_jj to the penalty of input item j.
        session_gap: seconds between two of a user's consecutive ratings that start a new session.
        session_weight: the extra weight of co-occurrence within a session (0: sessions ignored).
        min_rating: ratings below it are not interactions (see `movierec.models.core.interactions`).
        weighting: ``"binary"``, ``"rating"`` or ``"centered"`` interaction values.
        max_items: the most movies W covers (int >= 1); with more in training, W is learned on the
            ``max_items`` most-rated ones and the rest are scored below them by popularity
            (`movierec.models.ranking.item_item`). Fitting takes about 3 * 8 * n^2 bytes and
            O(n^3) time for n = min(n_items, max_items).

    Fitted attributes: ``weights_`` (n, n) float64 B with a zero diagonal (row j: how much
    interacting with kept movie j raises each kept movie's score), ``kept_`` and ``fallback_`` (see
    `DenseItemItem`; None unless the catalog exceeds ``max_items``).

    The defaults were chosen on validation carve-outs of ml100k-strat75's training part (never its
    test part); benchmarks/selection/ranking_items.py --select reproduces the grid.
    """

    name = "ease"

    def __init__(
        self,
        reg: float = 200.0,
        dropout: float = 0.5,
        session_gap: float = 30.0,
        session_weight: float = 2.0,
        min_rating: float = 0.0,
        weighting: str = "binary",
        max_items: int = 16_000,
    ) -> None:
        self.reg = reg
        self.dropout = dropout
        self.session_gap = session_gap
        self.session_weight = session_weight
        self.min_rating = min_rating
        self.weighting = weighting
        self.max_items = max_items

    def _check_params(self) -> None:
        check_number("reg", self.reg, strict=True)
        ok = (not isinstance(self.dropout, bool) and isinstance(self.dropout, int | float | np.number)
              and 0 <= self.dropout < 1)
        if not ok:
            raise ConfigError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        check_number("session_gap", self.session_gap)
        check_number("session_weight", self.session_weight)
        check_interaction_params(self.min_rating, self.weighting)
        check_int("max_items", self.max_items)

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        interactions = self._select_items(interaction_matrix(self.seen_, self.min_rating, self.weighting))
        sessions = None
        if self.session_weight > 0 and train.timestamp is not None:
            sessions = session_matrix(train, self.session_gap, self.min_rating, self.weighting)
            if self.kept_ is not None:
                sessions = sp.csr_matrix(sessions)[:, self.kept_]
        self.weights_ = ease_weights(interactions, self.reg, self.dropout, sessions,
                                     self.session_weight)
        if callback is not None:
            callback("solve", {"items": interactions.shape[1]})

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Quadratic in movies: the dense float64 Gram matrix inverted in place, a second n^2 for the
        session Gram, and the sparse co-occurrence products before densifying."""
        n = min(n_items, int(self.max_items))
        dense = 8 * n * n * (2 if self.session_weight > 0 else 1)
        return int(dense + 12 * cooccurrence_pairs(n_users, n, n_ratings)
                   + 3 * csr_bytes(n_users, n_ratings))


def ease_weights(interactions: sp.spmatrix, reg: float, dropout: float = 0.0,
                 sessions: sp.spmatrix | None = None, session_weight: float = 0.0) -> np.ndarray:
    """The EASE / EDLAE weight matrix B (n_items, n_items) float64 with a zero diagonal.

    Args:
        interactions: users x items interaction matrix X (sparse).
        reg: lambda > 0, added to every diagonal entry of G = X^T X (+ session_weight * S^T S).
        dropout: p in [0, 1); adds p / (1 - p) * G_jj to diagonal entry j.
        sessions: sessions x items interaction matrix S, or None.
        session_weight: the weight of S^T S in G.
    """
    x = sp.csr_matrix(interactions, dtype=np.float64)
    gram = (x.T @ x).toarray()
    if sessions is not None and session_weight > 0:
        s = sp.csr_matrix(sessions, dtype=np.float64)
        session_gram = (s.T @ s).toarray()
        session_gram *= session_weight  # in place: one more dense n_items^2 buffer, not two
        gram += session_gram
        del session_gram
    diagonal = np.diag(gram).copy()
    gram[np.diag_indices_from(gram)] += reg + dropout / (1.0 - dropout) * diagonal
    # Inverse of an SPD matrix through its Cholesky factor: about half the work of a general
    # inverse, and in place (overwrite) so only one dense n^2 buffer is alive.
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=True, overwrite_a=True)
    if info != 0:
        raise ConfigError(f"EASE: G + lambda I is not positive definite (LAPACK info {info}); "
                          f"raise reg")
    inverse, info = scipy.linalg.lapack.dpotri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise ConfigError(f"EASE: inverting G + lambda I failed (LAPACK info {info}); raise reg")
    # dpotri fills only the lower triangle: mirror it in place, a band of rows at a time (whole-matrix
    # np.tril copies would cost two more n^2 buffers and several seconds at 10k movies).
    n = inverse.shape[0]
    for start in range(0, n, _MIRROR_ROWS):
        stop = min(start + _MIRROR_ROWS, n)
        block = inverse[start:stop, start:stop]
        block[np.triu_indices(stop - start, 1)] = block.T[np.triu_indices(stop - start, 1)]
        inverse[start:stop, stop:] = inverse[stop:, start:stop].T
    diagonal = np.diag(inverse).copy()
    inverse /= -diagonal[None, :]
    np.fill_diagonal(inverse, 0.0)
    return inverse
