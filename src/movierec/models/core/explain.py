"""Explanations: from a (targets x rated movies) contribution block to the rated movies behind each
pick, strongest first ("because you rated ..."). The contributions themselves come from the model
(`Recommender._contribution_matrix`): its own attribution, or item similarity times rating."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["because", "explanation", "strongest"]


def because(contributions: np.ndarray, rated_ids: np.ndarray, n: int) -> list[list[Any]]:
    """Per row of ``contributions`` (targets x rated), up to ``n`` of ``rated_ids`` (raw ids, one per
    column) with the largest positive contributions, strongest first."""
    order, positive = strongest(contributions, n)
    ids = rated_ids[order]
    return [row[keep].tolist() for row, keep in zip(ids, positive, strict=True)]


def explanation(contributions: np.ndarray, rated_ids: np.ndarray, ratings: np.ndarray, n: int
                ) -> pd.DataFrame:
    """One target's ``contributions`` (one per rated movie) as a frame of up to ``n`` rated movies:
    ``item`` (raw id), ``rating`` and ``contribution``, positive ones only, strongest first."""
    order = np.argsort(-contributions, kind="stable")
    order = order[contributions[order] > 0][:n]
    return pd.DataFrame({"item": rated_ids[order], "rating": ratings[order],
                         "contribution": contributions[order]})

#: `strongest` sorts whole rows up to this many rated movies, partitions them beyond.
_SORT_ROWS_UP_TO = 256


def strongest(contributions: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``contributions`` (targets x rated), the positions of its ``n`` largest values,
    largest first, ties to the lower position, and whether each is positive (a movie that pulled
    the score down explains nothing). Returns (order, positive), both (targets, min(n, rated))."""
    if contributions.shape[1] <= _SORT_ROWS_UP_TO:  # a few ratings: one stable sort of the block
        order = np.argsort(-contributions, axis=1, kind="stable")[:, :n]
    else:  # a heavy user: partition each row rather than sort thousands of columns
        order = np.stack([_largest(row, n) for row in contributions])
    return order, np.take_along_axis(contributions, order, axis=1) > 0


def _largest(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` largest values, largest first, ties to the lower position: what a stable
    sort of ``-values`` gives, without sorting a long row (a heavy user's thousands of movies)."""
    if len(values) > n > 0:
        threshold = np.partition(values, len(values) - n)[len(values) - n]
        candidates = np.flatnonzero(values >= threshold)  # ties at the threshold all compete
    else:
        candidates = np.arange(len(values))
    return candidates[np.lexsort((candidates, -values[candidates]))][:n]
