"""Hybrid: a collaborative model blended with the content model by how much is known.

Two inner models are fitted on the same training data: a collaborative one (any registered model that
does not itself need the catalog, named by ``collaborative``) and `ContentRecommender`. For user u and
movie i the score is

    s_ui = a_ui * z_cf(u, i) + (1 - a_ui) * z_cb(u, i),
    a_ui = n_u / (n_u + user_shrink) * n_i / (n_i + item_shrink)

where n_u is the number of u's ratings on movies the collaborative model knows, n_i the number of
training ratings of movie i (0 for a catalog-only movie, which thus gets pure content), and z_cf,
z_cb are the two parts' scores z-scored per user (over all the movies each part scores). A user with
no usable ratings gets pure content; a user and a movie with many ratings get (almost) pure CF.

Why z-scores. The parts live on unrelated scales (a predicted rating near 1..5, an EASE score, a cosine
in [-1, 1]) and with unrelated spreads, so they must be put on one scale before a weighted sum means
anything. Per-user z-scoring is linear (it keeps each part's within-user order and relative gaps, so
a clear CF favourite stays clearly ahead), costs O(n_items) per user with no sort (rank
normalisation would sort every row) and is robust to a part's offset and scale, which vary from user
to user; min-max would hang the whole scale on the single most extreme movie. A user whose part is
constant over all movies gets z = 0 from it.

Fallback for pairs unknown to training: 0.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from movierec.data.dataset import Ratings, Vocabulary
from movierec.errors import ConfigError
from movierec.models.combine.content import ContentRecommender
from movierec.models.combine.rows import predict_by_rows, unit_l1_rows, zscore_rows
from movierec.models.core.checks import check_number
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.registry import create_model, get_model_class

__all__ = ["HybridRecommender"]

_CONTENT = "content."
_CF = "collaborative."


class HybridRecommender(Recommender):
    """Collaborative + content blend, weighted per (user, movie) by the ratings behind each.

    Args:
        collaborative: registry name of the collaborative model (fitted with its default
            hyperparameters, plus ``min_rating`` / ``weighting`` where it takes them).
        user_shrink: n_u at which the collaborative part gets half the user's weight (>= 0).
        item_shrink: n_i at which the collaborative part gets half the movie's weight (>= 0).
        genre_weight, tag_weight, year_weight: the content model's feature block weights.
        min_rating, weighting: the shared interaction hyperparameters, passed to both parts (the
            content model also takes ``weighting="deviation"``, which only it receives).

    Needs the catalog: ``fit(train, catalog=...)``.

    Defaults from a validation grid on two carve-outs of ml100k-strat75's training part
    (user-ratio 0.8, seeds 7 and 8; never the test part): over ``ials`` (validation NDCG@10 0.2434 on
    its own, the best collaborative model there), item_shrink 5 scored 0.2430-0.2442 for user_shrink
    0-5, while item_shrink 100 fell to 0.227-0.229; over ``ease`` the best cell was 0.2424 (user 5,
    item 1). The blend barely moves NDCG for users with many ratings; its point is movies and people
    with few or none, which get content. user_shrink 5 (rather than 0, within 0.001) keeps users with
    one or two ratings mostly on content.

    Fitted attributes: ``content_`` and ``collaborative_`` (the inner models); ``items_`` covers the
    training movies plus catalog-only ones (as the content model's); ``cf_item_`` (n_items,) each
    movie's index in the collaborative model (-1 for catalog-only movies); ``user_weight_`` (n_users,)
    and ``item_weight_`` (n_items,) the two factors of a_ui.
    """

    name = "hybrid"
    predicts_ratings = False
    uses_catalog: ClassVar[bool] = True

    def __init__(
        self,
        collaborative: str = "ials",
        user_shrink: float = 5.0,
        item_shrink: float = 5.0,
        genre_weight: float = 1.0,
        tag_weight: float = 0.0,
        year_weight: float = 1.0,
        min_rating: float = 0.0,
        weighting: str = "binary",
    ) -> None:
        self.collaborative = collaborative
        self.user_shrink = user_shrink
        self.item_shrink = item_shrink
        self.genre_weight = genre_weight
        self.tag_weight = tag_weight
        self.year_weight = year_weight
        self.min_rating = min_rating
        self.weighting = weighting

    def _check_params(self) -> None:
        if not isinstance(self.collaborative, str):
            raise ConfigError(f"collaborative must be a model name, got {self.collaborative!r}")
        cls = get_model_class(self.collaborative)
        if getattr(cls, "uses_catalog", False):
            raise ConfigError(f"collaborative must be a model that learns from ratings alone, "
                              f"got {self.collaborative!r}")
        check_number("user_shrink", self.user_shrink)
        check_number("item_shrink", self.item_shrink)
        self._content_model()._check_params()

    # -- the parts -----------------------------------------------------------------------------
    def _content_model(self) -> ContentRecommender:
        return ContentRecommender(genre_weight=self.genre_weight, tag_weight=self.tag_weight,
                                  year_weight=self.year_weight, min_rating=self.min_rating,
                                  weighting=self.weighting)

    def _collaborative_model(self) -> Recommender:
        names = create_model(self.collaborative).param_names()
        shared = {"min_rating": self.min_rating, "weighting": self.weighting}
        if self.weighting == "deviation":  # the content model's own weighting
            shared.pop("weighting")
        return create_model(self.collaborative, **{k: v for k, v in shared.items() if k in names})

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        content = self._content_model().fit(train, callback=callback, catalog=self.catalog_)
        collaborative = self._collaborative_model().fit(train, callback=callback)
        self.content_ = content
        self.collaborative_ = collaborative
        self.items_ = content.items_
        self.seen_ = content.seen_
        self._prepare()

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """The content model's fit and the collaborative model's, both held at the end."""
        return int(self._content_model().estimate_fit_bytes(n_users, n_items, n_ratings)
                   + self._collaborative_model().estimate_fit_bytes(n_users, n_items, n_ratings))

    def _prepare(self) -> None:
        """The blend weights' two factors, from ``seen_`` and the collaborative vocabulary."""
        self.cf_item_ = self.collaborative_.items_.indices(self.items_.ids, missing="mask")
        item_count = np.bincount(self.seen_.indices, minlength=len(self.items_)).astype(np.float64)
        item_count[self.cf_item_ < 0] = 0.0
        self.item_weight_ = _share(item_count, self.item_shrink)
        user_count = np.diff(self.seen_.indptr).astype(np.float64)
        self.user_weight_ = _share(user_count, self.user_shrink)
        self._cf_columns = np.flatnonzero(self.cf_item_ >= 0)

    def _blend(self, user_weight: np.ndarray, cf_scores: np.ndarray | None, content_scores: np.ndarray
               ) -> np.ndarray:
        """(n, n_items) blend of raw part scores: cf (n, n_cf) or None, content (n, n_items)."""
        blended = zscore_rows(content_scores)
        if cf_scores is None:
            return blended
        z_cf = np.zeros_like(blended)
        z_cf[:, self._cf_columns] = zscore_rows(cf_scores)[:, self.cf_item_[self._cf_columns]]
        share = user_weight[:, None] * self.item_weight_[None, :]
        blended += share * (z_cf - blended)
        return blended

    # -- scoring -------------------------------------------------------------------------------
    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        # users_ of both parts are the training users, in the same order as the hybrid's
        return self._blend(self.user_weight_[user_index],
                           self.collaborative_._score_users(user_index),
                           self.content_._score_users(user_index))

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        return predict_by_rows(self, user_index, item_index)  # z-scores need whole rows

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        item_index = np.asarray(item_index, dtype=np.int64)
        ratings = np.asarray(ratings, dtype=np.float64)
        content = self.content_._fold_in(item_index, ratings)[None, :]
        cf_index = self.cf_item_[item_index]
        known = cf_index >= 0
        if not known.any():  # only catalog-only movies rated: nothing for the collaborative part
            return self._blend(np.zeros(1), None, content)[0]
        cf = self.collaborative_._fold_in(cf_index[known], ratings[known])[None, :]
        return self._blend(_share(np.array([known.sum()], dtype=np.float64), self.user_shrink),
                           cf, content)[0]

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """Content cosines, blended with the collaborative part's similarity (where it has one) by
        w_i * w_j: two well-rated movies are compared by who rated them, a new movie by content."""
        item_index = np.asarray(item_index, dtype=np.int64)
        similarity = self.content_._item_similarity(item_index)
        cf_similarity = getattr(self.collaborative_, "_item_similarity", None)
        cf_index = self.cf_item_[item_index]
        rows = np.flatnonzero(cf_index >= 0)
        if cf_similarity is None or not len(rows):
            return similarity
        cf_rows = np.asarray(cf_similarity(cf_index[rows]), dtype=np.float64)
        full = np.zeros((len(rows), len(self.items_)))
        full[:, self._cf_columns] = cf_rows[:, self.cf_item_[self._cf_columns]]
        share = self.item_weight_[item_index[rows]][:, None] * self.item_weight_[None, :]
        similarity[rows] += share * (full - similarity[rows])
        return similarity

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): the content part's contributions, and where the
        collaborative part has its own, those too, each row scaled to unit L1 norm (the parts' scales
        differ) and blended by a_ui."""
        item_index = np.asarray(item_index, dtype=np.int64)
        target = np.asarray(target, dtype=np.int64)
        result = unit_l1_rows(self.content_._contributions(item_index, ratings, target))
        cf_contributions = getattr(self.collaborative_, "_contributions", None)
        cf_index = self.cf_item_[item_index]
        known = cf_index >= 0
        targets = np.flatnonzero(self.cf_item_[target] >= 0)
        if cf_contributions is None or not known.any() or not len(targets):
            return result
        part = cf_contributions(cf_index[known], np.asarray(ratings)[known],
                                self.cf_item_[target[targets]])
        if part is None:
            return result
        cf = np.zeros((len(targets), len(item_index)))
        cf[:, known] = unit_l1_rows(np.asarray(part, dtype=np.float64))
        share = (_share(np.array([known.sum()], dtype=np.float64), self.user_shrink)
                 * self.item_weight_[target[targets]])[:, None]
        result[targets] += share * (cf - result[targets])
        return result

    def _item_vectors(self) -> np.ndarray:
        """The content features (they cover catalog-only movies too), reduced as the content model's."""
        return self.content_._item_vectors()

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        state = {_CONTENT + k: v for k, v in self.content_._state().items()}
        state.update({_CF + k: v for k, v in self.collaborative_._state().items()})
        # the collaborative vocabulary as positions in the hybrid's (ids may be strings)
        state[_CF + "items"] = self.items_.indices(self.collaborative_.items_.ids).astype(np.int64)
        return state

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        content = self._content_model()
        collaborative = self._collaborative_model()
        positions = arrays[_CF + "items"]
        for part, items, seen in (
            (content, self.items_, self.seen_),
            (collaborative, Vocabulary(self.items_.ids[positions], self.items_.kind),
             sp.csr_matrix(self.seen_[:, positions])),
        ):
            part.users_ = self.users_
            part.items_ = items
            part.scale_ = self.scale_
            seen.sort_indices()
            part.seen_ = seen
        content._set_state({k[len(_CONTENT):]: v for k, v in arrays.items() if k.startswith(_CONTENT)})
        collaborative._set_state({k[len(_CF):]: v for k, v in arrays.items()
                                  if k.startswith(_CF) and k != _CF + "items"})
        self.content_ = content
        self.collaborative_ = collaborative
        self._prepare()


def _share(count: np.ndarray, shrink: float) -> np.ndarray:
    """count / (count + shrink), with 0 where count is 0 (also when shrink is 0)."""
    total = count + shrink
    return np.divide(count, total, out=np.zeros_like(count), where=total > 0)
