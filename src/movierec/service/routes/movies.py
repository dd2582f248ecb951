"""Movie search, details and similar movies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from movierec.service import model_api, views
from movierec.service.deps import LoadedDep
from movierec.service.errors import ApiError
from movierec.service.schemas import ErrorOut, MovieDetailOut, MovieListOut, SimilarOut

router = APIRouter(prefix="/api/movies", tags=["movies"])

_404 = {404: {"model": ErrorOut, "description": "unknown movie"}}


@router.get("", response_model=MovieListOut, summary="Search titles (typo-tolerant); no query: most rated")
async def search(
    loaded: LoadedDep,
    q: Annotated[str | None, Query(max_length=200, description="words of the title; a 4-digit word may "
                                                              "be the year")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    if q is None or not q.strip():
        return {"query": q, "movies": [loaded.movie(i) for i in loaded.popular[:limit]]}
    return {"query": q, "movies": loaded.search(q, limit)}


@router.get("/{movie_id}", response_model=MovieDetailOut, responses=_404, summary="One movie")
async def movie(movie_id: str, loaded: LoadedDep) -> dict[str, Any]:
    return loaded.detail(loaded.movie_id(movie_id))


@router.get("/{movie_id}/similar", response_model=SimilarOut, responses=_404,
            summary="Movies most like this one, by what the model learned")
async def similar(movie_id: str, loaded: LoadedDep,
            k: Annotated[int, Query(ge=1, le=10_000)] = 10) -> dict[str, Any]:
    raw = loaded.movie_id(movie_id)
    if raw not in loaded.model.items_:
        raise ApiError(404, f"movie {movie_id} has no ratings in the training data, so nothing is "
                            "known to be like it")
    frame = model_api.similar(loaded.model, raw, min(k, len(loaded.model.items_)))
    return {"movie": loaded.movie(raw), "similar": views.scored(loaded, frame)}
