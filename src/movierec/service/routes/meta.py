"""Health and what model is served."""

from __future__ import annotations

import os
import socket
from typing import Any

from fastapi import APIRouter

from movierec import __version__
from movierec.service.deps import LoadedDep
from movierec.service.schemas import HealthOut, ModelOut

router = APIRouter(prefix="/api", tags=["service"])


@router.get("/health", response_model=HealthOut, summary="Liveness, and which model answers")
async def health(loaded: LoadedDep) -> dict[str, Any]:
    return {"status": "ok", "model": loaded.model.name, "version": __version__,
            "model_version": loaded.version, "replica": f"{socket.gethostname()}:{os.getpid()}"}


@router.get("/model", response_model=ModelOut, summary="The served model: data, metrics, when trained")
async def model_info(loaded: LoadedDep) -> dict[str, Any]:
    manifest = loaded.manifest
    data = manifest.get("data") or {}
    shape = manifest.get("shape") or {}
    metrics = {k: float(v) for k, v in (manifest.get("metrics") or {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
    history = [{k: v for k, v in row.items() if isinstance(v, int | float | str)}
               for row in (manifest.get("history") or []) if isinstance(row, dict)]
    return {
        "model": loaded.model.name,
        "model_version": loaded.version,
        "params": {k: v for k, v in loaded.model.get_params().items()
                   if v is None or isinstance(v, int | float | str | bool)},
        "predicts_ratings": loaded.model.predicts_ratings,
        "scale": tuple(loaded.model.scale_),
        "users": int(shape.get("users", len(loaded.model.users_))),
        "movies": int(shape.get("items", len(loaded.model.items_))),
        "ratings": int(shape.get("ratings", loaded.model.seen_.nnz)),
        "dataset": str(data["dataset"]) if data.get("dataset") is not None else None,
        "split": str(data["split"]) if data.get("split") is not None else None,
        "metrics": metrics,
        "trained": manifest.get("created"),
        "genres": loaded.genres,
        "history": history,
    }
