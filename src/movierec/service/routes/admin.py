"""Admin: retrain in the background (with progress), reload a model. Behind the admin token."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from movierec.errors import MovieRecError
from movierec.service.deps import StateDep, admin
from movierec.service.errors import ApiError
from movierec.service.schemas import ErrorOut, JobOut, ReloadIn, ReloadOut, RetrainIn

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(admin)],
                   responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})


@router.post("/retrain", response_model=JobOut, status_code=202,
             summary="Refit the served model on its training ratings in the background; swap when done")
def retrain(state: StateDep, body: Annotated[RetrainIn | None, Body()] = None) -> dict[str, Any]:
    try:
        job = state.start_retrain(dict(body.params) if body is not None else {})
    except RuntimeError as exc:
        raise ApiError(409, str(exc)) from None
    except TypeError as exc:  # an unknown hyperparameter name
        raise ApiError(422, f"params: {exc}") from None
    return job.public()


@router.get("/jobs", response_model=list[JobOut], summary="Retrain jobs, newest first")
def jobs(state: StateDep) -> list[dict[str, Any]]:
    return [job.public() for job in sorted(state.jobs.values(), key=lambda j: -j.started)]


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}},
            summary="One retrain's progress")
def job(job_id: str, state: StateDep) -> dict[str, Any]:
    found = state.jobs.get(job_id)
    if found is None:
        raise ApiError(404, f"no retrain job {job_id!r}")
    return found.public()


@router.post("/reload", response_model=ReloadOut, responses={422: {"model": ErrorOut}},
             summary="Load a model folder (default: the one the service started with) and serve it")
def reload(state: StateDep, body: Annotated[ReloadIn | None, Body()] = None) -> dict[str, Any]:
    folder = Path(body.model_dir) if body is not None and body.model_dir else state.settings.model_dir
    try:
        loaded = state.reload(folder)
    except MovieRecError as exc:
        raise ApiError(422, f"cannot load {folder}: {exc}") from None
    except (OSError, ValueError) as exc:  # unreadable, or a path the OS cannot name (NUL bytes)
        raise ApiError(422, f"cannot load {folder}: {getattr(exc, 'strerror', None) or exc}") from None
    return {"model": loaded.model.name, "model_dir": str(folder), "movies": len(loaded.model.items_),
            "users": len(loaded.model.users_)}
