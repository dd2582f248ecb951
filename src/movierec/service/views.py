"""Frames from the model -> plain dicts shaped like the response models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from movierec.service.state import Loaded

__all__ = ["because", "recommendations", "scored"]


def _score(value: Any) -> float:
    return round(float(value), 6)


def scored(loaded: Loaded, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``item``, ``score`` rows -> [{movie, score}]."""
    movie = loaded.movie
    return [{"movie": movie(item), "score": _score(score)}
            for item, score in zip(frame["item"].tolist(), frame["score"].tolist(), strict=True)]


def because(loaded: Loaded, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``item``, ``rating``, ``contribution`` rows -> [{movie, rating, contribution}]."""
    movie = loaded.movie
    return [{"movie": movie(item), "rating": float(rating), "contribution": _score(value)}
            for item, rating, value in zip(frame["item"].tolist(), frame["rating"].tolist(),
                                           frame["contribution"].tolist(), strict=True)]


def recommendations(loaded: Loaded, frame: pd.DataFrame, explanations: Sequence[pd.DataFrame] | None
                    ) -> list[dict[str, Any]]:
    rows = scored(loaded, frame)
    for position, row in enumerate(rows):
        row["because"] = because(loaded, explanations[position]) if explanations is not None else []
    return rows
