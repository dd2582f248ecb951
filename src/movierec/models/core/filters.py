"""What may be recommended: genre, release-year and popularity filters over a model's movies.

A `Recommender` turns its ``genres``, ``exclude_genres``, ``years`` and ``min_ratings`` arguments into
one bool mask over its items here (`candidate_mask`); the genre and year facts come from the movie
catalog, gathered once per fitted model (`MovieFacts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from movierec.data.dataset import Catalog, Vocabulary
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int

__all__ = ["MovieFacts", "candidate_mask", "parse_years"]


class MovieFacts:
    """The catalog's facts about a model's movies, in the model's item order.

    Attributes:
        genres: items x genres CSR (1 where the movie has the genre).
        names: the genre names, one per column of ``genres``.
        years: release year per item, float64 with NaN where unknown.
    """

    def __init__(self, catalog: Catalog, items: Vocabulary) -> None:
        rows = catalog.rows(items.ids)
        self.genres: sp.csr_matrix = catalog.genre_matrix(items)
        self.names: list[str] = catalog.genres
        self.years: np.ndarray = rows["year"].astype("Float64").fillna(np.nan).to_numpy(dtype=np.float64)

    def genre_similarity(self, members: np.ndarray) -> np.ndarray:
        """Cosine of the genre sets of the movies ``members`` (indices), (n, n) float64."""
        genres = self.genres[members].toarray().astype(np.float64)
        norms = np.linalg.norm(genres, axis=1)
        unit = genres / np.where(norms > 0, norms, 1.0)[:, None]
        return unit @ unit.T


def candidate_mask(
    n_items: int,
    facts: Callable[[], MovieFacts],
    item_counts: Callable[[], np.ndarray],
    *,
    genres: Iterable[str] | None = None,
    exclude_genres: Iterable[str] | None = None,
    years: tuple[int | None, int | None] | None = None,
    min_ratings: int = 0,
) -> np.ndarray | None:
    """Bool mask over ``n_items`` movies: True where a movie passes every filter (None: no filter).

    ``facts`` and ``item_counts`` (training ratings per movie) are asked for only when a filter needs
    them, so a model without a catalog can still filter by popularity. Arguments as in
    `Recommender.candidate_mask`.

    Raises:
        ConfigError: an unknown genre name, an empty or reversed year range, a negative
            ``min_ratings``, or genre/year filters when ``facts`` cannot be had.
    """
    mask = np.ones(n_items, dtype=bool)
    active = False
    genres = list(genres or [])
    exclude_genres = list(exclude_genres or [])
    if genres or exclude_genres:
        known = facts()
        lookup = {name.lower(): j for j, name in enumerate(known.names)}

        def columns(names: list[str]) -> list[int]:
            unknown = [n for n in names if n.lower() not in lookup]
            if unknown:
                raise ConfigError(f"unknown genre {unknown[0]!r}; expected one of "
                                  f"{', '.join(known.names)}")
            return [lookup[n.lower()] for n in names]

        if genres:
            mask &= np.asarray(known.genres[:, columns(genres)].sum(axis=1)).ravel() > 0
        if exclude_genres:
            mask &= np.asarray(known.genres[:, columns(exclude_genres)].sum(axis=1)).ravel() == 0
        active = True
    if years is not None:
        first, last = years
        if first is not None and last is not None and first > last:
            raise ConfigError(f"years must run from earlier to later, got {first}..{last}")
        year = facts().years
        with np.errstate(invalid="ignore"):
            if first is not None:
                mask &= year >= first
            if last is not None:
                mask &= year <= last
        active = True
    if min_ratings:
        check_int("min_ratings", min_ratings, low=0)
        mask &= item_counts() >= min_ratings
        active = True
    return mask if active else None


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
