"""iALS conjugate-gradient row solves fused per row, compiled by numba: the CPU fast path.

`movierec.models.ranking.ials.ials_cg_solve` runs each CG step for all rows at once as whole-matrix
products (a sampled dense-dense product for the dots y_i·p_u, then a sparse x dense one): two passes
over the nonzeros per step, each gathering a factor row per nonzero from main memory. On a CPU that
gathering, not the arithmetic, is the cost: on 4 million ratings at 64 factors the user half-step
took 0.63-0.79 s that way. Here one row runs all its CG steps while its items' factor rows sit in
the cache (the per-row solver of Takacs et al. 2011, as the ``implicit`` package runs it), and the
rows are split over threads: 0.23-0.26 s for the same half-step, equal to the torch path up to
float32 rounding (``tests/models/ranking/test_ials_bpr.py`` holds them together).

Same arithmetic as `ials_cg_solve`, per row u (A_u = G + Y^T diag(c_u - 1) Y, G = Y^T Y + reg I):
r = b - A_u x_u with b = Y^T c_u, p = r, then ``steps`` times alpha = r·r / p·A_u p, x += alpha p,
r -= alpha A_u p, p = r + (r'·r' / r·r) p; a row whose residual is zero stops where it is.

numba is a dependency; where it cannot be installed `available` is False and callers keep
the torch path. numba's built-in thread pool must not be entered by two threads at once, so calls
are serialised by a lock; the thread count follows ``torch.get_num_threads()``, the one setting
movierec's callers already tune.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

__all__ = ["available", "cg_solve_rows"]

# numba is imported (about a second) and the solver compiled (seconds; then cached on disk) on the
# first solve, not when movierec is imported: most commands never fit an iALS model
available = importlib.util.find_spec("numba") is not None
_LOCK = threading.Lock()
_TINY = float(np.finfo(np.float32).tiny)
_compiled = None
_prange = range  # numba.prange once compiled (a global the compiler reads when it compiles)


def _cg_rows(indptr, indices, extra, other, gram, x, steps, tiny):  # pragma: no cover - compiled
    n, f = x.shape
    for u in _prange(n):
        r = np.empty(f, np.float32)
        p = np.empty(f, np.float32)
        ap = np.empty(f, np.float32)
        xu = x[u]
        start, stop = indptr[u], indptr[u + 1]
        # r = b - A x = sum_i (c_ui - (c_ui - 1) y_i·x) y_i - G x
        for a in range(f):
            acc = np.float32(0.0)
            for b in range(f):
                acc += gram[a, b] * xu[b]
            r[a] = -acc
        for k in range(start, stop):
            y = other[indices[k]]
            e = extra[k]
            d = np.float32(0.0)
            for a in range(f):
                d += y[a] * xu[a]
            c = (np.float32(1.0) + e) - e * d
            for a in range(f):
                r[a] += c * y[a]
        rs = np.float32(0.0)
        for a in range(f):
            p[a] = r[a]
            rs += r[a] * r[a]
        for _ in range(steps):
            if rs <= tiny:
                break
            for a in range(f):
                acc = np.float32(0.0)
                for b in range(f):
                    acc += gram[a, b] * p[b]
                ap[a] = acc
            for k in range(start, stop):
                y = other[indices[k]]
                d = np.float32(0.0)
                for a in range(f):
                    d += y[a] * p[a]
                d *= extra[k]
                for a in range(f):
                    ap[a] += d * y[a]
            pap = np.float32(0.0)
            for a in range(f):
                pap += p[a] * ap[a]
            if pap <= tiny:
                break
            alpha = rs / pap
            rs_new = np.float32(0.0)
            for a in range(f):
                xu[a] += alpha * p[a]
                r[a] -= alpha * ap[a]
                rs_new += r[a] * r[a]
            beta = rs_new / rs
            for a in range(f):
                p[a] = r[a] + beta * p[a]
            rs = rs_new


def cg_solve_rows(indptr: np.ndarray, indices: np.ndarray, extra: np.ndarray, other: np.ndarray,
                  gram: np.ndarray, x: np.ndarray, steps: int, threads: int) -> np.ndarray:
    """``steps`` CG steps towards every row's iALS solution, in place, rows split over ``threads``.

    Args:
        indptr, indices: the rows' CSR structure (sorted or not), int32 or int64.
        extra: (nnz,) float32 c - 1 at each stored entry.
        other: (n_cols, f) float32 C-contiguous, the fixed side. gram: (f, f) float32 Y^T Y + reg I.
        x: (n_rows, f) float32 C-contiguous warm start, overwritten. steps: >= 1.

    Raises:
        RuntimeError: if numba is not installed (check `available` first).
    """
    global _compiled, _prange
    if not available:
        raise RuntimeError("the fused iALS solver needs numba: pip install numba")
    import numba

    threads = max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))
    with _LOCK:
        if _compiled is None:
            # fastmath lets the row dots vectorise (reassociated sums); each row is computed by
            # one thread, so results do not depend on the thread count
            _prange = numba.prange
            _compiled = numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)(_cg_rows)
        numba.set_num_threads(threads)
        _compiled(indptr, indices, extra, other, gram, x, int(steps), _TINY)
    return x
