"""Admin: retrain in the background (with progress), reload a model. Behind the admin token.

Both act on every replica: the new model is published in the store and each replica switches to it
within its ``sync_interval``; a job's progress is in the store, so any replica answers for it."""

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
             summary="Refit the served model on its training ratings in the background; every replica "
                     "serves it when done")
def retrain(state: StateDep, body: Annotated[RetrainIn | None, Body()] = None) -> dict[str, Any]:
    try:
        job = state.start_retrain(dict(body.params) if body is not None else {})
    except RuntimeError as exc:
        raise ApiError(409, str(exc)) from None
    except TypeError as exc:  # an unknown hyperparameter name
        raise ApiError(422, f"params: {exc}") from None
    return job


@router.get("/jobs", response_model=list[JobOut], summary="Retrain jobs, newest first")
def jobs(state: StateDep) -> list[dict[str, Any]]:
    return state.store.jobs(stale_after=state.settings.job_stale_after)


@router.get("/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorOut}},
            summary="One retrain's progress")
def job(job_id: str, state: StateDep) -> dict[str, Any]:
    found = state.store.job(job_id, stale_after=state.settings.job_stale_after)
    if found is None:
        raise ApiError(404, f"no retrain job {job_id!r}")
    return found


@router.post("/reload", response_model=ReloadOut, responses={422: {"model": ErrorOut}},
             summary="Load a model folder (default: the one this replica started with) and serve it on "
                     "every replica")
def reload(state: StateDep, body: Annotated[ReloadIn | None, Body()] = None) -> dict[str, Any]:
    folder = Path(body.model_dir) if body is not None and body.model_dir else state.settings.model_dir
    if folder is None:
        raise ApiError(422, "model_dir is needed: this replica started without a model folder")
    try:
        loaded = state.reload(folder)
    except MovieRecError as exc:
        raise ApiError(422, f"cannot load {folder}: {exc}") from None
    except (OSError, ValueError) as exc:  # unreadable, or a path the OS cannot name (NUL bytes)
        raise ApiError(422, f"cannot load {folder}: {getattr(exc, 'strerror', None) or exc}") from None
    return {"model": loaded.model.name, "model_dir": str(loaded.model_dir), "model_version": loaded.version,
            "movies": len(loaded.model.items_), "users": len(loaded.model.users_)}
