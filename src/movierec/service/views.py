"""Frames from the model -> plain dicts shaped like the response models."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi.responses import Response
from pydantic import BaseModel

from movierec.service.state import Loaded

__all__ = ["json_response", "recommendations", "scored", "to_json"]


def to_json(model: type[BaseModel], payload: dict[str, Any]) -> bytes:
    """``payload`` validated by the endpoint's response model and serialized: what FastAPI would
    send, done once so a cached answer is sent as it is."""
    return model.model_validate(payload).model_dump_json().encode()


def json_response(body: bytes) -> Response:
    return Response(content=body, media_type="application/json")


def scored(loaded: Loaded, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``item``, ``score`` rows -> [{movie, score}]."""
    movie = loaded.movie
    return [{"movie": movie(item), "score": round(float(score), 6)}
            for item, score in zip(frame["item"].tolist(), frame["score"].tolist(), strict=True)]


def recommendations(loaded: Loaded, frame: pd.DataFrame, rated: dict[Any, float]) -> list[dict[str, Any]]:
    """Scored rows with ``because`` (raw ids, if the frame has the column) -> [{movie, score,
    because: [{movie, rating}]}], ratings looked up in ``rated`` (raw id -> rating)."""
    rows = scored(loaded, frame)
    reasons = frame["because"].tolist() if "because" in frame else [[] for _ in rows]
    movie = loaded.movie
    for row, because in zip(rows, reasons, strict=True):
        row["because"] = [{"movie": movie(item), "rating": float(rated[item])} for item in because
                          if item in rated]
    return rows
