"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008): `ImplicitALS` and its batched row solves.

iALS reads the training ratings as interactions through `interaction_matrix` (``min_rating``,
``weighting``: see `movierec.models.core.interactions`), with value v_ui > 0 for an interaction and nothing
stored elsewhere. Scores are ranking scores, not ratings (``predicts_ratings = False``).

iALS notation, indices inside: x_u (user) and y_i (item) vectors of ``factors`` numbers, preference
p_ui = 1 for an interaction and 0 elsewhere, confidence c_ui = 1 + alpha * v_ui (1 elsewhere). ALS
minimises sum_{u,i} c_ui (p_ui - x_u·y_i)^2 + reg (sum_u |x_u|^2 + sum_i |y_i|^2) over ALL pairs; with
the items fixed, user u's exact minimiser is

    x_u = (Y^T C^u Y + reg I)^-1 Y^T C^u p(u),   Y^T C^u Y = Y^T Y + Y^T (C^u - I) Y,

where only u's interactions enter the second term, so it costs O(n_u f^2) to form (and O(f^3) to solve)
instead of O(n_items f^2). `ials_solve_reference` is that formula, one user at a time. The trainer does
not form the f x f systems: `ials_cg_solve` runs ``cg_steps`` conjugate-gradient steps for all rows at
once, warm-started from the previous epoch, and each step's matrix-vector product

    A_u p_u = (Y^T Y + reg I) p_u + sum_{i in I(u)} (c_ui - 1) (y_i·p_u) y_i

is one dense (n_users, f) x (f, f) product plus a sampled dense-dense product (the dots y_i·p_u at the
nonzeros only) and a sparse x dense product: O(nnz f + n_users f^2) per step, no loop over users.

Fallback for pairs unknown to training: a pair with an unknown user or item scores 0 (no evidence; for
iALS that is what zero vectors give).
Fold-in of a new user is the exact solve above with the item factors frozen (milliseconds); a user whose
ratings are all below ``min_rating`` (or who has none) gets the cold-start scores: popularity, the
number of training users who rated each item (the base class's default).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from movierec.data.dataset import Ratings
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.exchange import LOCAL, RowExchange
from movierec.models.core.interactions import (
    check_interaction_params,
    interaction_matrix,
    session_rows,
)
from movierec.models.core.memory import factor_fit_bytes
from movierec.models.core.recommender import Callback
from movierec.models.core.train import record_epoch, resolve_device
from movierec.models.ranking import ials_cpu
from movierec.models.ranking.factors import ImplicitFactors

__all__ = ["ImplicitALS", "ials_cg_solve", "ials_solve_reference"]


# -- the iALS row solves -------------------------------------------------------------------------


def ials_solve_reference(confidence: sp.csr_matrix, other: np.ndarray, reg: float) -> np.ndarray:
    """Exact iALS solve of every row, one row at a time (float64): the readable reference.

    Args:
        confidence: rows x cols CSR whose stored entries are the interactions, holding c - 1 =
            alpha * v (every stored entry has preference 1).
        other: (n_cols, f) the fixed other side's factors.
        reg: L2 penalty.

    Returns:
        (n_rows, f) x_r = (Y^T Y + reg I + Y_r^T diag(c_r - 1) Y_r)^-1 Y_r^T c_r.
    """
    other = np.asarray(other, dtype=np.float64)
    f = other.shape[1]
    gram = other.T @ other + reg * np.eye(f)
    out = np.zeros((confidence.shape[0], f))
    for row in range(confidence.shape[0]):
        start, stop = confidence.indptr[row], confidence.indptr[row + 1]
        cols = confidence.indices[start:stop]
        extra = confidence.data[start:stop].astype(np.float64)
        y = other[cols]
        out[row] = np.linalg.solve(gram + (y.T * extra) @ y, y.T @ (1.0 + extra))
    return out


class _Pattern:
    """One side's interactions as torch CSR pieces (rows x cols, sorted indices, int32 indices):
    the (c - 1) values, and reusable buffers for the sampled products.

    On the CPU the pieces share the matrix's arrays where their dtypes already match (no copy: at
    32M ratings with session rows each copy of one side is ~0.4 GB), and the two buffers of the
    unfused solve (`dots`), 4 bytes per entry each, are made on its first use: the fused solve
    never needs them."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device) -> None:
        matrix = matrix.tocsr()
        matrix.sort_indices()
        self.shape = matrix.shape
        index = np.int32 if matrix.nnz < 2**31 else np.int64
        self.crow = torch.as_tensor(matrix.indptr.astype(index, copy=False), device=device)
        self.col = torch.as_tensor(matrix.indices.astype(index, copy=False), device=device)
        self.extra = torch.as_tensor(matrix.data.astype(np.float32, copy=False), device=device)  # c - 1
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._workspace: list[torch.Tensor] = []

    def workspace(self, like: torch.Tensor) -> list[torch.Tensor]:
        """Four scratch arrays shaped like ``like`` (rows x f), allocated on first use."""
        if not self._workspace or self._workspace[0].shape != like.shape \
                or self._workspace[0].dtype != like.dtype:
            self._workspace = [torch.empty_like(like) for _ in range(4)]
        return self._workspace

    def csr(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, values, size=self.shape,
                                       check_invariants=False)

    def dots(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        """(nnz,) x_r·y_c at the stored entries only (a sampled dense-dense product), in a buffer
        that the next call overwrites."""
        if self._buffers is None:
            with warnings.catch_warnings():  # torch warns once per process that sparse CSR is "beta"
                warnings.simplefilter("ignore", UserWarning)
                self._buffers = (self.csr(torch.zeros_like(self.extra)),
                                 self.csr(torch.zeros_like(self.extra)))
        pattern, out = self._buffers
        torch.sparse.sampled_addmm(pattern, x, other.T, beta=0.0, out=out)
        return out.values()


def ials_cg_solve(pattern: _Pattern, other: torch.Tensor, x: torch.Tensor, reg: float, steps: int,
                  fused: bool | None = None) -> torch.Tensor:
    """``steps`` conjugate-gradient steps towards every row's iALS solution at once, in place.

    Args:
        pattern: the rows' interactions (c - 1 values), see `_Pattern`.
        other: (n_cols, f) the fixed other side's factors.
        x: (n_rows, f) the starting point (the previous epoch's factors: a warm start), overwritten
            with the result.
        reg: L2 penalty. steps: CG steps (>= 1).
        fused: run each row's steps in one compiled pass (`movierec.models.ranking.ials_cpu`, on a
            CPU with numba, float32) instead of whole-matrix products; None: fused where it can run.

    Returns:
        ``x``: with ``steps`` >= f, the exact solution of `ials_solve_reference` up to rounding.

    Every (n_rows, f) array is updated in place, in scratch space the pattern keeps from one call to
    the next: on a CPU, fresh large arrays cost page faults on first touch, as much as the arithmetic.
    """
    gram = other.T @ other
    gram.diagonal().add_(float(reg))
    can_fuse = (ials_cpu.available and x.device.type == "cpu" and x.dtype == torch.float32
                and other.dtype == torch.float32 and x.is_contiguous())
    if fused is None:
        fused = can_fuse
    elif fused and not can_fuse:
        raise ValueError("fused iALS solves need numba and float32 CPU tensors")
    if fused:
        ials_cpu.cg_solve_rows(pattern.crow.numpy(), pattern.col.numpy(), pattern.extra.numpy(),
                               other.contiguous().numpy(), gram.numpy(), x.numpy(), steps,
                               torch.get_num_threads())
        return x
    extra = pattern.extra
    r, p, ap, scratch = pattern.workspace(x)
    # r = b - A x with b_u = sum_i c_ui y_i: one sampled product and one sparse product together
    weights = (1.0 + extra).sub_(extra * pattern.dots(x, other))
    torch.mm(x, gram, out=r)
    r.addmm_(pattern.csr(weights), other, beta=-1.0)
    p.copy_(r)

    def rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # vecdot would allocate a temporary
        return torch.mul(a, b, out=scratch).sum(1)

    rs = rowdot(r, r)
    tiny = torch.finfo(x.dtype).tiny
    for _ in range(int(steps)):
        weights = pattern.dots(p, other).mul_(extra)
        torch.mm(p, gram, out=ap)
        ap.addmm_(pattern.csr(weights), other)
        pap = rowdot(p, ap)
        # a converged row (r = 0) has p = 0: leave it where it is instead of dividing 0 by 0
        alpha = torch.where(pap > tiny, rs / pap.clamp_min(tiny), 0.0)[:, None]
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        rs_new = rowdot(r, r)
        beta = torch.where(rs > tiny, rs_new / rs.clamp_min(tiny), 0.0)[:, None]
        torch.addcmul(r, beta, p, out=p)  # p = r + beta p in one pass (elementwise: aliasing is safe)
        rs = rs_new
    return x


class ImplicitALS(ImplicitFactors):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) with batched conjugate-gradient solves.

    Each epoch solves every item given the users, then every user given the items (see the module
    docstring), each by ``cg_steps`` conjugate-gradient steps vectorised over all rows and warm-started
    from the previous epoch (Takacs et al. 2011; as the ``implicit`` package does per row). Cost per
    epoch: 2 (cg_steps + 1) (sampled + sparse products, each O(nnz f), plus an (n, f) x (f, f) one).

    Explanations follow Hu et al. 2008, section 5: with W^u = (Y^T C^u Y + reg I)^-1, the score is
    y_i·x_u = sum_j (y_i^T W^u y_j) c_uj over u's interactions j, so `_contributions` returns
    (y_i^T W^u y_j) c_uj, which sums to the fold-in score.

    Defaults were chosen by NDCG@10 on a validation carve-out of ml100k-strat75's training part
    (``user_ratio_split(train, 0.8, 0)``, by ``benchmarks/selection/implicit_models.py --tune``):
    accuracy runs along a ridge reg ~ 15 alpha^0.6 (reg 30 / alpha 2, 45 / 4, 60 / 8, 90 / 16: validation NDCG
    0.241-0.243, against 0.183 at reg 0.05 and alpha 1, the regularisation of the ``implicit`` anchor
    in BENCHMARKS.md); 60 / 8 was the best. A strong penalty is what matters: it keeps the factors of
    rarely seen items small. Factors 32-128, 10-25 epochs, 3-8 CG steps and the weightings all moved
    it by less than 0.002.

    Args:
        factors: length of x_u and y_i.
        reg: L2 penalty on every factor (> 0).
        alpha: confidence slope, c = 1 + alpha * value (>= 0).
        epochs: alternations (each: all items, then all users).
        cg_steps: conjugate-gradient steps per row and half-epoch.
        session_gap: seconds between two of a user's consecutive ratings that start a new session
            (`movierec.models.core.interactions.session_matrix`).
        session_weight: the confidence scale of session pseudo-users (0: sessions ignored). With
            timestamps, every rating session of two or more interactions (`session_rows`) joins the
            training matrix as an extra row, a pseudo-user whose confidence is
            1 + alpha * session_weight * value: the item factors then also learn which movies are
            rated in one sitting (the signal EASE's session term adds). Only the real users' vectors
            are kept; scoring, fold-in and explanations are unchanged. Default 0.2: on five validation
            carve-outs of ml100k-strat75's training part NDCG@10 0.2492 against 0.2460 without
            sessions (0.1: 0.2482, 0.3: 0.2471, 0.4: 0.2434; every carve-out gained at 0.2).
        min_rating, weighting: what counts as an interaction and its value (see `interaction_matrix`).
        random_state: seed of the initial factors (normal, std 0.01).
        device: where training runs ("auto": CUDA when present, else CPU); results do not depend on it
            beyond rounding.
    """

    name = "ials"

    def __init__(
        self,
        factors: int = 64,
        reg: float = 60.0,
        alpha: float = 8.0,
        epochs: int = 15,
        cg_steps: int = 3,
        session_gap: float = 30.0,
        session_weight: float = 0.2,
        min_rating: float = 0.0,
        weighting: str = "binary",
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.factors = factors
        self.reg = reg
        self.alpha = alpha
        self.epochs = epochs
        self.cg_steps = cg_steps
        self.session_gap = session_gap
        self.session_weight = session_weight
        self.min_rating = min_rating
        self.weighting = weighting
        self.random_state = random_state
        self.device = device

    def _check_params(self) -> None:
        check_int("factors", self.factors, 1)
        check_number("reg", self.reg, strict=True)
        check_number("alpha", self.alpha)
        check_int("epochs", self.epochs, 1)
        check_int("cg_steps", self.cg_steps, 1)
        check_number("session_gap", self.session_gap)
        check_number("session_weight", self.session_weight)
        check_interaction_params(self.min_rating, self.weighting)
        check_int("random_state", self.random_state, 0)
        resolve_device(self.device)

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        confidence = self.confidence_matrix(train)
        self._alternate(confidence, confidence.T.tocsr(), train.n_users, LOCAL, callback,
                        resolve_device(self.device))

    def confidence_matrix(self, train: Ratings) -> sp.csr_matrix:
        """What training solves against: (n_users + session pseudo-users) x n_items CSR (float32) of
        c - 1 = alpha * v at every interaction (the real users' rows first)."""
        # the sessions first: their sort is the fit's largest temporary, and the users' rows are
        # not yet held beside it
        sessions = None
        if self.session_weight > 0 and train.timestamp is not None:
            sessions = session_rows(train, self.session_gap, self.min_rating, self.weighting)
            sessions.data *= float(self.session_weight)  # in place: the rows are this fit's own
        confidence = interaction_matrix(train.csr, self.min_rating, self.weighting)
        if sessions is not None:  # sessions as pseudo-users after the real ones
            confidence = sp.vstack([confidence, sessions.astype(confidence.dtype)]).tocsr()
            del sessions
        confidence.data *= np.float32(self.alpha)  # c - 1 at every interaction
        return confidence

    def _alternate(self, user_rows: sp.csr_matrix, item_rows: sp.csr_matrix, n_real: int,
                   exchange: RowExchange, callback: Callback | None, device: torch.device) -> None:
        """The epochs, on the rows ``exchange`` gives this process, and the learned state.

        Args:
            user_rows: the rows ``exchange.bounds(n_rows)`` of `confidence_matrix` (block x n_items).
            item_rows: its columns ``exchange.bounds(n_items)``, as rows (block x n_rows).
            n_real: the real users (the rows after them are session pseudo-users, not kept).
        """
        n_rows, n_items = item_rows.shape[1], user_rows.shape[1]
        by_user, by_item = _Pattern(user_rows, device), _Pattern(item_rows, device)
        del user_rows, item_rows  # the caller's copy of a temporary is gone with these
        r0, r1 = exchange.bounds(n_rows)
        c0, c1 = exchange.bounds(n_items)
        generator = torch.Generator().manual_seed(int(self.random_state))
        k, reg, steps = int(self.factors), float(self.reg), int(self.cg_steps)
        # scaled in place: ``randn(...) * 0.01`` held two copies of a side at once (with session
        # rows at 16M ratings, 2 x 0.2 GB: the fit's peak)
        users = torch.randn(n_rows, k, generator=generator).mul_(0.01).to(device)
        items = torch.randn(n_items, k, generator=generator).mul_(0.01).to(device)
        history: list[dict[str, float]] = []
        for epoch in range(1, int(self.epochs) + 1):
            start = time.perf_counter()
            ials_cg_solve(by_item, users, items[c0:c1], reg, steps)  # in place, on this block
            exchange.gather(items[c0:c1], n_items, out=items)
            ials_cg_solve(by_user, items, users[r0:r1], reg, steps)
            exchange.gather(users[r0:r1], n_rows, out=users)
            if device.type == "cuda":  # CUDA runs ahead of the host: time the work, not its launch
                torch.cuda.synchronize(device)
            record_epoch(history, {"epoch": epoch, "epochs": self.epochs,
                                    "seconds": time.perf_counter() - start}, callback)
        self.user_factors_ = users[:n_real].cpu().numpy()
        self.item_factors_ = items.cpu().numpy()
        self.item_bias_ = np.zeros(n_items, dtype=np.float32)
        self.history_ = history

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Linear: the confidences (with session rows: about twice the ratings) by user and by movie
        as torch CSR with value buffers, and float32 factors
        (`movierec.models.core.memory.factor_fit_bytes`)."""
        return factor_fit_bytes(n_users, n_items, n_ratings, int(self.factors),
                                sessions=self.session_weight > 0)

    def _user_solution(self, item_index: np.ndarray, ratings: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """A new user's system and its solution, in float64, from their rated item indices and
        ratings: (Y^T C^u Y + reg I (f, f), Y_u (n, f), c_u (n,) for the n kept interactions, x_u
        (f,)), or None when no rating is an interaction. O(n f^2) on top of the cached Y^T Y.

        The last user's is remembered (read-only arrays, keyed by the items, the ratings and the
        factors): an explained fold-in asks for it twice in a row (the user's vector, then the
        contributions to the picks)."""
        key = (item_index.tobytes(), ratings.tobytes())
        memo = getattr(self, "_solution_memo", None)
        if memo is not None and memo[0] is self.item_factors_ and memo[1] == key:
            return memo[2]
        items, values = self._fold_in_values(item_index, ratings)
        solution = None
        if len(items):
            y = self.item_factors_[items].astype(np.float64)
            extra = float(self.alpha) * values
            matrix, confidence = self._gram() + (y.T * extra) @ y, 1.0 + extra
            solution = (matrix, y, confidence, np.linalg.solve(matrix, y.T @ confidence))
            for array in solution:  # shared with the next caller: nobody may change them
                array.flags.writeable = False
        self._solution_memo = (self.item_factors_, key, solution)  # one assignment: thread-safe
        return solution

    def _gram(self) -> np.ndarray:
        """Y^T Y + reg I (float64), cached: every fold-in needs it and it costs n_items f^2."""
        cached = getattr(self, "_gram_cache", None)
        if cached is None or cached[0] is not self.item_factors_:
            y = self.item_factors_.astype(np.float64)
            gram = y.T @ y
            gram[np.diag_indices_from(gram)] += float(self.reg)
            cached = (self.item_factors_, gram)
            self._gram_cache = cached
        return cached[1]

    def _fold_in_vector(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray | None:
        solution = self._user_solution(np.asarray(item_index, dtype=np.int64),
                                       np.asarray(ratings, dtype=np.float64))
        return None if solution is None else solution[3]

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        vector = self._fold_in_vector(item_index, ratings)
        return self._cold_start() if vector is None else self._scores_for(vector)

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): (y_t^T W^u y_j) c_uj for each target t and rated item j;
        a row sums to the fold-in score of t. Items below ``min_rating`` contribute 0."""
        item_index = np.asarray(item_index, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        out = np.zeros((len(target), len(item_index)))
        keep = np.flatnonzero(ratings >= self.min_rating)
        solution = self._user_solution(item_index, ratings)
        if solution is None:
            return out
        matrix, y_rated, confidence, _ = solution
        y_target = self.item_factors_[np.asarray(target, dtype=np.int64)].astype(np.float64)
        # s_tj = y_t^T W^u y_j = (W^u y_t)^T y_j (W^u is symmetric): solve for the few targets,
        # not for every rated movie, and never form W^u
        out[:, keep] = (np.linalg.solve(matrix, y_target.T).T @ y_rated.T) * confidence[None, :]
        return out
