"""The `Recommender` interface every model implements, and the plumbing they share.

Raw ids go in and come out; dense indices stay inside. A subclass supplies:

- ``__init__(**hyperparameters)`` storing them unchanged under the same names (scikit-learn style);
- ``_check_params()`` raising `ConfigError` for a bad value;
- ``_fit(train, valid, callback)`` learning state from ``train`` (indices via its vocabularies);
- ``_predict(user_index, item_index)``: scores for pairs, where index -1 means "not in training";
  the model's documented fallback applies to such pairs;
- ``_score_users(user_index)``: a dense (n, n_items) score block for known users;
- ``_fold_in(item_index, ratings)``: scores over all items for a user described only by ratings;
- ``_state()`` / ``_set_state(arrays)``: learned arrays, for the artifact layer (`movierec.artifacts`).

Optional hooks, with defaults here:

- ``_item_vectors()``: an (n_items, d) item representation (factors, embeddings), or None;
- ``_item_similarity(item_index)``: (len(item_index), n_items) similarity rows; by default cosine over
  ``_item_vectors()``, else cosine of the items' co-rating columns in ``seen_``;
- ``_contributions(item_index, ratings, target)``: how much each rated item adds to each target's
  score for one user, (len(target), len(item_index)), or None where the model cannot attribute (the
  explanation then falls back to item similarity times rating);
- ``_cold_start()``: scores over items for someone with no known ratings;
- ``_dot_parts()``: the known users' scores as inner products (`DotParts`), or None, for the
  device ranker (`device_topk`) and approximate retrieval (`movierec.retrieval`, attached from
  above as ``model.retriever``).

Seen-item exclusion, batching, id translation, fold-in and explanations live here once, over the
shared machinery beside this module: `topk` (selection), `rerank` (diversity), `filters` (genres,
years, popularity), `explain` (because-lists), `checks` (hyperparameters). Saving and loading are
the artifact layer's (`movierec.artifacts`): a model only gives and takes its arrays (`_state`,
`_set_state`) and settings (`get_params`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.data.dataset import Catalog, Ratings, Vocabulary
from movierec.errors import ConfigError, DataError, NotFittedError
from movierec.models.core.checks import check_diversity, check_int, check_k
from movierec.models.core.determinism import cuda_determinism, wants_cuda
from movierec.models.core.explain import because, explanation
from movierec.models.core.filters import MovieFacts, candidate_mask
from movierec.models.core.memory import check_fit_memory, csr_bytes
from movierec.models.core.rerank import select
from movierec.models.core.topk import top_k

__all__ = ["Callback", "DotParts", "Picks", "Recommender", "Retriever", "block_users"]

#: ``callback(event, info)``: progress from `fit` (``event`` like ``"epoch"``; ``info`` a dict).
Callback = Callable[[str, dict[str, Any]], None]

# Known users are scored in blocks of at most this many scores (users x items; float64: 128 MB), and
# at most _BLOCK_USERS users: memory stays bounded whatever the number of users or movies.
_BLOCK_SCORES = 1 << 24
_BLOCK_USERS = 1024


# True while a `Recommender.fit` runs in this thread or task (see the memory check in `fit`).
_FITTING: ContextVar[bool] = ContextVar("movierec_fitting", default=False)


@contextlib.contextmanager
def one_math_thread_each() -> Iterator[None]:
    """BLAS and torch on one thread each while the block runs work on several threads of its own
    (the callers' counts restored afterwards)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def block_users(n_items: int) -> int:
    """How many users `Recommender.recommend_indices` scores at once for a catalog of ``n_items``."""
    return max(1, min(_BLOCK_USERS, _BLOCK_SCORES // max(n_items, 1)))


class DotParts(NamedTuple):
    """A model's known-user scores as inner products: ``users @ items.T + offsets[None, :]``.

    Per-user terms (a global mean, a user bias) ride in an extra column of ``users`` against a
    column of ones in ``items``; per-item terms (item biases, means) are ``offsets``. Arrays are the
    model's own dtype (float32 mostly); read-only by convention, and the same objects call after call
    while the learned arrays are unchanged (callers cache on their identity).

    Attributes:
        users: (n_users, d), indexed by user index.
        items: (n_items, d), indexed by item index.
        offsets: (n_items,).
        exact: True when the sum is the model's score (`_score_users`, up to float rounding); False
            when it is a strictly increasing function of it (dot-bias-sigmoid's sigmoid): the same
            ranking, but the scores shown must come from the model (`_predict`).
    """

    users: np.ndarray
    items: np.ndarray
    offsets: np.ndarray
    exact: bool


class Retriever(Protocol):
    """Something that ranks known users without scoring every movie (`movierec.retrieval`), set as
    ``model.retriever`` by the layers above the models."""

    def top_k(self, model: Recommender, user_index: np.ndarray, k: int, exclude: sp.csr_matrix | None,
              candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """`Recommender.recommend_indices`'s answer (diversity 0), or None to let the model score
        every movie (e.g. the model changed since the retriever was built)."""
        ...


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

    Fitted attributes (trailing underscore, set by `fit` or by `movierec.artifacts.load_model`):
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
    #: whether ``device="auto"`` may train on CUDA (models with a ``device``); False for models
    #: measured slower on a GPU than on a CPU, which ``device="cuda"`` still puts there.
    auto_cuda: ClassVar[bool] = True
    #: models whose `_dot_parts` are exact and whose CPU scores are float64 sums of them: known users
    #: are ranked by the device ranker (`device_topk`) when ``device`` is CUDA, and on the CPU by a
    #: float32 pass proven in float64 (`dot_topk`) when the catalog is large.
    ranks_on_device: ClassVar[bool] = False

    catalog_: Catalog | None = None
    #: approximate top-k for known users (`movierec.retrieval.attach`), or None: score every movie.
    retriever: Retriever | None = None
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
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or load a saved model "
                                 f"(movierec.artifacts.load_model)")

    def fit(
        self,
        train: Ratings,
        valid: Ratings | None = None,
        callback: Callback | None = None,
        *,
        catalog: Catalog | None = None,
        max_memory: int | None = None,
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
            max_memory: bytes the fit may take (`estimate_fit_bytes`), checked before anything
                is allocated; None: the memory the machine has available now.

        If fitting fails, the model is left exactly as it was before the call (fitted or not).

        Raises:
            ConfigError: an invalid hyperparameter, or no catalog for a model that needs one.
            DataError: empty training data.
            MemoryLimitError: the fit's estimated memory exceeds ``max_memory``.
        """
        self._check_params()
        if len(train) == 0:
            raise DataError("cannot fit on empty ratings")
        if self.uses_catalog and catalog is None:
            raise ConfigError(f"{self.name} learns from movie features: pass catalog= to fit")
        # A model fitted inside another's fit (a blend's members) was counted in the outer estimate,
        # against the outer limit: it is checked again only when given a limit of its own.
        outer = _FITTING.get()
        if max_memory is not None or not outer:
            check_fit_memory(self, train.n_users, train.n_items, len(train), max_memory)
        before = dict(self.__dict__)  # learned state is rebound by _fit, never mutated in place
        token = _FITTING.set(True)
        try:
            self.__dict__.pop("_facts", None)
            self.__dict__.pop("retriever", None)  # built for the arrays being replaced
            self.users_ = train.users
            self.items_ = train.items
            self.scale_ = train.scale
            self.seen_ = train.csr
            self.catalog_ = catalog
            device = getattr(self, "device", None)
            with cuda_determinism("cpu" if device == "auto" and not self.auto_cuda else device):
                self._fit(train, valid, callback)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        finally:
            _FITTING.reset(token)
        return self

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        raise NotImplementedError

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Peak bytes `fit` will allocate for these sizes, beyond the training ratings themselves
        (see `movierec.models.core.memory`). This default counts the ratings matrix ``seen_`` and
        one float64 interaction copy; every registered model states its own."""
        return csr_bytes(n_users, n_ratings, 4) + csr_bytes(n_users, n_ratings)

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
    def _movie_facts(self) -> MovieFacts:
        """Genres and years of the model's movies from ``catalog_``, gathered once per fit."""
        facts = self.__dict__.get("_facts")
        if facts is None:
            if self.catalog_ is None:
                raise ConfigError("genre and year filters need the movie catalog: fit with catalog= "
                                  "or load a saved model folder")
            facts = self.__dict__["_facts"] = MovieFacts(self.catalog_, self.items_)
        return facts

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
        return candidate_mask(len(self.items_), self._movie_facts,
                              lambda: np.diff(self.seen_.tocsc().indptr), genres=genres,
                              exclude_genres=exclude_genres, years=years, min_ratings=min_ratings)

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
        return select(scores, k, exclude, candidates, diversity, self._diversity_similarity)

    def _diversity_similarity(self, members: np.ndarray) -> np.ndarray:
        """Similarity among candidate items for MMR: genre overlap (cosine) when the catalog is
        known, else the model's own item similarity."""
        if self.catalog_ is not None:
            return self._movie_facts().genre_similarity(members)
        return self._item_similarity(members)[:, members]

    def recommend_indices(
        self,
        user_index: np.ndarray,
        k: int,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
        diversity: float = 0.0,
        workers: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` item indices and scores for known user indices, best first, scored a block of
        users at a time (`block_users`), so memory is bounded by the block, not by the users.

        Args:
            candidates: optional bool mask over items; only True items are recommended.
            diversity: 0 ranks by score; up to 1, maximal marginal relevance trades score for
                items unlike those already picked.
            workers: blocks ranked at once, each on its own thread with one BLAS/torch thread
                (the top-k selection is single-threaded: on 2 cores, 2 workers rank 200k users
                of an 87k-movie catalog 2.7x faster than 1). Memory grows with ``workers`` blocks.
                Results do not depend on it.

        Returns (items (n, k') int64 with -1 where fewer items remain, scores (n, k')), with
        k' = min(k, n_items). Ties go to the lower item index (= lower raw id).
        """
        self._require_fitted()
        check_diversity(diversity)
        user_index = np.asarray(user_index, dtype=np.int64)
        if self.retriever is not None and diversity <= 0:
            found = self.retriever.top_k(self, user_index, k, self.seen_ if exclude_seen else None,
                                         candidates)
            if found is not None:
                return found
        device_top_k = self._device_top_k(len(user_index)) if diversity <= 0 else None
        if device_top_k is not None:
            return device_top_k.top_k(user_index, k, self.seen_ if exclude_seen else None, candidates)
        width = min(int(k), len(self.items_))
        items = np.full((len(user_index), width), -1, dtype=np.int64)
        scores = np.full((len(user_index), width), -np.inf)
        two_pass = self._cpu_dot_top_k() if diversity <= 0 else None
        step = two_pass.batch_users if two_pass is not None else block_users(len(self.items_))
        starts = range(0, len(user_index), step)

        def rank(start: int) -> None:
            block = user_index[start : start + step]
            exclude = self.seen_[block] if exclude_seen else None
            if two_pass is not None:
                top, top_scores = two_pass.top_k(block, width, exclude, candidates)
            else:
                top, top_scores = self._select(self._score_users(block), width, exclude, candidates,
                                               diversity)
            items[start : start + len(block)] = top  # rows of their own: no two threads share one
            scores[start : start + len(block)] = top_scores

        check_int("workers", workers)
        if workers == 1 or len(starts) == 1:
            for start in starts:
                rank(start)
            return items, scores
        with one_math_thread_each(), ThreadPoolExecutor(workers, thread_name_prefix="rank") as pool:
            # each block's scores live only while a worker ranks it: at most `workers` at once;
            # list() waits for them all and re-raises a block's error
            list(pool.map(rank, starts))
        return items, scores

    def batch_users(self) -> int:
        """Users a caller should ask `recommend_indices` for at once (`recommend-all`'s chunk): the
        approximate retriever's batch, the two-pass ranker's (its scratch is bounded by its stages'
        pieces), or else the block of users whose scores make about 16 million."""
        self._require_fitted()
        if self.retriever is not None:
            return self.retriever.batch_users
        two_pass = self._cpu_dot_top_k()
        return two_pass.batch_users if two_pass is not None else block_users(len(self.items_))

    def _dot_parts(self) -> DotParts | None:
        """The known users' scores as inner products (`DotParts`), or None where they are not.
        Such a model may rank on its torch device (`ranks_on_device`) and through an approximate
        inner-product index (`movierec.retrieval`)."""
        return None

    def _cached_parts(self, key: tuple[Any, ...], build: Callable[[], DotParts]) -> DotParts:
        """``build()``, kept until an object of ``key`` (the learned arrays it reads) is rebound, so
        that `_dot_parts` returns the same arrays call after call."""
        return self._kept("_dot_parts_cache", key, build)

    def _kept(self, slot: str, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """``build()``, kept in ``slot`` until an object of ``key`` (what it was built from) is
        rebound."""
        cached = self.__dict__.get(slot)
        if cached is None or len(cached[0]) != len(key) or any(
                a is not b for a, b in zip(cached[0], key, strict=True)):
            cached = self.__dict__[slot] = (key, build())
        return cached[1]

    def _device_top_k(self, n_users: int) -> Any:
        """The device ranker for a call ranking ``n_users`` users, or None for the CPU path."""
        if not self.ranks_on_device or not wants_cuda(getattr(self, "device", None)):
            return None
        parts = self._dot_parts()
        if parts is None or not parts.exact:
            return None
        from movierec.models.core.device_topk import ranker_for

        return ranker_for(self, n_users)

    def _cpu_dot_top_k(self) -> Any:
        """The two-pass CPU ranker (`movierec.models.core.dot_topk`) for a model whose float64 scores
        are exact inner products (`ranks_on_device`, `_dot_parts` exact) and whose catalog is large
        enough for it to pay (`dot_topk.MIN_ITEMS`); else None: `_score_users` and `top_k`."""
        from movierec.models.core import dot_topk

        if not self.ranks_on_device or len(self.items_) < dot_topk.MIN_ITEMS:
            return None
        parts = self._dot_parts()
        if parts is None or not parts.exact:
            return None
        return self._kept("_cpu_dot_top_k_cache", (parts.users, parts.items, parts.offsets),
                          lambda: dot_topk.DotTopK32(parts.users, parts.items, parts.offsets,
                                                     self._score_users))

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
        check_k(k)
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
        check_k(k)
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
        check_k(k)
        check_diversity(diversity)
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
        check_k(k)
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
        return because(self._contribution_matrix(rated, ratings, targets), self.items_.ids[rated], n)

    def _explanation_frame(self, rated: np.ndarray, ratings: np.ndarray, target: int, n: int
                           ) -> pd.DataFrame:
        check_int("n", n)
        contributions = (self._contribution_matrix(rated, ratings, np.array([target]))[0] if len(rated)
                         else np.empty(0))
        return explanation(contributions, self.items_.ids[rated], ratings, n)

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
