"""Users of the training data (MovieLens users): history and recommendations.

The handlers are ``async def``: they only compute (a millisecond or two, no I/O), which is cheaper
inline on the event loop than through the thread pool (the GIL allows one at a time either way).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from movierec.service import model_api, views
from movierec.service.deps import GenresQuery, KQuery, LoadedDep, YearsQuery, parse_filters
from movierec.service.schemas import ErrorOut, UserListOut, UserOut, UserRecommendationsOut

router = APIRouter(prefix="/api/users", tags=["users"])

_404 = {404: {"model": ErrorOut, "description": "unknown user"}}


@router.get("", response_model=UserListOut, summary="How many users, and the first few ids")
async def users(loaded: LoadedDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
    ids = loaded.model.users_.ids
    return {"users": len(ids), "sample": ids[:limit].tolist()}


@router.get("/{user_id}", response_model=UserOut, responses=_404, summary="A user's training ratings")
async def user(user_id: str, loaded: LoadedDep,
         limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
    raw = loaded.user_id(user_id)
    history = loaded.model.user_history(raw)
    rows = [{"movie": loaded.movie(item), "rating": float(rating)}
            for item, rating in zip(history["item"].tolist()[:limit], history["rating"].tolist()[:limit],
                                    strict=True)]
    return {"user": raw, "ratings": len(history), "history": rows}


@router.get("/{user_id}/recommendations", response_model=UserRecommendationsOut, responses=_404,
            summary="Top-k for a user of the training data, with why")
async def recommendations(request: Request, user_id: str, k: KQuery = 10, genres: GenresQuery = None,
                          years: YearsQuery = None,
                          explain: Annotated[bool, Query(description="add 'because you rated ...'")] = True
                          ) -> Response:
    state = request.app.state.service
    loaded = state.loaded
    filters = parse_filters(loaded, state.settings.max_k, k, genres, years)
    raw = loaded.user_id(user_id)
    key = ("user", raw, filters.key(), explain)
    answer = loaded.cache.get(key)
    if answer is None:
        picks = model_api.recommend_user(loaded.model, raw, filters.k, genres=filters.genres,
                                         years=filters.years, explain=explain)
        rated: dict[Any, float] = {}
        if explain:
            history = loaded.model.user_history(raw)
            rated = dict(zip(history["item"].tolist(), history["rating"].tolist(), strict=True))
        answer = views.dump({
            "user": raw, "k": filters.k, "filters": filters.public(),
            "recommendations": views.recommendations(loaded, picks, rated)})
        loaded.cache.put(key, answer)
    return views.json_response(answer)
