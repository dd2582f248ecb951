"""Learned re-weighting of the blend: member scores, liked-only member scores, item and time
features, fitted listwise.

The score of movie i for user u is the `Blend`'s score plus a learned linear correction,

    s_ui = sum_m w_m z_m(u, i) + sum_j theta_j (x_j(u, i) - mu_j) / sd_j,

where w_m are the blend's fixed weights, z_m the members' per-user z-scores, and the features x_j
(j = 0..F-1) are, in this order:

- z_m(u, i) for every member m again (so the correction can re-weight the members);
- z_m^t(u, i) for every level t of ``liked_ratings`` (default 4 and 5) and every member m: the
  member fitted again with ``min_rating`` t, on the ratings >= t alone (what users liked, not only
  what they watched), z-scored per user like the members; 0 for a user with no rating >= t. A level
  at or below ``min_rating`` (it would repeat the members) or above every training rating (nothing
  to learn from) is left out;
- ``popularity``: log(1 + n_i), n_i the movie's training ratings;
- ``mean_rating``: the movie's mean training rating, shrunk towards the global mean by 5 ratings;
- ``time_share``: how popular the movie was around u's rating time: log(1e-4 + sum_b h_u(b) S_i(b)),
  with h_u the share of u's training ratings in time bin b and S_i(b) the movie's share of all
  ratings in the bins around b (Gaussian kernel of ``time_width`` days);
- ``time_trend``: time_share minus log(1e-4 + the movie's share of all ratings): popular *then*
  rather than popular overall;
- ``late``: (first training rating of the movie - last training rating of u) in days, clipped to
  [-30, 30]: a movie that only appeared after the user stopped rating cannot be among their ratings.

mu_j, sd_j standardise the features over the training lists; theta (F,) is learned by a listwise
softmax loss (each list: one user's ``candidates`` best movies by the blend; the positives: those the
user actually rated among them), summed over the positives, plus ``reg * |theta|^2``, minimised by
L-BFGS from theta = 0 (the plain blend). The penalty is a prior, not a rate: it does not grow with
the data, so a handful of lists (a tiny dataset) leaves the blend nearly as it is, while ml-100k's
lists (about 12,000 positives) move it. The lists come from ``carve_outs`` nested carve-outs of the
training data (`user_ratio_split(train, 1 - holdout, seed)`): the members are fitted on the
carve-out's train part, features are computed from it alone, and the held-out ratings are the
labels, so the correction learns what the blend misses on ratings it did not see. The members are
then fitted on all the training data and theta applies to their scores. Scoring all movies with the
linear correction ranks like re-ranking only the top ``candidates`` (identical validation NDCG within
0.0001), so every movie is scored and no cut-off is needed at inference.

Why. On five validation carve-outs of ml100k-strat75's training part (seeds 0-4, never the test
part; benchmarks/selection/blend_ltr.py) the blend scores NDCG@10 0.2520 (0.2473 0.2515 0.2555 0.2536 0.2522);
this model without liked levels 0.2537 (0.2481 0.2523 0.2578 0.2543 0.2561): every carve-out up, by
0.0007-0.0039; with them (the default) 0.2564 (0.2486 0.2540 0.2606 0.2584 0.2603): every carve-out
up again, by 0.0005-0.0042. In the exploratory runs (one linear ranker per feature group) the member
scores alone gave 0.2519, with the item features 0.2527-0.2533, with the time features
0.2526-0.2532, with both 0.2532-0.2541; genre affinity and release year (from the catalog) and
member ranks added nothing (0.2505-0.2533), and neither did item-kNN or EASE without sessions as
further members (0.2533, 0.2528). Tree rankers (LightGBM lambdarank or pointwise) on the same
features overfit the lists (0.22-0.246), and a pointwise logistic regression learns user-level
confounders (heavy users have more positives and flatter scores: 0.196 for member scores alone), so
the ranker is a listwise linear model. Time-local popularity as a fourth blend member did not help
(0.2497-0.2517 against 0.2520; global popularity 0.2444-0.2517); a fixed penalty for movies that
appeared after the user's last rating gave 0.2527.

Liked levels (docs/experiments.md: every variant on the same carve-outs and nested fits):
the binary members see who watched what, not how it was liked. One level: >= 3 0.2552, >= 4
0.2554, >= 5 0.2548; 4 and 5 0.2564; 3, 4 and 5 0.2564 (no further gain for a further blend). With
4 and 5, ``reg`` 50 / 200 / 400 scored 0.2559 / 0.2561 / 0.2550, ``carve_outs`` 2 / 5 0.2559 /
0.2558. The refit is what counts: the fitted members scored from the liked ratings alone (no new
item weights) gave 0.2547 (level 4, EASE alone: 0.2540 re-scored, 0.2552 refitted), and members
refitted on each user's ratings at or above their own mean 0.2545. What did not help (without
levels, against 0.2537): every feature, or the members' or item features, times the user's
activity (standardised log(1 + n_u)) 0.2530-0.2541; the movie's mean rating times the user's mean
rating or its spread 0.2534-0.2538; lists weighted per user (1 / positives, 1 / sqrt) 0.2538,
0.2540; ``carve_outs`` 4 / 5 0.2538. The price of the levels: two more blends per carve-out, so a
fit takes about 1.8 times as long on ml100k-strat75 (7.4 -> 13.6 s) and 2.9 times on
ml-latest-small (122 -> 348 s: EASE's 9.7k x 9.7k inverse per blend), and a fold-in about twice
(14 ms median, 16 ms p99 for 20 ratings on ml-latest-small).

Time. Ratings carry Unix timestamps (`Ratings.timestamp`); time is cut into bins of one day (longer
when the data spans more than 256 days, so S stays (256, n_items)). Without timestamps (a user's own
ratings file) every time feature is 0, so it gets no weight (a constant feature's standardised value
is 0), and the model is the blend plus the item features. A new user (fold-in) has no rating
times: they are taken to rate "now", at the end of training, the time a recommendation is asked for;
their ``late`` feature is measured from then too (nothing appeared after it).

Scale. A fit builds twelve blends (the blend and two liked ones per carve-out and for the final
fit), and EASE and GF-CF each learn a dense items x items matrix: uncapped, ml-latest-small's 9k
training movies cost 5.6 GB peak RSS and 400 CPU seconds (fit and evaluation, two threads).
``max_items`` (default 3,000) caps those members: they learn on the most-rated movies and score the
rest below them by popularity (`movierec.models.ranking.item_item`). On mlsmall-strat80
(benchmarks/ltr_scale.py, one thread) NDCG@10 is 0.3883 against 0.3846 uncapped (4,000: 0.3886, 45
CPU seconds, 1.56 GB), the fit takes 27-28 CPU seconds and the peak RSS of fit and evaluation is 1.2
GB (1.06 GB after the fit); the 3,000 most-rated of its 8,987 training movies hold 86% of the
training ratings and 87% of the held-out ones. Lists, features and scores are built a block of users
at a time (about 2^21 scores per array, `_BLOCK_VALUES`), each feature cut to the candidates as soon
as it exists, so their memory does not grow with the number of users. ml-100k (1,682 movies) is
below the cap: its figures above are unchanged.

Fallback for pairs unknown to training: 0. Similar movies and explanations are the blend's.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

from movierec.data.dataset import Ratings
from movierec.data.split import user_ratio_split
from movierec.errors import ConfigError, DataError
from movierec.models.combine.blend import Blend
from movierec.models.combine.rows import predict_by_rows, zscore_rows
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.core.topk import top_k
from movierec.models.ranking.item_item import DenseItemItem
from movierec.models.registry import get_model_class

__all__ = ["LearnedBlend", "TimeItemFeatures", "fit_listwise"]

_DAY = 86400.0
_MAX_BINS = 256
_EPS = 1e-4  # floor inside the time logs: a movie nobody rated in a window is rare, not impossible
_LATE_DAYS = 30.0
_PRIOR_RATINGS = 5.0  # shrinkage of a movie's mean rating towards the global mean
_USER_BLOCK = 512  # users per step when predicting pairs
# Score values per (users x movies) array while building lists or scoring: a block of users holds
# about 2^21 values (16 MB) per array, and some twenty arrays are alive at once, so the memory of
# features and scores stays near 350 MB whatever the number of users or movies.
_BLOCK_VALUES = 1 << 21


def _block_users(n_items: int) -> int:
    """Users per block over ``n_items`` movies (see `_BLOCK_VALUES`)."""
    return max(1, _BLOCK_VALUES // max(n_items, 1))
EXTRA_FEATURES = ("popularity", "mean_rating", "time_share", "time_trend", "late")


class TimeItemFeatures:
    """The item and time features of one training set (see the module docstring), in index space.

    Attributes (all float64 except ``hist``):
        popularity, mean_rating, log_share, first_day: (n_items,); ``first_day`` in days since the
            first training rating (+inf for a movie without ratings).
        share: (n_bins, n_items) kernel-smoothed share S_i(b).
        hist: (n_users, n_bins) CSR, each row the user's ratings per bin over their count.
        last_day: (n_users,) the user's last rating, days since the first training rating.
        now: (2,) [bin, day] of the end of training: where a new user is placed.
        timed: (1,) 1.0 if the ratings had timestamps; without them the time features are 0.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.popularity = arrays["popularity"]
        self.mean_rating = arrays["mean_rating"]
        self.log_share = arrays["log_share"]
        self.first_day = arrays["first_day"]
        self.share = arrays["share"]
        self.last_day = arrays["last_day"]
        self.now = arrays["now"]
        self.timed = arrays["timed"]
        self.hist = sp.csr_matrix((arrays["hist_data"], arrays["hist_indices"], arrays["hist_indptr"]),
                                  shape=(len(self.last_day), self.share.shape[0]))

    @classmethod
    def from_ratings(cls, train: Ratings, time_width: float) -> TimeItemFeatures:
        n_users, n_items = train.n_users, train.n_items
        users, items = train.user_index.astype(np.int64), train.item_index.astype(np.int64)
        counts = np.bincount(items, minlength=n_items).astype(np.float64)
        total = np.bincount(items, train.rating.astype(np.float64), n_items)
        mean = float(train.rating.mean()) if len(train) else 0.0
        arrays = {
            "popularity": np.log1p(counts),
            "mean_rating": (total + _PRIOR_RATINGS * mean) / (counts + _PRIOR_RATINGS),
            "log_share": np.log(_EPS + counts / max(counts.sum(), 1.0)),
        }
        arrays["timed"] = np.array([float(train.timestamp is not None and len(train) > 0)])
        if not arrays["timed"][0]:
            days = np.zeros(len(train))
            bins = np.zeros(len(train), dtype=np.int64)
            n_bins, bin_days = 1, 1.0
        else:
            seconds = train.timestamp.astype(np.float64) - float(train.timestamp.min())
            days = seconds / _DAY
            bin_days = max(1.0, math.ceil(days.max() + 1e-9) / _MAX_BINS)
            bins = np.minimum((days // bin_days).astype(np.int64), _MAX_BINS - 1)
            n_bins = int(bins.max()) + 1
        per_bin = sp.csr_matrix((np.ones(len(bins)), (bins, items)), shape=(n_bins, n_items)).toarray()
        shares = per_bin / np.maximum(per_bin.sum(axis=1, keepdims=True), 1.0)
        offsets = np.arange(n_bins, dtype=np.float64) * bin_days
        kernel = np.exp(-0.5 * ((offsets[:, None] - offsets[None, :]) / time_width) ** 2)
        arrays["share"] = kernel @ shares
        hist = sp.csr_matrix((np.ones(len(bins)), (users, bins)), shape=(n_users, n_bins))
        hist = sp.diags(1.0 / np.maximum(np.asarray(hist.sum(axis=1)).ravel(), 1.0)) @ hist
        hist = sp.csr_matrix(hist)
        hist.sort_indices()
        arrays.update(hist_data=hist.data.astype(np.float64), hist_indices=hist.indices.astype(np.int64),
                      hist_indptr=hist.indptr.astype(np.int64))
        first = np.full(n_items, np.inf)
        np.minimum.at(first, items, days)
        last = np.full(n_users, -np.inf)
        np.maximum.at(last, users, days)
        arrays.update(first_day=first, last_day=last,
                      now=np.array([n_bins - 1, days.max() if len(days) else 0.0]))
        return cls(arrays)

    def state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity, "mean_rating": self.mean_rating,
                "log_share": self.log_share, "first_day": self.first_day, "share": self.share,
                "last_day": self.last_day, "now": self.now, "timed": self.timed, "hist_data": self.hist.data,
                "hist_indices": self.hist.indices.astype(np.int64),
                "hist_indptr": self.hist.indptr.astype(np.int64)}

    def dense(self, user_index: np.ndarray | None) -> list[np.ndarray]:
        """The five extra features for known users (``user_index``) or one new user (None): a list
        of (n, n_items) float64 blocks in `EXTRA_FEATURES` order."""
        if user_index is None:
            hist = np.zeros((1, self.share.shape[0]))
            hist[0, int(self.now[0])] = 1.0
            last = np.array([self.now[1]])
        else:
            hist = self.hist[user_index].toarray()
            last = self.last_day[user_index]
        n, n_items = len(hist), len(self.popularity)
        item_parts = [np.broadcast_to(self.popularity, (n, n_items)),
                      np.broadcast_to(self.mean_rating, (n, n_items))]
        if not self.timed[0]:
            return [*item_parts, *([np.zeros((n, n_items))] * 3)]
        time_share = np.log(_EPS + hist @ self.share)
        late = self.first_day[None, :] - last[:, None]  # +inf for a movie nobody rated: late
        return [*item_parts, time_share, time_share - self.log_share[None, :],
                np.clip(late, -_LATE_DAYS, _LATE_DAYS)]


def fit_listwise(features: np.ndarray, labels: np.ndarray, offset: np.ndarray, reg: float) -> np.ndarray:
    """theta minimising the listwise softmax loss of ``offset + features @ theta``.

    Args:
        features: (n_lists, length, F) float64, standardised.
        labels: (n_lists, length) 1.0 for a positive, else 0.0; lists without a positive are ignored.
        offset: (n_lists, length) fixed part of the score (the blend).
        reg: L2 weight on theta, against the summed (not averaged) log-likelihood of the positives.

    Returns theta (F,) float64; zeros when there is no positive at all. L-BFGS in float64 on the CPU:
    the loss is convex, so the result is deterministic and independent of any random state.
    """
    keep = labels.sum(axis=1) > 0
    theta = torch.zeros(features.shape[2], dtype=torch.float64, requires_grad=True)
    if not keep.any():
        return theta.detach().numpy().copy()
    x = torch.from_numpy(np.ascontiguousarray(features[keep]))
    y = torch.from_numpy(np.ascontiguousarray(labels[keep]))
    base = torch.from_numpy(np.ascontiguousarray(offset[keep]))
    optimizer = torch.optim.LBFGS([theta], max_iter=300, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        log_p = torch.log_softmax(base + x @ theta, dim=1)
        loss = -(log_p * y).sum() + reg * (theta * theta).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return theta.detach().numpy().copy()


def _highest_rating(train: Ratings) -> float:
    """The highest rating in ``train`` (-inf when empty): a liked level above it has nothing to learn from."""
    return float(train.rating.max()) if len(train) else -math.inf


class LearnedBlend(Recommender):
    """The blend plus a listwise-learned linear correction from member, item and time features.

    Args:
        members, weights, min_rating, weighting, random_state: the `Blend`'s (its default members
            and weights); ``random_state`` also seeds the carve-outs.
        candidates: length of each training list: the user's best movies by the blend (int >= 1).
        carve_outs: nested carve-outs of the training data the lists come from (int >= 1).
        holdout: share of each user's training ratings a carve-out holds out as labels (0 < h < 1).
        reg: L2 penalty on the correction's weights (>= 0; large -> the plain blend).
        time_width: width (standard deviation, days) of the window for time popularity (> 0).
        liked_ratings: comma-separated rating levels (distinct numbers >= 0; "" for none): per
            level t the members are fitted again on the ratings >= t, and their z-scores are
            features (see the module docstring for the levels that are left out).
        max_items: passed to every member that learns a dense items x items matrix (EASE, GF-CF)
            unless ``members`` sets it for that member: such a member learns on the ``max_items``
            most-rated movies and scores the rest below them by popularity
            (`movierec.models.ranking.item_item`); see "Scale" in the module docstring.

    Fitted attributes: ``blend_`` (the `Blend` fitted on all the training data), ``theta_`` (F,),
    ``mu_`` and ``sd_`` (F,) feature standardisation, ``features_`` (`TimeItemFeatures`),
    ``levels_`` (n_levels,) float64 the liked levels in use, ascending, and ``liked_`` (one `Blend`
    per level, fitted with ``min_rating`` at the level).

    Defaults chosen on five validation carve-outs of ml100k-strat75's training part (seeds 0-4; see the
    module docstring and benchmarks/selection/blend_ltr.py): NDCG@10 0.2564 at the defaults. Before the
    liked levels (0.2537 there): ``reg`` 12 / 360 / 1200 scored 0.2536 / 0.2535 / 0.2536 (a flat plateau;
    100 lies inside it), and at ``reg`` 12: ``carve_outs`` 5 0.2536, ``candidates`` 100 0.2532 (20 in the
    exploratory runs: 0.2528-0.2531), ``holdout`` 0.25 0.2539 (within noise; 0.2 is the share the outer
    carve-outs hold out), ``time_width`` 7 days 0.2536. Fit on ml100k-strat75's training part: about 14 s
    on one thread (twelve blends: the blend and two liked ones for each of three carve-outs and the final
    fit).
    """

    name = "ltr"
    predicts_ratings = False

    def __init__(
        self,
        members: str = "ease,ials:session_weight=0.3,gf-cf:ideal_weight=1.0:session_weight=0.15",
        weights: str = "0.4,0.4,0.2",
        candidates: int = 50,
        carve_outs: int = 3,
        holdout: float = 0.2,
        reg: float = 100.0,
        time_width: float = 14.0,
        liked_ratings: str = "4,5",
        min_rating: float = 0.0,
        weighting: str = "binary",
        random_state: int = 0,
        max_items: int = 3_000,
    ) -> None:
        self.members = members
        self.weights = weights
        self.candidates = candidates
        self.carve_outs = carve_outs
        self.holdout = holdout
        self.reg = reg
        self.time_width = time_width
        self.liked_ratings = liked_ratings
        self.min_rating = min_rating
        self.weighting = weighting
        self.random_state = random_state
        self.max_items = max_items

    def _member_spec(self) -> str:
        """``members`` with ``max_items`` passed to every dense item-item member (EASE, GF-CF) that
        does not set its own."""
        parts = []
        for part in str(self.members).split(","):
            name, *pairs = [piece.strip() for piece in part.split(":")]
            try:
                dense = issubclass(get_model_class(name), DenseItemItem)
            except ConfigError:  # an unknown name: the blend's own check says so
                dense = False
            if dense and not any(pair.split("=")[0].strip() == "max_items" for pair in pairs):
                part = f"{part}:max_items={self.max_items}"
            parts.append(part)
        return ",".join(parts)

    def _new_blend(self, min_rating: float | None = None) -> Blend:
        """The blend of ``members``; with ``min_rating``, the same members on the ratings >= it."""
        return Blend(members=self._member_spec(), weights=self.weights,
                     min_rating=self.min_rating if min_rating is None else min_rating,
                     weighting=self.weighting, random_state=self.random_state)

    def _thresholds(self) -> list[float]:
        """``liked_ratings`` as numbers (ConfigError unless distinct finite numbers >= 0)."""
        text = self.liked_ratings
        problem = ConfigError(f"liked_ratings must be comma-separated distinct numbers >= 0, got {text!r}")
        if not isinstance(text, str):
            raise problem
        try:
            values = [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise problem from None
        if not all(math.isfinite(v) and v >= 0 for v in values) or len(set(values)) != len(values):
            raise problem
        return values

    def _levels(self, train: Ratings) -> np.ndarray:
        """The liked levels in use, ascending (float64): the thresholds above ``min_rating`` (else
        their members would be the blend's own) that some training rating reaches (else they have
        nothing to learn from)."""
        reached = _highest_rating(train)
        return np.array(sorted(t for t in self._thresholds() if self.min_rating < t <= reached),
                        dtype=np.float64)

    def _fit_blends(self, train: Ratings, levels: np.ndarray, callback: Callback | None
                    ) -> tuple[Blend, list[Blend | None]]:
        """The blend and one liked blend per level (None where no rating in ``train`` reaches it),
        all fitted on ``train``."""
        blend = self._new_blend().fit(train, callback=callback)
        reached = _highest_rating(train)
        return blend, [self._new_blend(float(t)).fit(train, callback=callback) if t <= reached else None
                       for t in levels]

    def _check_params(self) -> None:
        self._new_blend()._check_params()  # members, weights, min_rating, weighting, random_state
        check_int("candidates", self.candidates)
        check_int("carve_outs", self.carve_outs)
        check_number("holdout", self.holdout, strict=True)
        if self.holdout >= 1:
            raise ConfigError(f"holdout must be a number in (0, 1), got {self.holdout!r}")
        check_number("reg", self.reg)
        check_number("time_width", self.time_width, strict=True)
        check_int("max_items", self.max_items)
        self._thresholds()

    # -- features ------------------------------------------------------------------------------
    @staticmethod
    def _member_z(blend: Blend, scores: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """(blend score, per-member z-scores) from the members' raw score blocks."""
        z = [zscore_rows(part) for part in scores]
        return sum(w * part for w, part in zip(blend.weights_, z, strict=True)), z

    @staticmethod
    def _liked_z(scores: list[np.ndarray], has_liked: np.ndarray) -> list[np.ndarray]:
        """A liked blend's per-member z-scores, (n, n_items) each, from its members' raw score blocks;
        0 in the rows of users without a rating at its level (``has_liked`` (n,) bool): they liked
        nothing there, so there is no signal, whatever a member answers for an empty profile."""
        return [zscore_rows(part) * has_liked[:, None] for part in scores]

    @staticmethod
    def _has_liked(seen: sp.csr_matrix, level: float) -> np.ndarray:
        """(n_users,) bool: whether each row of ``seen`` (ratings CSR) holds a rating >= ``level``."""
        owner = np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr))
        return np.bincount(owner, seen.data >= level, seen.shape[0]) > 0

    def _lists(self, train: Ratings, holdout: Ratings, levels: np.ndarray, callback: Callback | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training lists from one carve-out: features (n_users, L, F), labels and blend offsets
        (n_users, L), with fresh blends fitted on ``train`` (the liked ones at ``levels`` too) and
        labels from ``holdout``."""
        blend, liked = self._fit_blends(train, levels, callback)
        features = TimeItemFeatures.from_ratings(train, self.time_width)
        length = min(int(self.candidates), train.n_items)
        users = train.users.indices(holdout.user_ids, missing="mask")
        items = train.items.indices(holdout.item_ids, missing="mask")
        known = (users >= 0) & (items >= 0)  # held-out movies the carve-out never saw cannot be listed
        relevant = sp.csr_matrix((np.ones(int(known.sum()), dtype=bool), (users[known], items[known])),
                                 shape=(train.n_users, train.n_items))
        rows, labels, offsets = [], [], []
        # Candidates and features a block of users at a time, each feature cut to the candidates as
        # soon as it exists: memory is a few (block, n_items) arrays, whatever the number of users.
        step = _block_users(train.n_items)
        for start in range(0, train.n_users, step):
            block = np.arange(start, min(start + step, train.n_users))
            offset, z = self._member_z(blend, [m._score_users(block) for m in blend.members_])
            top, _ = top_k(offset, length, exclude=blend.seen_[block])
            padded = top < 0  # a user who rated nearly every movie has a shorter list
            top = np.where(padded, 0, top)
            columns = [np.take_along_axis(p, top, axis=1) for p in z]
            del z
            for level, liked_blend in zip(levels, liked, strict=True):
                if liked_blend is None:  # no rating at this level in this carve-out: the features are 0
                    columns += [np.zeros(top.shape) for _ in blend.members_]
                    continue
                has_liked = self._has_liked(blend.seen_[block], level)
                for member in liked_blend.members_:
                    part = self._liked_z([member._score_users(block)], has_liked)[0]
                    columns.append(np.take_along_axis(part, top, axis=1))
            columns += [np.take_along_axis(p, top, axis=1) for p in features.dense(block)]
            rows.append(np.stack(columns, axis=2))
            labels.append(np.take_along_axis(relevant[block].toarray(), top, axis=1) & ~padded)
            # padding gets no probability: a finite stand-in for -inf keeps 0 * log p at 0
            offsets.append(np.where(padded, -1e30, np.take_along_axis(offset, top, axis=1)))
        return np.concatenate(rows), np.concatenate(labels).astype(np.float64), np.concatenate(offsets)

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        levels = self._levels(train)
        seeds = np.random.default_rng(self.random_state).integers(0, 2**31 - 1, size=self.carve_outs)
        lists = []
        for seed in seeds:
            try:
                part = user_ratio_split(train, 1.0 - self.holdout, int(seed))
            except DataError:  # too few ratings per user to hold any out: no labels to learn from
                continue
            lists.append(self._lists(part.train, part.test, levels, callback))
        self.blend_, self.liked_ = self._fit_blends(train, levels, callback)
        self.levels_ = levels
        self.features_ = TimeItemFeatures.from_ratings(train, self.time_width)
        n_members = len(self.blend_.members_)
        n_features = n_members * (1 + len(levels)) + len(EXTRA_FEATURES)
        if lists:
            x = np.concatenate([f for f, _, _ in lists])
            flat = x.reshape(-1, n_features)
            mu, sd = flat.mean(axis=0), flat.std(axis=0)
            sd = np.where(sd > 1e-12, sd, np.inf)  # a constant feature (no timestamps) weighs nothing
            self.theta_ = fit_listwise((x - mu) / sd, np.concatenate([y for _, y, _ in lists]),
                                       np.concatenate([o for _, _, o in lists]), float(self.reg))
        else:
            mu, sd = np.zeros(n_features), np.full(n_features, np.inf)
            self.theta_ = np.zeros(n_features)
        self.mu_, self.sd_ = mu, sd

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """The blend's members fitted on the carve-outs and again on everything (two fitted sets
        alive at once), plus the candidates' feature rows (about 32 float64 features each)."""
        members = self._new_blend().estimate_fit_bytes(n_users, n_items, n_ratings)
        return int(2 * members + 8 * 32 * n_users * int(self.candidates) * int(self.carve_outs))

    # -- scoring -------------------------------------------------------------------------------
    def _combine(self, scores: list[np.ndarray], liked: list[list], has_liked: list[np.ndarray],
                 user_index: np.ndarray | None) -> np.ndarray:
        """Scores (n, n_items) from the members' raw score blocks, each liked blend's (one list per
        level, each entry a score block or a function returning one, called when its turn comes so
        that only one liked block is alive at a time) and whether each user has a rating at each
        level ((n,) bool per level)."""
        offset, z = self._member_z(self.blend_, scores)
        total = np.array(offset, dtype=np.float64)
        del offset
        coefficients = iter(zip(self.theta_, self.mu_, self.sd_, strict=True))

        def add(part: np.ndarray) -> None:
            theta, mu, sd = next(coefficients)
            if theta and np.isfinite(sd):
                np.add(total, (theta / sd) * (part - mu), out=total)

        for part in z:
            add(part)
        del z
        for level_scores, level_has in zip(liked, has_liked, strict=True):
            for score in level_scores:
                add(self._liked_z([score() if callable(score) else score], level_has)[0])
        for part in self.features_.dense(user_index):
            add(part)
        return total

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        n_items = len(self.items_)
        step = _block_users(n_items)
        if len(user_index) > step:  # bounded memory for a large block of users: one sub-block at a time
            out = np.empty((len(user_index), n_items))
            for start in range(0, len(user_index), step):
                out[start : start + step] = self._score_users(user_index[start : start + step])
            return out
        seen = self.seen_[user_index]

        def later(member: Recommender):
            return lambda: member._score_users(user_index)

        return self._combine([m._score_users(user_index) for m in self.blend_.members_],
                             [[later(m) for m in blend.members_] for blend in self.liked_],
                             [self._has_liked(seen, level) for level in self.levels_], user_index)

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return predict_by_rows(self, user_index, item_index, _USER_BLOCK)  # z-scores need whole rows

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        item_index = np.asarray(item_index, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        has_liked = [np.array([bool((ratings >= level).any())]) for level in self.levels_]
        empty = np.zeros((1, len(self.items_)))  # no rating at a level: its features are 0, no fold-in
        liked = [[m._fold_in(item_index, ratings)[None, :] if has[0] else empty for m in blend.members_]
                 for blend, has in zip(self.liked_, has_liked, strict=True)]
        return self._combine([m._fold_in(item_index, ratings)[None, :] for m in self.blend_.members_],
                             liked, has_liked, None)[0]

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        return self.blend_._item_similarity(item_index)

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        return self.blend_._contributions(item_index, ratings, target)

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {f"blend.{k}": v for k, v in self.blend_._state().items()}
        for j, blend in enumerate(self.liked_):
            state.update({f"liked{j}.{k}": v for k, v in blend._state().items()})
        state.update({f"features.{k}": v for k, v in self.features_.state().items()})
        state.update(theta=self.theta_, mu=self.mu_, sd=self.sd_, levels=self.levels_)
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        # models saved before the liked levels have no "levels": they have none
        self.levels_ = arrays.get("levels", np.zeros(0))
        self.blend_ = self._restore_blend(arrays, "blend.", None)
        self.liked_ = [self._restore_blend(arrays, f"liked{j}.", float(level))
                       for j, level in enumerate(self.levels_)]
        self.features_ = TimeItemFeatures({k[len("features."):]: v for k, v in arrays.items()
                                           if k.startswith("features.")})
        self.theta_, self.mu_, self.sd_ = arrays["theta"], arrays["mu"], arrays["sd"]

    def _restore_blend(self, arrays: dict[str, np.ndarray], prefix: str, min_rating: float | None) -> Blend:
        blend = self._new_blend(min_rating)
        blend.users_, blend.items_, blend.scale_, blend.seen_ = (self.users_, self.items_, self.scale_,
                                                                 self.seen_)
        blend.catalog_ = None
        blend._set_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        return blend
