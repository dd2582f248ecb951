"""The `Recommender` interface every model implements, and the plumbing they share.

Raw ids go in and come out; dense indices stay inside. A subclass supplies:

- ``__init__(**hyperparameters)`` storing them unchanged under the same names (scikit-learn style);
- ``_check_params()`` raising `ConfigError` for a bad value;
- ``_fit(train, valid, callback)`` learning state from ``train`` (indices via its vocabularies);
- ``_predict(user_index, item_index)``: scores for pairs, where index -1 means "not in training";
  the model's documented fallback applies to such pairs;
- ``_score_users(user_index)``: a dense (n, n_items) score block for known users;
- ``_fold_in(item_index, ratings)``: scores over all items for a user described only by ratings;
- ``_state()`` / ``_set_state(arrays)``: learned arrays, for `save` / `load`.

Top-K selection, seen-item exclusion, batching, id translation and persistence live here once.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.data.dataset import Ratings, Vocabulary
from movierec.errors import ConfigError, DataError, NotFittedError
from movierec.models.topk import top_k

__all__ = ["Callback", "Recommender", "check_int", "check_number"]

#: ``callback(event, info)``: progress from `fit` (``event`` like ``"epoch"``; ``info`` a dict).
Callback = Callable[[str, dict[str, Any]], None]

_BATCH = 1024


class Recommender:
    """Base class of all movierec models. See the module docstring for the subclass contract.

    Fitted attributes (trailing underscore, set by `fit` or `load`):
        users_, items_: vocabularies of the training data.
        seen_: users x items CSR of training ratings (what `exclude_seen` removes).
        scale_: the rating scale (lowest, highest).
    """

    #: registry name, e.g. ``"bias"``.
    name: ClassVar[str] = ""
    #: whether `predict` returns ratings on the data's scale (else it returns ranking scores).
    predicts_ratings: ClassVar[bool] = True

    users_: Vocabulary
    items_: Vocabulary
    seen_: sp.csr_matrix
    scale_: tuple[float, float]

    # -- hyperparameters -----------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's keyword hyperparameters, in signature order."""
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self"]

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        signature = inspect.signature(cls.__init__)
        return {
            p.name: p.default for p in signature.parameters.values() if p.name != "self"
        }

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters as stored by the constructor."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _check_params(self) -> None:
        """Raise `ConfigError` for an invalid hyperparameter; called at the start of `fit`."""

    # -- fitting -------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "seen_")

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load()")

    def fit(
        self,
        train: Ratings,
        valid: Ratings | None = None,
        callback: Callback | None = None,
    ) -> Recommender:
        """Learn from ``train`` (starting fresh every call) and return ``self``.

        Args:
            train: training ratings.
            valid: optional held-out ratings (raw ids), used ONLY to report per-epoch validation
                figures (learning curves), never to choose weights, stop early or tune: callers may
                pass a test set here, as the classic Keras recipes do with ``validation_data``.
                Models that stop early carve their own validation part out of ``train``.
            callback: progress events, see `Callback`.

        If fitting fails, the model is left exactly as it was before the call (fitted or not).

        Raises:
            ConfigError: an invalid hyperparameter. DataError: empty training data.
        """
        self._check_params()
        if len(train) == 0:
            raise DataError("cannot fit on empty ratings")
        before = dict(self.__dict__)  # learned state is rebound by _fit, never mutated in place
        try:
            self.users_ = train.users
            self.items_ = train.items
            self.scale_ = train.scale
            self.seen_ = train.csr
            self._fit(train, valid, callback)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        return self

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        raise NotImplementedError

    # -- scoring (indices inside) --------------------------------------------------------------
    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, users: Sequence[Any] | np.ndarray, items: Sequence[Any] | np.ndarray
                ) -> np.ndarray:
        """Predicted ratings (float64) for pairs of raw ids, clipped to the rating scale.

        A pair with a user or movie unknown to training still gets a number: the model's fallback
        (see its docstring). Use `known_pairs` to count them.
        """
        self._require_fitted()
        users, items = np.asarray(users), np.asarray(items)
        if users.shape != items.shape:
            raise ConfigError(f"users and items must have the same length, got "
                              f"{users.shape} and {items.shape}")
        user_index = self.users_.indices(users, missing="mask")
        item_index = self.items_.indices(items, missing="mask")
        scores = np.asarray(self._predict(user_index, item_index), dtype=np.float64)
        if self.predicts_ratings:
            scores = np.clip(scores, *self.scale_)
        return scores

    def known_pairs(self, users: Sequence[Any] | np.ndarray, items: Sequence[Any] | np.ndarray
                    ) -> np.ndarray:
        """Boolean mask: True where both the user and the movie were in training."""
        self._require_fitted()
        return (self.users_.indices(np.asarray(users), missing="mask") >= 0) & (
            self.items_.indices(np.asarray(items), missing="mask") >= 0
        )

    def recommend_indices(
        self, user_index: np.ndarray, k: int, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores for known user indices, best first, in batches.

        Returns (items (n, k') int64 with -1 where fewer items remain, scores (n, k')), with
        k' = min(k, n_items). Ties go to the lower item index (= lower raw id).
        """
        self._require_fitted()
        user_index = np.asarray(user_index, dtype=np.int64)
        width = min(int(k), len(self.items_))
        items = np.full((len(user_index), width), -1, dtype=np.int64)
        scores = np.full((len(user_index), width), -np.inf)
        for start in range(0, len(user_index), _BATCH):
            block = user_index[start : start + _BATCH]
            block_scores = self._score_users(block)
            exclude = self.seen_[block] if exclude_seen else None
            top, top_scores = top_k(block_scores, width, exclude=exclude)
            items[start : start + len(block)] = top
            scores[start : start + len(block)] = top_scores
        return items, scores

    def _display_scores(self, scores: np.ndarray) -> np.ndarray:
        """Scores as returned to callers: a rating model's are clipped to the scale like `predict`
        (after ranking, so the order is the unclipped one)."""
        return np.clip(scores, *self.scale_) if self.predicts_ratings else scores

    def _frame(self, items: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        keep = items >= 0
        return pd.DataFrame({"item": self.items_.ids[items[keep]],
                             "score": self._display_scores(scores[keep])})

    def recommend(self, user: Any, k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` movies for a known user: a frame of raw ``item`` ids and ``score``, best first.

        Raises:
            UnknownIdError: if the user was not in training (use `recommend_for_ratings`).
        """
        _check_k(k)
        self._require_fitted()
        items, scores = self.recommend_indices(np.array([self.users_.index(user)]), k,
                                               exclude_seen)
        return self._frame(items[0], scores[0])

    def recommend_batch(
        self, users: Iterable[Any], k: int = 10, exclude_seen: bool = True
    ) -> pd.DataFrame:
        """Top-``k`` for many known users: a long frame of ``user``, ``rank`` (1-based), ``item``,
        ``score``.

        Raises:
            UnknownIdError: if a user was not in training.
        """
        _check_k(k)
        self._require_fitted()
        user_ids = np.asarray(list(users))
        user_index = self.users_.indices(user_ids)
        items, scores = self.recommend_indices(user_index, k, exclude_seen)
        keep = items >= 0
        rows, ranks = np.nonzero(keep)
        return pd.DataFrame(
            {
                "user": user_ids[rows],
                "rank": ranks + 1,
                "item": self.items_.ids[items[keep]],
                "score": self._display_scores(scores[keep]),
            }
        )

    def recommend_for_ratings(
        self, pairs: Iterable[tuple[Any, float]], k: int = 10, exclude_rated: bool = True
    ) -> pd.DataFrame:
        """Top-``k`` for a new user described only by ``(movie, rating)`` pairs (fold-in).

        Movies unknown to the model are ignored; if none is known the model's cold-start
        scores apply (what it would give a user with no history). Rated movies are excluded
        unless ``exclude_rated`` is False.

        Raises:
            ConfigError: if a rating lies outside the model's scale.
        """
        _check_k(k)
        self._require_fitted()
        pairs = list(dict(pairs).items())  # a movie rated twice counts once: the last rating wins
        raw_items = np.asarray([p[0] for p in pairs])
        values = np.asarray([float(p[1]) for p in pairs], dtype=np.float64)
        low, high = self.scale_
        outside = ~((values >= low) & (values <= high))  # NaN is outside too
        if outside.any():
            raise ConfigError(f"ratings must lie in {low:g}..{high:g}, got {values[outside][0]:g}")
        index = self.items_.indices(raw_items, missing="mask") if len(pairs) else np.empty(0, int)
        known = index >= 0
        scores = np.asarray(self._fold_in(index[known], values[known]), dtype=np.float64)
        exclude = None
        if exclude_rated and known.any():
            exclude = sp.csr_matrix(
                (np.ones(int(known.sum())), (np.zeros(int(known.sum()), int), index[known])),
                shape=(1, len(self.items_)),
            )
        top, top_scores = top_k(scores[None, :], min(int(k), len(self.items_)), exclude=exclude)
        return self._frame(top[0], top_scores[0])

    def user_history(self, user: Any) -> pd.DataFrame:
        """A known user's training ratings: ``item``, ``rating``, highest rated first.

        Raises:
            UnknownIdError: if the user was not in training.
        """
        self._require_fitted()
        row = self.seen_[self.users_.index(user)]
        order = np.lexsort((row.indices, -row.data))
        return pd.DataFrame(
            {"item": self.items_.ids[row.indices[order]], "rating": row.data[order]}
        )

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path, **info: Any) -> Path:
        """Write this fitted model as an artifact folder; see `movierec.artifacts.save_model`."""
        from movierec.artifacts import save_model  # deferred: artifacts imports the registry

        return save_model(self, path, **info)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Read a model saved by `save`.

        Raises:
            DataError: a missing, corrupt or foreign artifact, or one of another model class.
        """
        from movierec.artifacts import load_model

        model = load_model(path).model
        if not isinstance(model, cls):
            raise DataError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


# -- hyperparameter checks shared by the models ----------------------------------------------------
def check_int(name: str, value: Any, low: int = 1) -> None:
    """Raise `ConfigError` unless ``value`` is an int (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")


def check_number(name: str, value: Any, low: float = 0.0, *, strict: bool = False) -> None:
    """Raise `ConfigError` unless ``value`` is a finite number >= ``low`` (> ``low`` if strict)."""
    ok = (not isinstance(value, bool) and isinstance(value, int | float | np.number)
          and math.isfinite(value) and (value > low if strict else value >= low))
    if not ok:
        raise ConfigError(f"{name} must be a number {'>' if strict else '>='} {low:g}, got {value!r}")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"k must be an int >= 1, got {k!r}")
