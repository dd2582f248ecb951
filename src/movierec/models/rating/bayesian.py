"""Bayesian matrix factorisation with biases and implicit feedback, learned by Gibbs sampling.

The model is Rendle's Bayesian factorization machine (libFM's MCMC engine) restricted to the
features a ratings matrix offers: user id, movie id, the movies a user rated ("SVD++") and the users
who rated a movie ("flipped" SVD++). With ratings centred by the global mean ``mu``, ``k = factors``
and ``d = k + 1`` (the bias rides along as the last dimension of every vector)::

    r_ui - mu ~ N(<p_u, q_i> + b_u + b_i, 1 / alpha)
    [p_u, b_u] = U_u + |N(u)|^-1/2 sum_{j in N(u)} Y_j      N(u): movies u rated in training
    [q_i, b_i] = V_i + |M(i)|^-1/2 sum_{v in M(i)} Z_v      M(i): users who rated i in training
    U_u ~ N(m_U, diag 1/l_U),  V_i ~ N(m_V, diag 1/l_V),  Y_j ~ N(m_Y, diag 1/l_Y),  Z_v ~ N(m_Z, ...)
    l_gf ~ Gamma(1, 1),  m_gf | l_gf ~ N(0, 1 / l_gf)   (each group g, each dimension f)
    alpha ~ Gamma(1, 1)

These are libFM's hyperpriors (alpha_0 = beta_0 = gamma_0 = 1, mu_0 = 0); nothing is tuned by
hand but the number of factors and sweeps. ``implicit`` drops the Y ("user"), Z ("item") or both
("none") terms; "none" is plain Bayesian biased MF with Normal-Gamma hyperpriors.

Sampler. Write P = [p, b_u] (users x d) and Q = [q, b_i] (movies x d); S is the users x movies
matrix with S_uj = |N(u)|^-1/2 on rated pairs, T the movies x users one with T_iv = |M(i)|^-1/2.
The chain samples (P, Y, Q, Z) rather than (U, Y, V, Z) (the same posterior, as P = U + SY has unit
Jacobian), so every block has an exact Gaussian conditional that vectorises:

1. P | rest: users are independent given Q. User u's precision is diag(l_U) + alpha sum_i x_i x_iᵀ
   with x_i = [q_i, 1], its prior mean m_U + (SY)_u. The d x d Grams of all users come from one
   sparse product (rating indicator x per-movie outer products), then one batched Cholesky.
2. Y | P: P - m_U = S Y + noise is a linear regression with, per dimension f, precision
   l_Uf SᵀS + l_Yf I. SᵀS is diagonalised once per fit (eigendecomposition of the smaller of SᵀS
   and SSᵀ: min(users, movies) squared), so every sweep draws Y exactly with two matrix products.
3. Q | rest and 4. Z | Q: the mirror images.
5. (m_g, l_g) | draws, per group and dimension; 6. alpha | residuals.

Predictions average over ``samples`` draws, one kept every ``thin`` sweeps after ``burn_in`` (the
posterior-mean rating, as libFM and BPMF report it). The mean of dot products is not the dot product
of means, so every kept draw is stored: concatenated along the factor axis, the S draws form
(S * k)-wide user and movie matrices whose single dot product, over S, is the exact average of the
draws' interactions. Cost: ``samples * (factors + 1)`` float32 numbers per user and per movie (and
per movie again for Y); thinning is what bounds it. On ml-100k u1, 100 draws thinned from 800
sweeps score within 0.001 RMSE of averaging all 800.

Fallbacks (`predict` on pairs unknown to training): a user unseen in training is a user with no
ratings, whose vector is the prior mean m_U of each draw; an unseen movie likewise takes m_V.
So an unknown user gets exactly what `recommend_for_ratings` gives an empty profile.

Fold-in (a new user given (movie, rating) pairs): for each kept draw, the user's conditional
posterior mean given that draw's movie vectors, Y, m_U, l_U and alpha (one batched d x d solve over
the draws), then the same posterior-mean scores; the new user's own effect on M(i) is ignored.

Measured (``benchmarks/rating.py --models bayesian-mf``, defaults, one thread): ml-100k u1..u5 mean RMSE 0.884
(u1 0.890) in about 15 s per fold; ml-latest-small random:0.9:42 0.824. On u1 the implicit terms
are worth it: "none" 0.908, "user" 0.904, "item" 0.893, "both" 0.890.

Cost per sweep: O(nnz d^2 + (users + movies) d^3) plus O(min(users, movies) * max(...) * d) for the
implicit terms, all batched torch ops; the one-off eigendecomposition is O(min(users, movies)^3)
(about a second at ml-100k's 943 users; use ``implicit="none"`` when both sides run to tens of
thousands).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.memory import TORCH_BYTES
from movierec.models.core.recommender import Callback, DotParts, Recommender
from movierec.models.core.train import resolve_device, torch_threads

__all__ = ["BayesianMF"]

_IMPLICIT = ("both", "user", "item", "none")
_PAIR_CHUNK = 8192  # pairs scored at once by `_predict` (bounds the (chunk, samples * k) gather)
# The sampler runs in float32 (4x faster than float64 on CPU, native on GPUs); sums of squared
# errors and the running prediction averages are float64.
_DTYPE = torch.float32


class BayesianMF(Recommender):
    """Bayesian biased MF with SVD++-style implicit terms, by Gibbs sampling (see the module doc).

    Args:
        factors: latent dimensions k.
        burn_in: Gibbs sweeps discarded before keeping draws.
        samples: draws kept after burn-in and averaged into predictions (and stored).
        thin: sweeps per kept draw after burn-in (the last of every ``thin``): the chain runs
            ``burn_in + samples * thin`` sweeps; thinning keeps storage at ``samples`` draws.
        implicit: "both" (user and flipped item terms), "user" (SVD++ only), "item" (flipped only)
            or "none" (plain Bayesian MF with biases).
        init_std: standard deviation of the random initial factors (biases start at 0).
        random_state: seed of every draw (int), or None for fresh OS entropy.
        device: "cpu", "cuda", "cuda:N" or "auto" (CUDA when available). Changes speed, not the
            model (up to floating point and random streams, which differ per device).
        threads: torch CPU threads while fitting (restored after; None leaves torch's setting).
            The sampler's kernels are small, so one thread is fastest up to MovieLens-1M scale
            and far faster on a busy machine (ml-100k u1: 15 s with 1 thread, 100 s with 2 on
            this project's shared 2-core box).

    Fitted attributes (float32 numpy): ``user_samples_`` (users, samples, factors + 1) holding
    [p_u, b_u] per draw, ``item_samples_`` (movies, samples, factors + 1) holding [q_i, b_i],
    ``implicit_samples_`` (movies, samples, factors + 1) holding Y (None without user implicit
    terms), ``user_prior_mean_``, ``user_prior_precision_``, ``item_prior_mean_`` (samples,
    factors + 1), ``noise_precision_`` (samples,), ``global_mean_``.
    """

    name = "bayesian-mf"

    def __init__(
        self,
        factors: int = 10,
        burn_in: int = 100,
        samples: int = 100,
        thin: int = 4,
        implicit: str = "both",
        init_std: float = 0.1,
        random_state: int | None = 0,
        device: str = "auto",
        threads: int | None = 1,
    ) -> None:
        self.factors = factors
        self.burn_in = burn_in
        self.samples = samples
        self.thin = thin
        self.implicit = implicit
        self.init_std = init_std
        self.random_state = random_state
        self.device = device
        self.threads = threads

    # -- hyperparameters -----------------------------------------------------------------------
    def _check_params(self) -> None:
        for name, low in (("factors", 1), ("burn_in", 0), ("samples", 1), ("thin", 1)):
            check_int(name, getattr(self, name), low)
        if self.implicit not in _IMPLICIT:
            raise ConfigError(
                f"implicit must be one of {', '.join(map(repr, _IMPLICIT))}, got {self.implicit!r}"
            )
        check_number("init_std", self.init_std)
        seed = self.random_state
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise ConfigError(f"random_state must be an int >= 0 or None, got {seed!r}")
        threads = self.threads
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1
        ):
            raise ConfigError(f"threads must be an int >= 1 or None, got {threads!r}")
        resolve_device(self.device)

    @property
    def _user_implicit(self) -> bool:
        return self.implicit in ("both", "user")

    @property
    def _item_implicit(self) -> bool:
        return self.implicit in ("both", "item")

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        with torch_threads(self.threads):
            self._sample(train, valid, callback)

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """The kept draws ((users + 2 x movies) x samples x (factors + 1), float32), the ratings as
        tensors with running prediction sums, and the current factors."""
        width = int(self.factors) + 1
        tables = n_users + n_items * (2 if self.implicit in ("both", "user") else 1)
        return int(TORCH_BYTES + 48 * n_ratings + 4 * tables * width * (int(self.samples) + 4))

    def _sample(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        device = resolve_device(self.device)
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        rng = np.random.default_rng(int(seed))  # the few scalar hyperparameter draws
        f32 = _DTYPE
        k, d = self.factors, self.factors + 1
        n_users, n_items = train.n_users, train.n_items

        mu = float(np.mean(train.rating, dtype=np.float64))
        users = train.user_index.astype(np.int64)
        items = train.item_index.astype(np.int64)
        residual = train.rating.astype(np.float64) - mu
        by_user = _Side(users, items, residual, n_users, n_items, device)
        by_item = _Side(items, users, residual, n_items, n_users, device)
        side = min(n_users, n_items)
        if (self._user_implicit or self._item_implicit) and side > MAX_IMPLICIT_SIDE:
            raise ConfigError(
                f"implicit={self.implicit!r} decomposes a dense {side:,} x {side:,} matrix "
                f"(~{side * side * 8 / 1e9:.1f} GB, more than the {MAX_IMPLICIT_SIDE:,} limit); "
                "use implicit='none' for data this large"
            )
        spectral_y = _Spectral(by_user.normalised_sp, device) if self._user_implicit else None
        spectral_z = _Spectral(by_item.normalised_sp, device) if self._item_implicit else None

        def randn(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, generator=gen, device=device, dtype=f32)

        P = randn(n_users, d) * float(self.init_std)
        Q = randn(n_items, d) * float(self.init_std)
        P[:, k] = 0.0
        Q[:, k] = 0.0
        Y = torch.zeros(n_items, d, dtype=f32, device=device)
        Z = torch.zeros(n_users, d, dtype=f32, device=device)
        # hyperparameters of the groups U, V, Y, Z: means and precisions per dimension
        means = {g: np.zeros(d) for g in "UVYZ"}
        precisions = {g: np.ones(d) for g in "UVYZ"}
        alpha = 1.0

        rows_u = torch.from_numpy(users).to(device)
        rows_i = torch.from_numpy(items).to(device)
        target = torch.from_numpy(residual).to(device)  # float64, like every sum of errors
        valid_pairs = self._valid_pairs(valid, device)

        kept = self.samples
        user_stack = torch.empty(n_users, kept, d, dtype=torch.float32, device=device)
        item_stack = torch.empty(n_items, kept, d, dtype=torch.float32, device=device)
        y_stack = torch.empty(n_items, kept, d, dtype=torch.float32, device=device) \
            if self._user_implicit else None
        prior_stats = np.empty((kept, 3, d))  # m_U, l_U, m_V per kept draw
        noise = np.empty(kept)
        train_sum = torch.zeros(len(residual), dtype=torch.float64, device=device)
        valid_sum = torch.zeros(len(valid_pairs[0]), dtype=torch.float64, device=device) \
            if valid_pairs is not None else None
        total = self.burn_in + kept * self.thin
        low, high = train.scale

        def tensor(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values, dtype=f32, device=device)

        for sweep in range(total):
            # 1-2: users and their implicit (SVD++) vectors
            m_U, l_U = tensor(means["U"]), tensor(precisions["U"])
            prior = m_U + by_user.normalised @ Y if spectral_y is not None else m_U.expand(n_users, d)
            P = _sample_vectors(Q, by_user, prior, l_U, alpha, randn)
            if spectral_y is not None:
                Y = spectral_y.sample(by_user.normalised_t @ (P - m_U), l_U, tensor(precisions["Y"]),
                                      tensor(means["Y"]), randn)
            # 3-4: movies and their flipped implicit vectors
            m_V, l_V = tensor(means["V"]), tensor(precisions["V"])
            prior = m_V + by_item.normalised @ Z if spectral_z is not None else m_V.expand(n_items, d)
            Q = _sample_vectors(P, by_item, prior, l_V, alpha, randn)
            if spectral_z is not None:
                Z = spectral_z.sample(by_item.normalised_t @ (Q - m_V), l_V, tensor(precisions["Z"]),
                                      tensor(means["Z"]), randn)
            # 5: hyperparameters of every group, from the current draws
            offsets = {
                "U": P - (by_user.normalised @ Y if spectral_y is not None else 0.0),
                "V": Q - (by_item.normalised @ Z if spectral_z is not None else 0.0),
                "Y": Y if spectral_y is not None else None,
                "Z": Z if spectral_z is not None else None,
            }
            for group, theta in offsets.items():
                if theta is not None:
                    means[group], precisions[group] = _normal_gamma(theta, means[group], rng)
            # 6: noise precision
            predicted = _pair_scores(P, Q, rows_u, rows_i, k)
            sse = float(torch.sum((target - predicted) ** 2))
            alpha = float(rng.gamma(1.0 + len(residual) / 2.0, 1.0 / (1.0 + sse / 2.0)))

            after = sweep + 1 - self.burn_in
            keep = after > 0 and after % self.thin == 0
            s = after // self.thin - 1  # index of the latest kept draw; < 0 before the first
            if keep:
                user_stack[:, s] = P.float()
                item_stack[:, s] = Q.float()
                if y_stack is not None:
                    y_stack[:, s] = Y.float()
                prior_stats[s] = np.stack([means["U"], precisions["U"], means["V"]])
                noise[s] = alpha
                train_sum += predicted
            if callback is not None:
                count = max(s + 1, 1)
                shown = train_sum / count if s >= 0 else predicted
                info: dict[str, Any] = {
                    "epoch": sweep + 1,
                    "epochs": total,
                    "train_rmse": _rmse(shown + mu, target + mu, low, high),
                    "noise_precision": alpha,
                }
                if valid_pairs is not None:
                    u, i, r = valid_pairs
                    current = _pair_scores(P, Q, u, i, k)
                    if keep:
                        valid_sum += current
                    shown = valid_sum / count if s >= 0 else current
                    info["valid_rmse"] = _rmse(shown + mu, r, low, high)
                callback("epoch", info)

        self._set_state({
            "global_mean": np.array([mu]),
            "user_samples": user_stack.cpu().numpy(),
            "item_samples": item_stack.cpu().numpy(),
            **({"implicit_samples": y_stack.cpu().numpy()} if y_stack is not None else {}),
            "user_prior_mean": prior_stats[:, 0].astype(np.float32),
            "user_prior_precision": prior_stats[:, 1].astype(np.float32),
            "item_prior_mean": prior_stats[:, 2].astype(np.float32),
            "noise_precision": noise.astype(np.float32),
        })

    def _valid_pairs(self, valid: Ratings | None, device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Validation pairs known to training, as index tensors and ratings (others are skipped;
        None when none is known, and no ``valid_rmse`` is reported)."""
        if valid is None or len(valid) == 0:
            return None
        u = self.users_.indices(valid.user_ids, missing="mask")
        i = self.items_.indices(valid.item_ids, missing="mask")
        known = (u >= 0) & (i >= 0)
        if not known.any():
            return None
        return (torch.from_numpy(u[known]).to(device), torch.from_numpy(i[known]).to(device),
                torch.from_numpy(valid.rating[known].astype(np.float64)).to(device))

    # -- scoring -------------------------------------------------------------------------------
    def _scorer(self) -> _Scorer:
        if getattr(self, "_scorer_cache", None) is None:
            self._scorer_cache = _Scorer(self, resolve_device(self.device, strict=False))
        return self._scorer_cache

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return self._scorer().pairs(np.asarray(user_index), np.asarray(item_index))

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        return self._scorer().users(np.asarray(user_index))

    def _dot_parts(self) -> DotParts:
        # the posterior mean: [draws' p_u / S, mu + mean b_u] . [draws' q_i, 1] + mean b_i
        scorer = self._scorer()

        def build() -> DotParts:
            users = scorer.user_flat[:-1].cpu().numpy()
            items = scorer.item_flat[:-1].cpu().numpy()
            user_terms = (scorer.user_bias[:-1].cpu().numpy() + scorer.mu).astype(users.dtype)
            return DotParts(np.hstack([users, user_terms[:, None]]),
                            np.hstack([items, np.ones((len(items), 1), items.dtype)]),
                            scorer.item_bias[:-1].cpu().numpy(), True)

        return self._cached_parts((scorer,), build)

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        return self._scorer().fold_in(np.asarray(item_index), np.asarray(ratings, np.float64))

    def _item_vectors(self) -> np.ndarray:
        # Every stored draw's factors side by side: cosine over the concatenation averages the
        # draws' similarities without assuming their factor axes line up.
        n_items, samples, width = self.item_samples_.shape
        return self.item_samples_[:, :, : width - 1].reshape(n_items, samples * (width - 1))

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {
            "global_mean": np.array([self.global_mean_]),
            "user_samples": self.user_samples_,
            "item_samples": self.item_samples_,
            "user_prior_mean": self.user_prior_mean_,
            "user_prior_precision": self.user_prior_precision_,
            "item_prior_mean": self.item_prior_mean_,
            "noise_precision": self.noise_precision_,
        }
        if self.implicit_samples_ is not None:
            state["implicit_samples"] = self.implicit_samples_
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.global_mean_ = float(arrays["global_mean"][0])
        self.user_samples_ = arrays["user_samples"]
        self.item_samples_ = arrays["item_samples"]
        self.implicit_samples_ = arrays.get("implicit_samples")
        self.user_prior_mean_ = arrays["user_prior_mean"]
        self.user_prior_precision_ = arrays["user_prior_precision"]
        self.item_prior_mean_ = arrays["item_prior_mean"]
        self.noise_precision_ = arrays["noise_precision"]
        self._scorer_cache = None


# -- the sampler's pieces ------------------------------------------------------------------------


def _csr(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    """A scipy CSR matrix as a float32 torch CSR tensor (built from a valid scipy one, so torch's
    invariant checks are skipped; its "beta" notice is not for our users)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            device=device,
            check_invariants=False,
        )


class _Side:
    """The ratings seen from one side (rows: this side's entities, columns: the other side's).

    ``ones`` and ``values`` hold the rating indicator and the centred ratings; ``normalised`` the
    implicit-feedback matrix (row r scaled by count_r^-1/2), ``normalised_t`` its transpose; the
    scipy form of ``normalised`` feeds the one-off eigendecomposition.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int,
                 n_cols: int, device: torch.device) -> None:
        shape = (n_rows, n_cols)
        ones = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
        counts = np.bincount(rows, minlength=n_rows)
        scale = 1.0 / np.sqrt(np.maximum(counts, 1))
        normalised = sp.csr_matrix((scale[rows], (rows, cols)), shape=shape)
        self.ones = _csr(ones, device)
        self.values = _csr(sp.csr_matrix((values, (rows, cols)), shape=shape), device)
        self.normalised_sp = normalised
        self.normalised = _csr(normalised, device)
        self.normalised_t = _csr(normalised.T.tocsr(), device)


def _sample_vectors(other: torch.Tensor, side: _Side, prior_mean: torch.Tensor,
                    prior_precision: torch.Tensor, alpha: float, randn: Any) -> torch.Tensor:
    """One exact draw of every row's [factors, bias] given the other side's vectors.

    Row r's ratings are r_rc = <x_r[:k], o_c[:k]> + x_r[k] + o_c[k] + noise, linear in x_r with
    features f_c = [o_c[:k], 1] and target r_rc - o_c[k]; with prior N(prior_mean_r,
    diag 1/prior_precision) the conditional is Gaussian with precision diag(l) + alpha sum f fᵀ.
    """
    d = other.shape[1]
    k = d - 1
    features = torch.cat([other[:, :k], torch.ones_like(other[:, :1])], dim=1)
    upper, full = _triangle(d, other.device)
    # one sparse product gives every row's packed Gram (upper triangle) and sum_c f_c o_c[k]
    products = side.ones @ torch.cat([features[:, upper[0]] * features[:, upper[1]],
                                      features * other[:, k:]], dim=1)
    n = products.shape[0]
    precision = products.index_select(1, full).view(n, d, d) * alpha  # (much faster than [:, full])
    precision.diagonal(dim1=-2, dim2=-1).add_(prior_precision)
    linear = side.values @ features - products[:, -d:]
    rhs = prior_precision * prior_mean + alpha * linear
    chol = torch.linalg.cholesky(precision)
    # x = L^-T (L^-1 rhs + z): mean precision^-1 rhs, covariance (L Lᵀ)^-1 = precision^-1
    whitened = torch.linalg.solve_triangular(chol, rhs.unsqueeze(-1), upper=False)
    whitened += randn(n, d).unsqueeze(-1)
    return torch.linalg.solve_triangular(chol.mT, whitened, upper=True).squeeze(-1)


def _triangle(d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper-triangle (row, col) indices of a d x d matrix, and for each of the d * d entries the
    position of its value among them (to unpack a symmetric matrix with one gather)."""
    upper = torch.triu_indices(d, d, device=device)
    position = torch.empty(d, d, dtype=torch.long, device=device)
    position[upper[0], upper[1]] = torch.arange(upper.shape[1], device=device)
    position[upper[1], upper[0]] = torch.arange(upper.shape[1], device=device)
    return upper, position.reshape(-1)


#: Largest min(users, movies) for the implicit terms: their one-off eigendecomposition is dense in
#: that size (20,000 -> 3.2 GB of float64 and minutes of work); beyond it, use implicit="none".
MAX_IMPLICIT_SIDE = 20_000


class _Spectral:
    """Exact draws of the implicit vectors: rows of ``theta = S X + noise`` (noise precision a per
    dimension), X_j ~ N(m, diag 1/c), so X | theta has precision a SᵀS + c I per dimension.

    SᵀS = W diag(e) Wᵀ (W: orthonormal columns spanning SᵀS's range), hence
    (a SᵀS + c I)^p = c^p I + W diag((a e + c)^p - c^p) Wᵀ, for the mean (p = -1) and the noise
    (p = -1/2). W comes from the eigendecomposition of the smaller of SᵀS and SSᵀ; in the second
    case W = Sᵀ U E^-1/2 stays factored (sparse S times a small dense matrix).
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device) -> None:
        n_rows, n_cols = matrix.shape
        self.sparse: tuple[torch.Tensor, torch.Tensor] | None = None
        if n_cols <= n_rows:
            values, vectors = torch.linalg.eigh(torch.from_numpy((matrix.T @ matrix).toarray()))
            values = values.clamp_min(0.0)
        else:
            values, vectors = torch.linalg.eigh(torch.from_numpy((matrix @ matrix.T).toarray()))
            keep = values > values.max().clamp_min(1e-300) * 1e-10
            values, vectors = values[keep], vectors[:, keep] / values[keep].sqrt()
            self.sparse = (_csr(matrix, device), _csr(matrix.T.tocsr(), device))
        self.values = values.to(device, _DTYPE)
        self.vectors = vectors.to(device, _DTYPE).contiguous()
        self.vectors_t = self.vectors.mT.contiguous()

    def sample(self, projected: torch.Tensor, a: torch.Tensor, c: torch.Tensor, m: torch.Tensor,
               randn: Any) -> torch.Tensor:
        """A draw of X given ``projected`` = Sᵀ(theta), noise precision ``a``, prior (m, c)."""
        rhs = a * projected + c * m
        noise = randn(*projected.shape)
        # mean (power -1) and noise (power -1/2) share the products with W
        both = torch.cat([rhs, noise], dim=1)
        inner = self.vectors_t @ (both if self.sparse is None else self.sparse[0] @ both)
        lifted = self.values[:, None] * a + c
        d = rhs.shape[1]
        inner[:, :d] *= 1.0 / lifted - 1.0 / c
        inner[:, d:] *= lifted.rsqrt() - c.rsqrt()
        outer = self.vectors @ inner
        if self.sparse is not None:
            outer = self.sparse[1] @ outer
        return rhs / c + noise * c.rsqrt() + outer[:, :d] + outer[:, d:]


def _normal_gamma(theta: torch.Tensor, mean: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """libFM's hyperparameter step for one group: precision | mean, then mean | precision.

    theta (n, d) are the group's current draws; prior Gamma(1, 1) on the precision and
    N(0, 1 / (precision)) on the mean (gamma_0 = 1).
    """
    n = theta.shape[0]
    centred = torch.sum((theta - torch.as_tensor(mean, dtype=theta.dtype, device=theta.device)) ** 2,
                        dim=0).cpu().numpy()
    precision = rng.gamma(1.0 + (n + 1) / 2.0, 1.0 / (1.0 + (centred + mean**2) / 2.0))
    total = theta.sum(dim=0).cpu().numpy()
    new_mean = total / (n + 1) + rng.standard_normal(len(mean)) / np.sqrt((n + 1) * precision)
    return new_mean, precision


def _pair_scores(P: torch.Tensor, Q: torch.Tensor, rows_u: torch.Tensor, rows_i: torch.Tensor,
                 k: int) -> torch.Tensor:
    """<p_u, q_i> + b_u + b_i for pairs of indices (centred ratings)."""
    p, q = P.index_select(0, rows_u), Q.index_select(0, rows_i)
    return (torch.sum(p[:, :k] * q[:, :k], dim=1) + p[:, k] + q[:, k]).double()


def _rmse(predicted: torch.Tensor, actual: torch.Tensor, low: float, high: float) -> float:
    return float(torch.sqrt(torch.mean((predicted.clamp(low, high) - actual) ** 2)))


class _Scorer:
    """Posterior-mean scores from the stored draws, on the model's device.

    Row ``n`` of the user (movie) matrices is the unknown user (movie): the prior mean of each draw.
    ``user_flat`` (users + 1, S k) is the concatenated factors over S, ``item_flat`` (movies + 1,
    S k) likewise, so ``user_flat @ item_flatᵀ`` + mean biases is the posterior-mean rating - mu.
    """

    def __init__(self, model: BayesianMF, device: torch.device) -> None:
        self.device = device
        self.mu = model.global_mean_
        users = np.concatenate([model.user_samples_, model.user_prior_mean_[None]], axis=0)
        items = np.concatenate([model.item_samples_, model.item_prior_mean_[None]], axis=0)
        n_samples, d = users.shape[1], users.shape[2]
        k = d - 1
        self.k, self.n_samples = k, n_samples
        self.user_flat = torch.from_numpy(
            np.ascontiguousarray(users[:, :, :k]).reshape(len(users), n_samples * k) / n_samples
        ).to(device)
        self.item_flat = torch.from_numpy(
            np.ascontiguousarray(items[:, :, :k]).reshape(len(items), n_samples * k)
        ).to(device)
        self.user_bias = torch.from_numpy(users[:, :, k].mean(axis=1, dtype=np.float64)).to(device)
        self.item_bias = torch.from_numpy(items[:, :, k].mean(axis=1, dtype=np.float64)).to(device)
        self.model = model

    def pairs(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        n_users, n_items = len(self.user_flat) - 1, len(self.item_flat) - 1
        u = torch.from_numpy(np.where(user_index >= 0, user_index, n_users).astype(np.int64))
        i = torch.from_numpy(np.where(item_index >= 0, item_index, n_items).astype(np.int64))
        u, i = u.to(self.device), i.to(self.device)
        out = torch.empty(len(u), dtype=torch.float64, device=self.device)
        for start in range(0, len(u), _PAIR_CHUNK):
            uu, ii = u[start : start + _PAIR_CHUNK], i[start : start + _PAIR_CHUNK]
            dot = torch.sum(self.user_flat[uu] * self.item_flat[ii], dim=1, dtype=torch.float64)
            out[start : start + _PAIR_CHUNK] = dot + self.user_bias[uu] + self.item_bias[ii]
        return (out + self.mu).cpu().numpy()

    def users(self, user_index: np.ndarray) -> np.ndarray:
        u = torch.from_numpy(np.asarray(user_index, dtype=np.int64)).to(self.device)
        scores = (self.user_flat[u] @ self.item_flat[:-1].mT).double()
        scores += self.user_bias[u, None] + self.item_bias[None, :-1]
        return (scores + self.mu).cpu().numpy()

    def fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        model, k = self.model, self.k
        f64 = torch.float64
        mean = torch.tensor(model.user_prior_mean_, dtype=f64, device=self.device)  # (S, d)
        if len(item_index):
            precision = torch.tensor(model.user_prior_precision_, dtype=f64, device=self.device)
            alpha = torch.tensor(model.noise_precision_, dtype=f64, device=self.device)
            rated = torch.from_numpy(model.item_samples_[item_index]).to(self.device, f64)
            rated = rated.transpose(0, 1)  # (S, m, d)
            features = torch.cat([rated[..., :k], torch.ones_like(rated[..., :1])], dim=-1)
            target = torch.from_numpy(ratings - self.mu).to(self.device, f64) - rated[..., k]
            prior = mean
            if model.implicit_samples_ is not None:
                implicit = torch.from_numpy(model.implicit_samples_[item_index]).to(self.device, f64)
                prior = prior + implicit.sum(dim=0) / math.sqrt(len(item_index))
            gram = features.mT @ features  # (S, d, d)
            lhs = alpha[:, None, None] * gram + torch.diag_embed(precision)
            rhs = precision * prior + alpha[:, None] * (features.mT @ target.unsqueeze(-1))[..., 0]
            mean = torch.linalg.solve(lhs, rhs)
        user = (mean[:, :k].reshape(-1) / self.n_samples).to(self.item_flat.dtype)
        scores = (self.item_flat[:-1] @ user).double() + self.item_bias[:-1]
        return (scores + mean[:, k].mean() + self.mu).cpu().numpy()
