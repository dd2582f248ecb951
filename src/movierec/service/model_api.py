"""The model calls the service makes, in one place: routes never call a `Recommender` directly, so
a change in the model interface is a change here only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from movierec.models.core.recommender import Picks, Recommender

__all__ = ["recommend_pairs", "recommend_user", "similar"]

Pairs = Sequence[tuple[Any, float]]
Years = tuple[int, int] | None

#: rated movies named per recommendation ("because you rated ...").
BECAUSE = 3


def recommend_user(model: Recommender, user: Any, k: int, *, genres: list[str] | None = None,
                   years: Years = None, explain: bool = True) -> Picks:
    """Top-``k`` for a known user: raw ids, scores and, with ``explain``, ``because`` (raw ids of
    the user's rated movies that contributed most).

    Raises:
        UnknownIdError: an unknown user. ConfigError: a bad filter.
    """
    return model.picks(user, k, genres=genres, years=years, explain=BECAUSE if explain else 0)


def recommend_pairs(model: Recommender, pairs: Pairs, k: int, *, genres: list[str] | None = None,
                    years: Years = None, explain: bool = True) -> Picks:
    """As `recommend_user` for someone described by (movie, rating) pairs (fold-in)."""
    return model.picks_for_ratings(pairs, k, genres=genres, years=years, explain=BECAUSE if explain else 0)


def similar(model: Recommender, movie: Any, k: int) -> pd.DataFrame:
    """The ``k`` movies most similar to ``movie``: frame ``item``, ``score``. Raises UnknownIdError."""
    return model.similar_items(movie, k)
