"""Model answers -> plain dicts shaped like the response models, and JSON bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
from fastapi.responses import Response

from movierec.models.core.recommender import Picks
from movierec.service.state import Loaded

__all__ = ["dump", "json_response", "recommendations", "scored"]


def dump(payload: dict[str, Any]) -> bytes:
    """``payload`` serialized without validation, for the hot endpoints: their payloads are built
    here from plain ints, floats and strings in the response models' shapes (an API test checks
    them against a round trip through those models), and validating a nested answer of k movies
    cost more than scoring it. orjson writes the same bytes as ``json.dumps`` with compact
    separators and ``ensure_ascii=False``, ten times faster (it was a twentieth of the server's time
    under load). It would write NaN as null, but no NaN reaches here: scores come from `top_k`,
    which never picks NaN, and ratings were checked against the scale when stored."""
    return orjson.dumps(payload)


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


def scored(loaded: Loaded, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``item``, ``score`` rows -> [{movie, score}]."""
    movie = loaded.movie
    return [{"movie": movie(item), "score": round(float(score), 6)}
            for item, score in zip(frame["item"].tolist(), frame["score"].tolist(), strict=True)]


def recommendations(loaded: Loaded, picks: Picks, rated: dict[Any, float]) -> list[dict[str, Any]]:
    """Picks -> [{movie, score, because: [{movie, rating}]}], ratings looked up in ``rated``
    (raw id -> rating); ``because`` is empty without explanations."""
    movie = loaded.movie
    reasons = picks.because if picks.because is not None else [()] * len(picks.items)
    rows = zip(picks.items.tolist(), picks.scores.tolist(), reasons, strict=True)
    return [{"movie": movie(item), "score": round(float(score), 6),
             "because": [{"movie": movie(raw), "rating": float(rated[raw])} for raw in because
                         if raw in rated]}
            for item, score, because in rows]
