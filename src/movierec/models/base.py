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

Optional hooks, with defaults here:

- ``_item_vectors()``: an (n_items, d) item representation (factors, embeddings), or None;
- ``_item_similarity(item_index)``: (len(item_index), n_items) similarity rows; by default cosine over
  ``_item_vectors()``, else cosine of the items' co-rating columns in ``seen_``;
- ``_contributions(item_index, ratings, target)``: how much each rated item adds to each target's
  score for one user, (len(target), len(item_index)), or None where the model cannot attribute (the
  explanation then falls back to item similarity times rating);
- ``_cold_start()``: scores over items for someone with no known ratings.

Top-K selection, seen-item exclusion, filters, diversity re-ranking, explanations, batching, id
translation and persistence live here once.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.data.dataset import Catalog, Ratings, Vocabulary
from movierec.errors import ConfigError, DataError, NotFittedError
from movierec.models.rerank import mmr
from movierec.models.topk import top_k

__all__ = ["Callback", "Picks", "Recommender", "check_int", "check_number", "parse_years"]

#: ``callback(event, info)``: progress from `fit` (``event`` like ``"epoch"``; ``info`` a dict).
Callback = Callable[[str, dict[str, Any]], None]

_BATCH = 1024


class Picks(NamedTuple):
    """A top-k answer as plain arrays (what `recommend` and `recommend_for_ratings` put in a frame;
    the service serializes it directly, a frame per request costing more than the scoring).

    Attributes:
        items: raw movie ids, best first (len <= k).
        scores: their scores, as `recommend` shows them (a rating model's clipped to the scale).
        because: per movie, up to ``explain`` raw ids of rated movies that contributed most,
            strongest first; None when no explanation was asked for.
    """

    items: np.ndarray
    scores: np.ndarray
    because: list[list[Any]] | None

    def frame(self) -> pd.DataFrame:
        """Columns ``item``, ``score`` and, with explanations, ``because``."""
        out = pd.DataFrame({"item": self.items, "score": self.scores})
        if self.because is not None:
            out["because"] = self.because
        return out


class Recommender:
    """Base class of all movierec models. See the module docstring for the subclass contract.

    Fitted attributes (trailing underscore, set by `fit` or `load`):
        users_, items_: vocabularies of the training data.
        seen_: users x items CSR of training ratings (what `exclude_seen` removes).
        scale_: the rating scale (lowest, highest).
        catalog_: the movies passed to `fit` (or saved in the artifact), or None; filters by genre
            and year need it.
    """

    #: registry name, e.g. ``"bias"``.
    name: ClassVar[str] = ""
    #: whether `predict` returns ratings on the data's scale (else it returns ranking scores).
    predicts_ratings: ClassVar[bool] = True
    #: whether `fit` needs the movie catalog (content features).
    uses_catalog: ClassVar[bool] = False

    catalog_: Catalog | None = None
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
        *,
        catalog: Catalog | None = None,
    ) -> Recommender:
        """Learn from ``train`` (starting fresh every call) and return ``self``.

        Args:
            train: training ratings.
            valid: optional held-out ratings (raw ids), used ONLY to report per-epoch validation
                figures (learning curves), never to choose weights, stop early or tune: callers may
                pass a test set here, as the classic Keras recipes do with ``validation_data``.
                Models that stop early carve their own validation part out of ``train``.
            callback: progress events, see `Callback`.
            catalog: the movies (titles, years, genres, tags). Content models learn from it; every
                model keeps it for genre and year filters.

        If fitting fails, the model is left exactly as it was before the call (fitted or not).

        Raises:
            ConfigError: an invalid hyperparameter, or no catalog for a model that needs one.
            DataError: empty training data.
        """
        self._check_params()
        if len(train) == 0:
            raise DataError("cannot fit on empty ratings")
        if self.uses_catalog and catalog is None:
            raise ConfigError(f"{self.name} learns from movie features: pass catalog= to fit")
        before = dict(self.__dict__)  # learned state is rebound by _fit, never mutated in place
        try:
            self.__dict__.pop("_item_meta", None)
            self.users_ = train.users
            self.items_ = train.items
            self.scale_ = train.scale
            self.seen_ = train.csr
            self.catalog_ = catalog
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

    # -- optional hooks (see the module docstring) -----------------------------------------------
    def _item_vectors(self) -> np.ndarray | None:
        return None

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        vectors = self._item_vectors()
        if vectors is not None:
            return self._unit_vectors(vectors)[item_index] @ self._unit_vectors(vectors).T
        # Co-rating cosine: how often two movies are rated by the same people.
        binary = (self.seen_ != 0).astype(np.float64).tocsc()
        norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
        overlap = (binary[:, item_index].T @ binary).toarray()
        return overlap / np.maximum(norms[item_index, None] * norms[None, :], 1e-12)

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray | None:
        return None

    def _unit_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` scaled to unit length (float64), kept while `_item_vectors` returns the same
        array: normalising every movie on each call cost ~10x the rest of an explained request.
        Keyed by identity, so a refit or load (which rebinds the learned arrays) recomputes it."""
        cached = self.__dict__.get("_unit_cache")
        if cached is not None and cached[0] is vectors:
            return cached[1]
        values = np.asarray(vectors, dtype=np.float64)
        norms = np.linalg.norm(values, axis=1)
        unit = values / np.where(norms > 0, norms, 1.0)[:, None]
        self.__dict__["_unit_cache"] = (vectors, unit)
        return unit

    def _cold_start(self) -> np.ndarray:
        if self.predicts_ratings:
            return self._fold_in(np.empty(0, dtype=np.int64), np.empty(0))  # the model's prior
        return np.asarray((self.seen_ != 0).sum(axis=0), dtype=np.float64).ravel()

    # -- filters ------------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        """Per-item genre matrix, genre names and years from ``catalog_``, computed once per fit."""
        meta = self.__dict__.get("_item_meta")
        if meta is None:
            if self.catalog_ is None:
                raise ConfigError("genre and year filters need the movie catalog: fit with catalog= "
                                  "or load a saved model folder")
            rows = self.catalog_.rows(self.items_.ids)
            meta = {
                "genres": self.catalog_.genre_matrix(self.items_),  # CSR, items x genres
                "names": self.catalog_.genres,
                "years": rows["year"].astype("Float64").fillna(np.nan).to_numpy(dtype=np.float64),
            }
            self.__dict__["_item_meta"] = meta
        return meta

    def candidate_mask(
        self,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
    ) -> np.ndarray | None:
        """Bool mask over the model's items: True where a movie passes every filter (None: no filter).

        Args:
            genres: keep movies having ANY of these genres (names as in the catalog, any case).
            exclude_genres: drop movies having any of these.
            years: (first, last) release years, inclusive; either end may be None (open).
            min_ratings: keep movies with at least this many training ratings.

        Raises:
            ConfigError: an unknown genre name, an empty or reversed year range, a negative
                ``min_ratings``, or genre/year filters on a model without a catalog.
        """
        mask = np.ones(len(self.items_), dtype=bool)
        active = False
        genres = list(genres or [])
        exclude_genres = list(exclude_genres or [])
        if genres or exclude_genres:
            meta = self._meta()
            lookup = {name.lower(): j for j, name in enumerate(meta["names"])}

            def columns(names: list[str]) -> list[int]:
                unknown = [n for n in names if n.lower() not in lookup]
                if unknown:
                    raise ConfigError(f"unknown genre {unknown[0]!r}; expected one of "
                                      f"{', '.join(meta['names'])}")
                return [lookup[n.lower()] for n in names]

            if genres:
                mask &= np.asarray(meta["genres"][:, columns(genres)].sum(axis=1)).ravel() > 0
            if exclude_genres:
                mask &= np.asarray(meta["genres"][:, columns(exclude_genres)].sum(axis=1)).ravel() == 0
            active = True
        if years is not None:
            first, last = years
            if first is not None and last is not None and first > last:
                raise ConfigError(f"years must run from earlier to later, got {first}..{last}")
            year = self._meta()["years"]
            with np.errstate(invalid="ignore"):
                if first is not None:
                    mask &= year >= first
                if last is not None:
                    mask &= year <= last
            active = True
        if min_ratings:
            check_int("min_ratings", min_ratings, low=0)
            counts = np.diff(self.seen_.tocsc().indptr)
            mask &= counts >= min_ratings
            active = True
        return mask if active else None

    # -- recommending ------------------------------------------------------------------------------
    def _select(
        self,
        scores: np.ndarray,
        k: int,
        exclude: sp.csr_matrix | None,
        candidates: np.ndarray | None,
        diversity: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of a score block, optionally re-ranked by MMR (``diversity`` in [0, 1])."""
        width = min(int(k), scores.shape[1])
        if diversity <= 0:
            return top_k(scores, width, exclude=exclude, candidates=candidates)
        # MMR looks at a pool of the best few times k, then trades relevance for novelty in it.
        pool, pool_scores = top_k(scores, min(scores.shape[1], max(5 * width, 50)), exclude=exclude,
                                  candidates=candidates)
        items = np.full((len(scores), width), -1, dtype=np.int64)
        chosen = np.full((len(scores), width), -np.inf)
        for row in range(len(scores)):
            valid = pool[row] >= 0
            members, relevance = pool[row][valid], pool_scores[row][valid]
            if not len(members):
                continue
            order = mmr(relevance, self._diversity_similarity(members), width, diversity)
            items[row, : len(order)] = members[order]
            chosen[row, : len(order)] = relevance[order]
        return items, chosen

    def _diversity_similarity(self, members: np.ndarray) -> np.ndarray:
        """Similarity among candidate items for MMR: genre overlap (cosine) when the catalog is
        known, else the model's own item similarity."""
        if self.catalog_ is not None:
            genres = self._meta()["genres"][members].toarray().astype(np.float64)
            norms = np.linalg.norm(genres, axis=1)
            unit = genres / np.where(norms > 0, norms, 1.0)[:, None]
            return unit @ unit.T
        return self._item_similarity(members)[:, members]

    def recommend_indices(
        self,
        user_index: np.ndarray,
        k: int,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        diversity: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores for known user indices, best first, in batches.

        Args:
            candidates: optional bool mask over items; only True items are recommended.
            diversity: 0 ranks by score; up to 1, maximal marginal relevance trades score for
                items unlike those already picked.

        Returns (items (n, k') int64 with -1 where fewer items remain, scores (n, k')), with
        k' = min(k, n_items). Ties go to the lower item index (= lower raw id).
        """
        self._require_fitted()
        _check_diversity(diversity)
        user_index = np.asarray(user_index, dtype=np.int64)
        width = min(int(k), len(self.items_))
        items = np.full((len(user_index), width), -1, dtype=np.int64)
        scores = np.full((len(user_index), width), -np.inf)
        for start in range(0, len(user_index), _BATCH):
            block = user_index[start : start + _BATCH]
            block_scores = self._score_users(block)
            exclude = self.seen_[block] if exclude_seen else None
            top, top_scores = self._select(block_scores, width, exclude, candidates, diversity)
            items[start : start + len(block)] = top
            scores[start : start + len(block)] = top_scores
        return items, scores

    def _predict_by_rows(self, user_index: np.ndarray, item_index: np.ndarray, block: int = 1024
                         ) -> np.ndarray:
        """`_predict` for models whose scores exist only as whole rows (per-user z-scores, blends):
        each distinct known user's row from `_score_users`, ``block`` users at a time (bounding the
        dense (block, n_items) scores), read at the pairs' items; 0 where the user or item is -1."""
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        scores = np.zeros(len(user_index))
        pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
        users, row = np.unique(user_index[pairs], return_inverse=True)
        for start in range(0, len(users), block):
            chunk = users[start : start + block]
            mine = (row >= start) & (row < start + len(chunk))
            scores[pairs[mine]] = self._score_users(chunk)[row[mine] - start, item_index[pairs[mine]]]
        return scores

    def _display_scores(self, scores: np.ndarray) -> np.ndarray:
        """Scores as returned to callers: a rating model's are clipped to the scale like `predict`
        (after ranking, so the order is the unclipped one)."""
        return np.clip(scores, *self.scale_) if self.predicts_ratings else scores

    def recommend(
        self,
        user: Any,
        k: int = 10,
        exclude_seen: bool = True,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
        diversity: float = 0.0,
        explain: int = 0,
    ) -> pd.DataFrame:
        """Top-``k`` movies for a known user: a frame of raw ``item`` ids and ``score``, best first.

        Filters (``genres``, ``exclude_genres``, ``years``, ``min_ratings``) are those of
        `candidate_mask`; ``diversity`` those of `recommend_indices`. With ``explain=n`` > 0 a
        ``because`` column lists, per movie, up to n of the user's rated movies (raw ids) that
        contributed most, strongest first.

        Raises:
            UnknownIdError: if the user was not in training (use `recommend_for_ratings`).
            ConfigError: a bad k or filter.
        """
        return self.picks(user, k, exclude_seen, genres=genres, exclude_genres=exclude_genres, years=years,
                          min_ratings=min_ratings, diversity=diversity, explain=explain).frame()

    def picks(
        self,
        user: Any,
        k: int = 10,
        exclude_seen: bool = True,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
        diversity: float = 0.0,
        explain: int = 0,
    ) -> Picks:
        """`recommend` as plain arrays (`Picks`), for callers that serialize the answer themselves.

        Raises:
            UnknownIdError: if the user was not in training. ConfigError: a bad k or filter.
        """
        _check_k(k)
        check_int("explain", explain, low=0)
        self._require_fitted()
        index = self.users_.index(user)
        candidates = self.candidate_mask(genres=genres, exclude_genres=exclude_genres, years=years,
                                         min_ratings=min_ratings)
        items, scores = self.recommend_indices(np.array([index]), k, exclude_seen, candidates,
                                               diversity)
        start, stop = self.seen_.indptr[index], self.seen_.indptr[index + 1]
        return self._picks(items[0], scores[0], self.seen_.indices[start:stop],
                           self.seen_.data[start:stop], explain)

    def _picks(self, items: np.ndarray, scores: np.ndarray, rated: np.ndarray, ratings: np.ndarray,
               explain: int) -> Picks:
        """One user's top row (item indices, -1 = none) as `Picks`, explained by ``rated`` / ``ratings``."""
        keep = items >= 0
        chosen = items[keep]
        because = self._because(rated, ratings, chosen, explain) if explain else None
        return Picks(self.items_.ids[chosen], self._display_scores(scores[keep]), because)

    def recommend_batch(
        self,
        users: Iterable[Any],
        k: int = 10,
        exclude_seen: bool = True,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
        diversity: float = 0.0,
    ) -> pd.DataFrame:
        """Top-``k`` for many known users: a long frame of ``user``, ``rank`` (1-based), ``item``,
        ``score``. Filters and diversity as in `recommend`.

        Raises:
            UnknownIdError: if a user was not in training.
        """
        _check_k(k)
        self._require_fitted()
        user_ids = np.asarray(list(users))
        user_index = self.users_.indices(user_ids)
        candidates = self.candidate_mask(genres=genres, exclude_genres=exclude_genres, years=years,
                                         min_ratings=min_ratings)
        items, scores = self.recommend_indices(user_index, k, exclude_seen, candidates, diversity)
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

    def _known_ratings(self, pairs: Iterable[tuple[Any, float]]) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and ratings of the known movies among ``(movie, rating)`` pairs.

        A movie rated twice counts once (the last rating wins); unknown movies are dropped.

        Raises:
            ConfigError: if a rating lies outside the model's scale.
        """
        latest = dict(pairs)
        raw_items = np.asarray(list(latest))
        values = np.fromiter(latest.values(), dtype=np.float64, count=len(latest))
        low, high = self.scale_
        outside = ~((values >= low) & (values <= high))  # NaN is outside too
        if outside.any():
            raise ConfigError(f"ratings must lie in {low:g}..{high:g}, got {values[outside][0]:g}")
        index = self.items_.indices(raw_items, missing="mask") if len(latest) else np.empty(0, int)
        known = index >= 0
        return index[known].astype(np.int64), values[known]

    def _fold_in_scores(self, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores over all items (float64) for a new user's known item indices and ratings; the
        cold-start scores when there are none (`_fold_in` is never called empty)."""
        if not len(index):
            return np.asarray(self._cold_start(), dtype=np.float64)
        return np.asarray(self._fold_in(index, values), dtype=np.float64)

    def recommend_for_ratings(
        self,
        pairs: Iterable[tuple[Any, float]],
        k: int = 10,
        exclude_rated: bool = True,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
        diversity: float = 0.0,
        explain: int = 0,
    ) -> pd.DataFrame:
        """Top-``k`` for a new user described only by ``(movie, rating)`` pairs (fold-in).

        Movies unknown to the model are ignored; if none is known (or ``pairs`` is empty) the
        cold-start scores apply: popularity for ranking models, the prior for rating models, so
        someone who only names favourite ``genres`` still gets sensible picks. Rated movies are
        excluded unless ``exclude_rated`` is False. Filters, diversity and ``explain`` as in
        `recommend`.

        Raises:
            ConfigError: if a rating lies outside the model's scale, or a bad k or filter.
        """
        return self.picks_for_ratings(pairs, k, exclude_rated, genres=genres, exclude_genres=exclude_genres,
                                      years=years, min_ratings=min_ratings, diversity=diversity,
                                      explain=explain).frame()

    def picks_for_ratings(
        self,
        pairs: Iterable[tuple[Any, float]],
        k: int = 10,
        exclude_rated: bool = True,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
        diversity: float = 0.0,
        explain: int = 0,
    ) -> Picks:
        """`recommend_for_ratings` as plain arrays (`Picks`).

        Raises:
            ConfigError: if a rating lies outside the model's scale, or a bad k or filter.
        """
        _check_k(k)
        _check_diversity(diversity)
        check_int("explain", explain, low=0)
        self._require_fitted()
        index, values = self._known_ratings(pairs)
        scores = self._fold_in_scores(index, values)
        allowed = self.candidate_mask(genres=genres, exclude_genres=exclude_genres, years=years,
                                      min_ratings=min_ratings)
        if exclude_rated and len(index):  # one row: a mask is cheaper than a sparse exclusion matrix
            allowed = np.ones(len(self.items_), dtype=bool) if allowed is None else allowed.copy()
            allowed[index] = False
        top, top_scores = self._select(scores[None, :], k, None, allowed, diversity)
        return self._picks(top[0], top_scores[0], index, values, explain)

    # -- similar movies and explanations --------------------------------------------------------
    def similar_items(
        self,
        movie: Any,
        k: int = 10,
        *,
        genres: Iterable[str] | None = None,
        exclude_genres: Iterable[str] | None = None,
        years: tuple[int | None, int | None] | None = None,
        min_ratings: int = 0,
    ) -> pd.DataFrame:
        """The ``k`` movies most similar to ``movie`` in the model's item representation: a frame
        of raw ``item`` ids and ``score`` (similarity), most similar first; the movie itself is
        never included. Filters as in `recommend`.

        Raises:
            UnknownIdError: if the movie was not in training.
        """
        _check_k(k)
        self._require_fitted()
        index = self.items_.index(movie)
        similarity = np.asarray(self._item_similarity(np.array([index])), dtype=np.float64)
        itself = sp.csr_matrix(([1.0], ([0], [index])), shape=(1, len(self.items_)))
        candidates = self.candidate_mask(genres=genres, exclude_genres=exclude_genres, years=years,
                                         min_ratings=min_ratings)
        top, top_scores = top_k(similarity, min(int(k), len(self.items_)), exclude=itself,
                                candidates=candidates)
        keep = top[0] >= 0
        return pd.DataFrame({"item": self.items_.ids[top[0][keep]], "score": top_scores[0][keep]})

    def _contribution_matrix(self, rated: np.ndarray, ratings: np.ndarray, targets: np.ndarray
                             ) -> np.ndarray:
        """(len(targets), len(rated)) contributions: the model's own, else similarity x rating
        (so a loved similar movie explains more than a disliked one)."""
        contributions = self._contributions(rated, ratings, targets)
        if contributions is None:
            vectors = self._item_vectors() if type(self)._item_similarity is Recommender._item_similarity \
                else None
            if vectors is not None:  # only the rated columns: (targets x d) @ (d x rated), not x n_items
                unit = self._unit_vectors(vectors)
                similarity = unit[targets] @ unit[rated].T
            else:
                similarity = np.asarray(self._item_similarity(targets), dtype=np.float64)[:, rated]
            contributions = similarity * (ratings / self.scale_[1])[None, :]
        return np.asarray(contributions, dtype=np.float64)

    def _because(self, rated: np.ndarray, ratings: np.ndarray, targets: np.ndarray, n: int
                 ) -> list[list[Any]]:
        """Per target, up to ``n`` raw ids of rated movies with the largest positive contribution
        (``n`` already checked by `picks` / `picks_for_ratings`, the only callers)."""
        if not len(rated) or not len(targets) or not n:
            return [[] for _ in targets]
        contributions = self._contribution_matrix(rated, ratings, targets)
        if contributions.shape[1] <= _SORT_ROWS_UP_TO:  # a few ratings: one stable sort of the block
            order = np.argsort(-contributions, axis=1, kind="stable")[:, :n]
        else:  # a heavy user: partition each row rather than sort thousands of columns
            order = np.stack([_largest(row, n) for row in contributions])
        positive = np.take_along_axis(contributions, order, axis=1) > 0
        ids = self.items_.ids[rated[order]]
        return [row[keep].tolist() for row, keep in zip(ids, positive, strict=True)]

    def _explanation_frame(self, rated: np.ndarray, ratings: np.ndarray, target: int, n: int
                           ) -> pd.DataFrame:
        check_int("n", n)
        if not len(rated):
            return pd.DataFrame({"item": self.items_.ids[:0], "rating": np.empty(0),
                                 "contribution": np.empty(0)})
        contributions = self._contribution_matrix(rated, ratings, np.array([target]))[0]
        order = np.argsort(-contributions, kind="stable")
        order = order[contributions[order] > 0][:n]
        return pd.DataFrame({"item": self.items_.ids[rated[order]], "rating": ratings[order],
                             "contribution": contributions[order]})

    def explain(self, user: Any, movie: Any, n: int = 3) -> pd.DataFrame:
        """Why ``movie`` suits a known ``user``: up to ``n`` of the user's rated movies that
        contributed most to its score, as ``item`` (raw id), ``rating`` and ``contribution``
        (positive, strongest first). The contribution is the model's own attribution where it has
        one (kNN, EASE, ALS), else the movies' similarity times the rating.

        Raises:
            UnknownIdError: if the user or the movie was not in training.
        """
        self._require_fitted()
        row = self.seen_[self.users_.index(user)]
        return self._explanation_frame(row.indices.astype(np.int64), row.data.astype(np.float64),
                                       self.items_.index(movie), n)

    def explain_for_ratings(self, pairs: Iterable[tuple[Any, float]], movie: Any, n: int = 3
                            ) -> pd.DataFrame:
        """`explain` for a new user described by ``(movie, rating)`` pairs.

        Raises:
            UnknownIdError: if ``movie`` was not in training. ConfigError: a rating off the scale.
        """
        self._require_fitted()
        index, values = self._known_ratings(pairs)
        return self._explanation_frame(index, values, self.items_.index(movie), n)

    def item_vectors(self) -> np.ndarray | None:
        """The model's item representation, (n_items, d) in ``items_`` order, or None if it has none
        (for maps of the movies)."""
        self._require_fitted()
        vectors = self._item_vectors()
        return None if vectors is None else np.asarray(vectors, dtype=np.float64)

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


def parse_years(text: str) -> tuple[int | None, int | None]:
    """A release-year range as people write it: ``"1990-1999"``, ``"1995"`` (that year), ``"2000-"`` or
    ``"-1980"`` (open at one end) -> (first, last) for the ``years`` filter, None for an open end.

    Raises:
        ConfigError: naming the text, if it is none of those forms.
    """
    first, sep, last = str(text).strip().partition("-")
    try:
        if not sep and first:
            return int(first), int(first)
        span = (int(first) if first.strip() else None, int(last) if last.strip() else None)
    except ValueError:
        span = (None, None)
    if span == (None, None):
        raise ConfigError(f"years must look like 1990-1999, 1995, 2000- or -1980, got {text!r}")
    return span


#: `_because` sorts whole contribution rows up to this many rated movies, partitions them beyond.
_SORT_ROWS_UP_TO = 256


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` largest values, largest first, ties to the lower position: what a stable
    sort of ``-values`` gives, without sorting a long row (a heavy user's thousands of movies)."""
    if len(values) > n > 0:
        threshold = np.partition(values, len(values) - n)[len(values) - n]
        candidates = np.flatnonzero(values >= threshold)  # ties at the threshold all compete
    else:
        candidates = np.arange(len(values))
    return candidates[np.lexsort((candidates, -values[candidates]))][:n]


def _check_diversity(diversity: float) -> None:
    check_number("diversity", diversity)
    if diversity > 1:
        raise ConfigError(f"diversity must be a number in 0..1, got {diversity!r}")


def _check_k(k: int) -> None:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"k must be an int >= 1, got {k!r}")
