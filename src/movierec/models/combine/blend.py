"""Blend: a weighted sum of several ranking models' per-user z-scored scores.

Each member (a registered model that learns from ratings alone, fitted with its default
hyperparameters, or those ``members`` lists for it, plus the blend's ``min_rating`` / ``weighting`` /
``random_state`` where it takes them) scores every movie for a user; the blend's score is

    s_ui = sum_m w_m * z_m(u, i),

where z_m is member m's score row z-scored per user (`movierec.models.combine.rows.zscore_rows`: minus
the row mean, over the row's standard deviation; a constant row gives 0). The members' scores live
on unrelated scales (EASE's regression weights, iALS dot products, a graph filter's smoothed counts),
so they must share one before a weighted sum means anything; a per-user z-score is linear (it keeps
each member's order and relative gaps within the user) and costs O(n_items) per user with no sort.

Why blend. Models that rank well make different mistakes: EASE learns item-item regression weights,
iALS a low-rank user-item factorisation, GF-CF a degree-normalised graph filter. On three validation
carve-outs of ml100k-strat75's training part the blend EASE 0.4, iALS 0.4, GF-CF 0.2 (ideal_weight
1.0, no sessions) scored NDCG@10 0.2499 against 0.2445 for EASE and 0.2453 for iALS alone, and every
carve-out gained; the blends around it scored 0.2488-0.2505 (benchmarks/selection/blend_ltr.py). GF-CF's ideal
low-pass term weighs 1.0 here rather than its standalone default 0.3: inside the blend the smoother
filter adds more that the other two lack (0.2499 against 0.2488). Later all three members read
rating sessions (EASE already did): on five carve-outs, iALS with session_weight 0.3 and GF-CF with
0.15 raised the blend from 0.2503 to 0.2520, every carve-out up; the best row (iALS 0.4, weights
0.3 / 0.4 / 0.3) scored 0.2522, but iALS alone falls steeply past 0.3 (0.2434 at 0.4), so the
plateau's centre with the weights unchanged was kept. Inside the blend the members' session weights
differ from their standalone defaults (iALS 0.2, GF-CF 0.3), as GF-CF's ideal weight does.

Fold-in is the same blend of the members' fold-ins (each answers in milliseconds, so the blend does
too). Similar items blend the members' similarity rows z-scored the same way; "because you rated"
contributions blend the members' contributions (their own, else similarity x rating, as the base
explains), each row scaled to unit L1 norm first since the members' scales differ. Fallback for
pairs unknown to training: 0.
"""

from __future__ import annotations

import numpy as np

from movierec.data.dataset import Ratings
from movierec.errors import ConfigError
from movierec.models.combine.rows import predict_by_rows, unit_l1_rows, zscore_rows
from movierec.models.core.interactions import check_interaction_params
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.registry import create_model, get_model_class, parse_params

__all__ = ["Blend"]

class Blend(Recommender):
    """Weighted blend of registered ranking models' per-user z-scores (see the module docstring).

    Args:
        members: comma-separated members, each a registry name optionally followed by
            ``:name=value`` hyperparameters (``"ease,gf-cf:ideal_weight=1.0"``); none may need the
            catalog. Unlisted hyperparameters are the member's defaults, except the shared ones below.
        weights: comma-separated weights, one per member (numbers >= 0, not all 0); only their
            ratios matter.
        min_rating, weighting: the shared interaction hyperparameters, passed to every member that
            takes them.
        random_state: seed passed to every member that takes one.

    Fitted attributes: ``members_`` (the fitted inner models, in ``members`` order) and
    ``weights_`` (float64 array of the weights).

    Defaults: the members and weights were chosen on three validation carve-outs of ml100k-strat75's
    training part (never its test part); benchmarks/selection/blend_ltr.py reproduces the grid,
    benchmarks/target.py the single test measurement.
    """

    name = "blend"
    predicts_ratings = False

    def __init__(
        self,
        members: str = "ease,ials:session_weight=0.3,gf-cf:ideal_weight=1.0:session_weight=0.15",
        weights: str = "0.4,0.4,0.2",
        min_rating: float = 0.0,
        weighting: str = "binary",
        random_state: int = 0,
    ) -> None:
        self.members = members
        self.weights = weights
        self.min_rating = min_rating
        self.weighting = weighting
        self.random_state = random_state

    # -- hyperparameters -----------------------------------------------------------------------
    def _member_specs(self) -> list[tuple[str, dict]]:
        """(registry name, hyperparameters) per member, parsed from ``members``."""
        if not isinstance(self.members, str) or not self.members.strip():
            raise ConfigError(f"members must be comma-separated model names, got {self.members!r}")
        specs = []
        for part in self.members.split(","):
            name, *pairs = [piece.strip() for piece in part.split(":")]
            if name == self.name:
                raise ConfigError("members must not include blend itself")
            if getattr(get_model_class(name), "uses_catalog", False):
                raise ConfigError(f"members must be models that learn from ratings alone, got {name!r}")
            specs.append((name, parse_params(name, pairs)))
        return specs

    def _weight_values(self, n_members: int) -> np.ndarray:
        try:
            values = np.array([float(part) for part in str(self.weights).split(",")])
        except ValueError:
            raise ConfigError(f"weights must be comma-separated numbers, got {self.weights!r}") from None
        if (not isinstance(self.weights, str) or len(values) != n_members
                or not np.all(np.isfinite(values)) or (values < 0).any() or not (values > 0).any()):
            raise ConfigError(f"weights must be {n_members} comma-separated numbers >= 0, not all 0, "
                              f"got {self.weights!r}")
        return values

    def _check_params(self) -> None:
        self._weight_values(len(self._member_specs()))
        check_interaction_params(self.min_rating, self.weighting)
        if isinstance(self.random_state, bool) or not isinstance(self.random_state, int | np.integer):
            raise ConfigError(f"random_state must be an integer, got {self.random_state!r}")
        for model in self._new_members():
            model._check_params()

    def _new_members(self) -> list[Recommender]:
        shared = {"min_rating": self.min_rating, "weighting": self.weighting,
                  "random_state": self.random_state}
        models = []
        for name, params in self._member_specs():
            names = create_model(name).param_names()
            models.append(create_model(name, **({k: v for k, v in shared.items() if k in names} | params)))
        return models

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        members = [model.fit(train, callback=callback) for model in self._new_members()]
        for model in members:  # every member indexes the same training users and movies
            if len(model.items_) != len(self.items_) or len(model.users_) != len(self.users_):
                raise ConfigError(f"member {model.name} indexes other users or movies than the blend")
        self.members_ = members
        self.weights_ = self._weight_values(len(members))

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Every member's fit, summed: each member's learned state stays while the next one fits."""
        return int(sum(member.estimate_fit_bytes(n_users, n_items, n_ratings)
                       for member in self._new_members()))

    # -- scoring -------------------------------------------------------------------------------
    def _blend(self, parts: list[np.ndarray]) -> np.ndarray:
        """Weighted sum of the parts' row z-scores; each part (n, n_items)."""
        total = np.zeros_like(np.atleast_2d(np.asarray(parts[0], dtype=np.float64)))
        for weight, part in zip(self.weights_, parts, strict=True):
            if weight:
                total += weight * zscore_rows(part)
        return total

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        return self._blend([model._score_users(user_index) for model in self.members_])

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return predict_by_rows(self, user_index, item_index)  # z-scores need whole rows

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        item_index = np.asarray(item_index, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        return self._blend([model._fold_in(item_index, ratings)[None, :] for model in self.members_])[0]

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """The members' similarity rows, z-scored per row and blended with the weights."""
        item_index = np.asarray(item_index, dtype=np.int64)
        return self._blend([np.asarray(model._item_similarity(item_index), dtype=np.float64)
                            for model in self.members_])

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): the members' contributions (their own or similarity x
        rating), each row scaled to unit L1 norm, weighted by the blend weights (normalised to sum 1)."""
        item_index = np.asarray(item_index, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        target = np.asarray(target, dtype=np.int64)
        result = np.zeros((len(target), len(item_index)))
        share = self.weights_ / self.weights_.sum()
        for weight, model in zip(share, self.members_, strict=True):
            if weight:
                result += weight * unit_l1_rows(model._contribution_matrix(item_index, ratings, target))
        return result

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for position, model in enumerate(self.members_):
            state.update({f"{position}.{k}": v for k, v in model._state().items()})
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        members = self._new_members()
        for position, model in enumerate(members):
            model.users_ = self.users_
            model.items_ = self.items_
            model.scale_ = self.scale_
            model.seen_ = self.seen_
            model.catalog_ = None
            prefix = f"{position}."
            model._set_state({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        self.members_ = members
        self.weights_ = self._weight_values(len(members))
