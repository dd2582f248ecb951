"""Profiles: people who are not in the training data. Their ratings persist in the store; their
recommendations are folded in live from those ratings (no retraining)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response

from movierec.service import model_api, views
from movierec.service.deps import (
    BearerDep,
    GenresQuery,
    KQuery,
    LoadedDep,
    ProfileDep,
    StateDep,
    YearsQuery,
    check_credentials,
    check_profile,
    check_profile_ratings,
    in_store,
    parse_filters,
)
from movierec.service.errors import ApiError
from movierec.service.schemas import (
    ErrorOut,
    ProfileCreatedOut,
    ProfileIn,
    ProfileOut,
    ProfileRatingOut,
    ProfileRecommendationsOut,
    RatingIn,
)
from movierec.service.state import Loaded

router = APIRouter(prefix="/api/profiles", tags=["profiles"])

_AUTH = {401: {"model": ErrorOut, "description": "no token"},
         404: {"model": ErrorOut, "description": "unknown profile or wrong token, or unknown movie"}}


def _raw(loaded: Loaded, text: str) -> Any | None:
    """The served model's raw id for a movie id as the store keeps it (text), or None for a movie
    it does not know (a model reloaded since: the rating stays in the store, left out here)."""
    raw = loaded.movie_texts.get(text)  # as the service writes it: str(raw)
    if raw is None:
        try:
            raw = loaded.movie_id(text)
        except KeyError:
            return None
    return raw


def _known_pairs(loaded: Loaded, stored: list[tuple[str, float]]) -> list[tuple[Any, float]]:
    """Stored (movie id text, rating) -> (raw id, rating) for the movies the served model knows;
    one dict lookup per rating on this hot path."""
    texts = loaded.movie_texts
    pairs = []
    for text, rating in stored:
        raw = texts.get(text)
        if raw is None and (raw := _raw(loaded, text)) is None:
            continue
        pairs.append((raw, rating))
    return pairs


def _genre_profile(loaded: Loaded, pairs: list[tuple[Any, float, float]]) -> list[dict[str, Any]]:
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, float] = defaultdict(float)
    for raw, rating, _ in pairs:
        for genre in loaded.movie(raw)["genres"]:
            counts[genre] += 1
            sums[genre] += rating
    rows = [{"genre": g, "count": counts[g], "mean_rating": round(sums[g] / counts[g], 4)} for g in counts]
    return sorted(rows, key=lambda row: (-row["count"], row["genre"]))


@router.post("", response_model=ProfileCreatedOut, status_code=201,
             summary="Create a profile; the answer holds its secret token (shown once)")
async def create(state: StateDep, body: Annotated[ProfileIn | None, Body()] = None) -> dict[str, Any]:
    name = body.name if body is not None else None
    profile, token = await in_store(state, state.store.create_profile, name)
    return {"id": profile.id, "token": token, "name": profile.name, "created": profile.created}


@router.get("/{profile_id}", response_model=ProfileOut, responses=_AUTH,
            summary="The profile's ratings and genre profile")
def read(profile: ProfileDep, state: StateDep, loaded: LoadedDep) -> dict[str, Any]:
    pairs = [(raw, rating, updated) for text, rating, updated in state.store.ratings(profile.id)
             if (raw := _raw(loaded, text)) is not None]
    return {"id": profile.id, "name": profile.name, "created": profile.created,
            "ratings": [{"movie": loaded.movie(raw), "rating": rating, "updated": updated}
                        for raw, rating, updated in pairs],
            "genre_profile": _genre_profile(loaded, pairs)}


@router.delete("/{profile_id}", status_code=204, responses=_AUTH,
               summary="Delete the profile and its ratings")
async def delete(profile_id: str, state: StateDep, credentials: BearerDep) -> Response:
    profile = await in_store(state, check_profile, state, profile_id, credentials)
    await in_store(state, state.store.delete_profile, profile.id)
    return Response(status_code=204)


def _check_rating(loaded: Loaded, value: float) -> None:
    low, high = loaded.model.scale_
    if not low <= value <= high:
        raise ApiError(422, f"rating must lie in {low:g}..{high:g}, got {value:g}")


@router.put("/{profile_id}/ratings/{movie_id}", response_model=ProfileRatingOut, responses=_AUTH,
            summary="Add or change a rating")
async def put_rating(request: Request, profile_id: str, movie_id: str, body: RatingIn, credentials: BearerDep
                     ) -> Response:
    state = request.app.state.service
    loaded = state.loaded
    check_credentials(profile_id, credentials)
    raw = loaded.movie_id(movie_id)
    _check_rating(loaded, body.rating)
    limit = state.settings.max_profile_ratings
    # the token is checked in the write itself: one statement on the hot path
    updated = await in_store(state, state.store.set_rating, profile_id, str(raw), body.rating, limit=limit,
                             token=credentials.credentials)
    if updated is None:  # a wrong token (404) or a full profile (422)?
        await in_store(state, check_profile, state, profile_id, credentials)
        raise ApiError(422, f"a profile holds at most {limit} ratings")
    # serialized like the recommendations: validating this answer was a fifth of a rating's time
    return views.json_response(views.dump({"movie": loaded.movie(raw), "rating": body.rating,
                                           "updated": updated}))


@router.delete("/{profile_id}/ratings/{movie_id}", status_code=204, responses=_AUTH,
               summary="Remove a rating")
async def delete_rating(profile_id: str, movie_id: str, state: StateDep, credentials: BearerDep,
                        loaded: LoadedDep) -> Response:
    profile = await in_store(state, check_profile, state, profile_id, credentials)
    raw = loaded.movie_id(movie_id)
    if not await in_store(state, state.store.delete_rating, profile.id, str(raw)):
        raise ApiError(404, f"this profile has not rated movie {movie_id}")
    return Response(status_code=204)


@router.get("/{profile_id}/recommendations", response_model=ProfileRecommendationsOut, responses=_AUTH,
            summary="Live recommendations from the profile's ratings (fold-in), with why")
async def recommendations(request: Request, profile_id: str, credentials: BearerDep, k: KQuery = 10,
                          genres: GenresQuery = None, years: YearsQuery = None, explain: bool = True
                          ) -> Response:
    state = request.app.state.service
    loaded = state.loaded
    filters = parse_filters(loaded, state.settings.max_k, k, genres, years)

    profile, stored = await in_store(state, check_profile_ratings, state, profile_id, credentials)
    pairs = _known_pairs(loaded, stored)
    # the answer depends only on the ratings, so a changed rating is a new key
    key = ("profile", profile.id, tuple(pairs), filters.key(), explain)
    answer = loaded.cache.get(key)
    if answer is None:
        picks = model_api.recommend_pairs(loaded.model, pairs, filters.k, genres=filters.genres,
                                          years=filters.years, explain=explain)
        answer = views.dump({
            "profile": profile.id, "rated": len(pairs), "k": filters.k, "filters": filters.public(),
            "recommendations": views.recommendations(loaded, picks, dict(pairs))})
        loaded.cache.put(key, answer)
    return views.json_response(answer)
