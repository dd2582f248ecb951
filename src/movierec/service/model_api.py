"""The model calls the service makes, in one place.

Routes never call a `Recommender` directly: they call these functions, so a change in the model
interface is a change here only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from movierec.data.dataset import Catalog
from movierec.models.base import Recommender

__all__ = ["explain_pairs", "explain_user", "recommend_pairs", "recommend_user", "similar"]

Pairs = Sequence[tuple[Any, float]]
Years = tuple[int, int] | None


def recommend_user(model: Recommender, user: Any, k: int, *, genres: list[str] | None = None,
                   years: Years = None) -> pd.DataFrame:
    """Top-``k`` for a known user: frame ``item`` (raw id), ``score``. Raises UnknownIdError."""
    if not genres and years is None:
        return model.recommend(user, k)
    return _filtered(model, lambda n: model.recommend(user, n), k, genres, years)


def recommend_pairs(model: Recommender, pairs: Pairs, k: int, *, genres: list[str] | None = None,
                    years: Years = None) -> pd.DataFrame:
    """Top-``k`` for someone described by (movie, rating) pairs (fold-in)."""
    if not genres and years is None:
        return model.recommend_for_ratings(pairs, k)
    return _filtered(model, lambda n: model.recommend_for_ratings(pairs, n), k, genres, years)


def similar(model: Recommender, movie: Any, k: int) -> pd.DataFrame:
    """The ``k`` movies most similar to ``movie``: frame ``item``, ``score``. Raises UnknownIdError."""
    if hasattr(model, "similar_items"):
        return model.similar_items(movie, k)
    index = model.items_.index(movie)
    vectors = _item_vectors(model)
    sims = vectors @ vectors[index]
    sims[index] = -np.inf
    order = np.argsort(-sims, kind="stable")[:k]
    return pd.DataFrame({"item": model.items_.ids[order], "score": sims[order].astype(float)})


def explain_user(model: Recommender, user: Any, movies: Sequence[Any], n: int = 3
                 ) -> list[pd.DataFrame]:
    """For each of ``movies``, the known user's rated movies that pushed it up most: frames of
    ``item``, ``rating``, ``contribution`` (at most ``n`` rows each)."""
    if hasattr(model, "explain"):
        return [model.explain(user, movie, n=n) for movie in movies]
    history = model.user_history(user)
    return _explain_fallback(model, list(zip(history["item"], history["rating"], strict=True)),
                             movies, n)


def explain_pairs(model: Recommender, pairs: Pairs, movies: Sequence[Any], n: int = 3
                  ) -> list[pd.DataFrame]:
    """As `explain_user` for someone described by (movie, rating) pairs."""
    if hasattr(model, "explain_for_ratings"):
        return [model.explain_for_ratings(pairs, movie, n=n) for movie in movies]
    return _explain_fallback(model, list(pairs), movies, n)


# -- stand-ins until the model interface grows these (then only the branches above remain) --------

def attach_catalog(model: Recommender, catalog: Catalog | None) -> None:
    """Tell the filters which catalog (genres, years) belongs to ``model``."""
    if catalog is not None and getattr(model, "catalog_", None) is None:
        model.catalog_ = catalog  # type: ignore[attr-defined]


def _filtered(model: Recommender, ranked: Any, k: int, genres: list[str] | None, years: Years
              ) -> pd.DataFrame:
    catalog: Catalog | None = getattr(model, "catalog_", None)
    frame = ranked(len(model.items_))
    if catalog is None:
        return frame.head(k)
    rows = catalog.rows(frame["item"].to_numpy())
    keep = np.ones(len(frame), dtype=bool)
    if genres:
        wanted = set(genres)
        keep &= np.array([bool(wanted.intersection(g)) for g in rows["genres"]], dtype=bool)
    if years is not None:
        year = rows["year"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        keep &= (year >= years[0]) & (year <= years[1])
    return frame[keep].head(k).reset_index(drop=True)


def _item_vectors(model: Recommender) -> np.ndarray:
    vectors = getattr(model, "item_factors_", None)
    if vectors is None:  # co-occurrence columns
        vectors = (model.seen_.T.tocsr() > 0).astype(np.float32).toarray()
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _explain_fallback(model: Recommender, pairs: list[tuple[Any, float]], movies: Sequence[Any], n: int
                      ) -> list[pd.DataFrame]:
    empty = pd.DataFrame({"item": [], "rating": [], "contribution": []})
    if not pairs:
        return [empty for _ in movies]
    rated = np.asarray([p[0] for p in pairs])
    values = np.asarray([float(p[1]) for p in pairs])
    index = model.items_.indices(rated, missing="mask")
    known = index >= 0
    rated, values, index = rated[known], values[known], index[known]
    target = model.items_.indices(np.asarray(list(movies)), missing="mask")
    vectors = _item_vectors(model)
    centred = values - values.mean() if len(values) > 1 else values - np.mean(model.scale_)
    out = []
    for row in range(len(target)):
        if target[row] < 0 or not len(index):
            out.append(empty)
            continue
        contribution = (vectors[index] @ vectors[target[row]]) * centred
        order = np.argsort(-contribution, kind="stable")[:n]
        order = order[contribution[order] > 0]
        out.append(pd.DataFrame({"item": rated[order], "rating": values[order],
                                 "contribution": contribution[order]}))
    return out
