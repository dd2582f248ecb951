"""EASE: an item-item linear model with a closed form (Steck 2019, "Embarrassingly Shallow Autoencoders").

Notation. X is the users x items interaction matrix (`movierec.models.interactions`), G = X^T X its
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
``max_items`` guards against catalogs whose dense matrices would not fit in memory (20,000 movies ->
3.2 GB per matrix).

Fallback for pairs unknown to training: 0 (an unknown user has no interactions; an unknown movie no
weights).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.base import Callback, Recommender, check_int, check_number
from movierec.models.interactions import (
    check_interaction_params,
    interaction_matrix,
    interaction_weights,
    user_interactions,
)

__all__ = ["EASE", "DenseItemItem", "ease_weights", "session_matrix", "session_rows"]

# Pairs per step in `_predict`: bounds the gathered (pairs x rated items) values.
_PAIR_BLOCK = 4096
# Rows per band when mirroring the inverse's triangle (a band is a strided copy of 256 x n values).
_MIRROR_ROWS = 256


class DenseItemItem(Recommender):
    """Scoring shared by the models that learn one dense items x items matrix W (``weights_``) and score
    a user by their interaction row, score_u = x_u W: EASE and GF-CF.

    A subclass takes the hyperparameters ``min_rating``, ``weighting`` and ``max_items``, calls
    `_check_size` at the start of `_fit` and sets ``weights_`` there. Everything else is here:
    scores, pair predictions, exact fold-in, contributions x_uj W_ji (they sum to the score), the
    symmetrised W as item similarity, and persistence. Fallback for pairs unknown to training: 0.
    """

    predicts_ratings = False
    min_rating: float
    weighting: str
    max_items: int
    weights_: np.ndarray

    def _check_size(self) -> None:
        """Raise `ConfigError` when the training catalog is larger than ``max_items``."""
        n_items = self.seen_.shape[1]
        if n_items > self.max_items:
            gigabytes = 8 * n_items**2 / 1e9
            raise ConfigError(
                f"max_items is {self.max_items}, but training has {n_items:,} movies (dense "
                f"{n_items:,} x {n_items:,} matrices of {gigabytes:.1f} GB each); raise max_items if "
                f"memory allows"
            )

    def _interactions(self, user_index: np.ndarray) -> sp.csr_matrix:
        """Interaction rows (float64 CSR) of known users, built as in training."""
        rows = interaction_matrix(self.seen_[user_index], self.min_rating, self.weighting)
        return rows.astype(np.float64)

    def _row_values(self, ratings: np.ndarray) -> np.ndarray:
        """A new user's interaction values (float64), one per rating, 0 below ``min_rating``."""
        return user_interactions(ratings, self.min_rating, self.weighting).astype(np.float64)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return np.asarray(self._interactions(np.asarray(user_index, dtype=np.int64)) @ self.weights_)

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        scores = np.zeros(len(user_index))
        pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
        for start in range(0, len(pairs), _PAIR_BLOCK):
            block = pairs[start : start + _PAIR_BLOCK]
            rows = self._interactions(user_index[block])
            # sum_j x_uj W_ji per pair: one gather of W over every (pair, rated item) entry.
            owner = np.repeat(np.arange(len(block)), np.diff(rows.indptr))
            values = rows.data * self.weights_[rows.indices, item_index[block][owner]]
            scores[block] = np.bincount(owner, weights=values, minlength=len(block))
        return scores

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self._row_values(ratings) @ self.weights_[np.asarray(item_index, dtype=np.int64)]

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): x_uj * W_ji, which sums over j to the fold-in score of i.
        Ratings below ``min_rating`` contribute 0."""
        item_index = np.asarray(item_index, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        return (self.weights_[item_index][:, target] * self._row_values(ratings)[:, None]).T

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """W symmetrised, (W_ij + W_ji) / 2, rows ``item_index``: how strongly each pair predicts
        the other."""
        item_index = np.asarray(item_index, dtype=np.int64)
        return (self.weights_[item_index] + self.weights_[:, item_index].T) / 2

    def _item_vectors(self) -> np.ndarray | None:
        return None  # no item embedding; similarity comes from W itself

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights_}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        weights = arrays["weights"]
        if weights.shape != (self.seen_.shape[1],) * 2:
            raise ValueError("weights do not match the catalog")  # load_model: "incomplete artifact"
        self.weights_ = weights


class EASE(DenseItemItem):
    """Steck's EASE with the EDLAE dropout penalty and session co-occurrence (see the module docstring).

    Args:
        reg: lambda, the L2 penalty on every weight (> 0). Larger values trust co-occurrence less.
        dropout: p in [0, 1): adds p / (1 - p) * G_jj to the penalty of input item j.
        session_gap: seconds between two of a user's consecutive ratings that start a new session.
        session_weight: the extra weight of co-occurrence within a session (0: sessions ignored).
        min_rating: ratings below it are not interactions (see `movierec.models.interactions`).
        weighting: ``"binary"``, ``"rating"`` or ``"centered"`` interaction values.
        max_items: the largest catalog (movies in training) the dense n_items^2 matrices may cover;
            memory is about 3 * 8 * n_items^2 bytes while fitting.

    Fitted attributes: ``weights_`` (n_items, n_items) float64 B with a zero diagonal (row j: how
    much interacting with movie index j raises each movie's score).

    The defaults were chosen on validation carve-outs of ml100k-strat75's training part (never its
    test part); benchmarks/ranking_items.py --select reproduces the grid.
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
        max_items: int = 20_000,
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
        self._check_size()
        interactions = interaction_matrix(self.seen_, self.min_rating, self.weighting)
        sessions = None
        if self.session_weight > 0 and train.timestamp is not None:
            sessions = session_matrix(train, self.session_gap, self.min_rating, self.weighting)
        self.weights_ = ease_weights(interactions, self.reg, self.dropout, sessions,
                                     self.session_weight)
        if callback is not None:
            callback("solve", {"items": self.seen_.shape[1]})


def session_matrix(train: Ratings, gap: float, min_rating: float = 0.0, weighting: str = "binary"
                   ) -> sp.csr_matrix:
    """Sessions x items float64 CSR of interactions: a user's ratings in time order, cut wherever
    more than ``gap`` seconds separate consecutive ones; values as in `interaction_matrix` (ratings
    below ``min_rating`` dropped; the ``"centered"`` mean is the user's, over all their ratings).

    Raises:
        ConfigError: if ``train`` has no timestamps.
    """
    if train.timestamp is None:
        raise ConfigError("sessions need timestamps")
    users, items = train.user_index, train.item_index
    ratings = train.rating.astype(np.float64)
    means = (np.bincount(users, ratings, train.n_users)
             / np.maximum(np.bincount(users, minlength=train.n_users), 1))
    values = interaction_weights(ratings, weighting, means[users]).astype(np.float64)
    order = np.lexsort((items, train.timestamp, users))
    users, items, times = users[order], items[order], train.timestamp[order]
    values, ratings = values[order], ratings[order]
    starts = np.ones(len(users), dtype=bool)
    starts[1:] = (users[1:] != users[:-1]) | (np.diff(times) > gap)
    session = np.cumsum(starts) - 1
    keep = ratings >= min_rating
    shape = (int(session[-1]) + 1 if len(session) else 0, train.n_items)
    return sp.csr_matrix((values[keep], (session[keep], items[keep])), shape=shape)


def session_rows(train: Ratings, gap: float, min_rating: float = 0.0, weighting: str = "binary"
                 ) -> sp.csr_matrix:
    """`session_matrix` without the sessions of fewer than two interactions (float64 CSR): the
    sessions that say which movies go together. A one-movie session only repeats its user's row;
    as an extra row of a graph (GF-CF) or a pseudo-user (iALS) it would inflate that movie's degree
    and confidence without any co-occurrence."""
    sessions = session_matrix(train, gap, min_rating, weighting)
    return sessions[np.flatnonzero(np.diff(sessions.indptr) >= 2)]


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
        gram += session_weight * (s.T @ s).toarray()
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
