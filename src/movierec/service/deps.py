"""Dependencies the routes share (tests override `get_state` to inject a model).

Those that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in its thread pool,
and on a 2-core machine three pool hops per request cost more than the model's work.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from movierec.errors import ConfigError
from movierec.models.core.filters import parse_years
from movierec.service.errors import ApiError
from movierec.service.state import Loaded, ServiceState
from movierec.service.store import Profile

__all__ = ["BearerDep", "Filters", "LoadedDep", "StateDep", "admin", "check_credentials", "check_profile",
           "check_profile_ratings", "get_state", "in_store", "parse_filters", "profile_auth"]

T = TypeVar("T")


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_loaded(state: StateDep) -> Loaded:
    return state.loaded


LoadedDep = Annotated[Loaded, Depends(get_loaded)]

_bearer = HTTPBearer(auto_error=False, description="the profile's token from POST /api/profiles")
_admin_header = APIKeyHeader(name="X-Admin-Token", auto_error=False,
                             description="the admin token from MOVIEREC_ADMIN_TOKEN")


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def profile_auth(profile_id: str, state: StateDep, credentials: BearerDep) -> Profile:
    """The profile named in the path, if the bearer token is its token."""
    return check_profile(state, profile_id, credentials)


def check_credentials(profile_id: str, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Raises ApiError 401 without a token, 404 for an id no profile can have."""
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "this profile needs its token: send `Authorization: Bearer <token>`")
    if len(profile_id) > 64:
        raise ApiError(404, "no profile with this id and token")


def check_profile(state: ServiceState, profile_id: str, credentials: HTTPAuthorizationCredentials | None
                  ) -> Profile:
    """`profile_auth` as a plain function. Raises ApiError 401 (no token) or 404."""
    check_credentials(profile_id, credentials)
    profile = state.store.authenticate(profile_id, credentials.credentials)
    if profile is None:  # unknown id and wrong token look the same: ids cannot be probed
        raise ApiError(404, "no profile with this id and token")
    return profile


def check_profile_ratings(state: ServiceState, profile_id: str,
                          credentials: HTTPAuthorizationCredentials | None
                          ) -> tuple[Profile, list[tuple[str, float]]]:
    """`check_profile` and the profile's (movie id text, rating) pairs (`Store.authenticated_ratings`).
    Raises ApiError 401 or 404."""
    check_credentials(profile_id, credentials)
    found = state.store.authenticated_ratings(profile_id, credentials.credentials)
    if found is None:
        raise ApiError(404, "no profile with this id and token")
    return found


async def in_store(state: ServiceState, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a store function: inline on the event loop for SQLite in a one-process service, through the
    thread pool otherwise.

    A local SQLite call takes ~0.1-0.3 ms: WAL readers never wait, and every route writes through
    here, so this process's writes come one at a time from the loop and never wait for each other. A
    thread-pool hop costs more than that, and dozens of pool threads fighting for the GIL delayed
    writes by hundreds of milliseconds under load. With several worker processes on one SQLite file
    another process may hold the write lock, and waiting for it would stall the loop, so the calls go
    to threads (`ServiceState.inline_store`); so do a network database's round trips, at most
    `STORE_THREADS` at once (more only fight over the GIL).
    """
    if state.inline_store:
        return function(*args, **kwargs)
    return await anyio.to_thread.run_sync(functools.partial(function, *args, **kwargs),
                                          limiter=state.store_limiter)


ProfileDep = Annotated[Profile, Depends(profile_auth)]


async def admin(state: StateDep, token: Annotated[str | None, Depends(_admin_header)]) -> None:
    expected = state.settings.admin_token
    if expected is None:
        raise ApiError(403, "admin endpoints are disabled: start the service with MOVIEREC_ADMIN_TOKEN set")
    if not token:
        raise ApiError(401, "admin endpoints need the X-Admin-Token header")
    # digests of equal length whatever was sent: the comparison's time tells nothing about the token
    presented, wanted = (hashlib.sha256(text.encode()).digest() for text in (token, expected))
    if not hmac.compare_digest(presented, wanted):
        raise ApiError(403, "wrong admin token")


class Filters:
    """k, genres (comma-separated, any of) and years (``1990-1999`` or ``1995``) from the query."""

    def __init__(self, k: int, genres: list[str] | None, years: tuple[int, int] | None) -> None:
        self.k, self.genres, self.years = k, genres, years

    def public(self) -> dict[str, object]:
        return {"genres": self.genres, "years": self.years}

    def key(self) -> tuple[object, ...]:
        """What makes two requests' answers equal (for the answer cache)."""
        return (self.k, tuple(self.genres or ()), self.years)


KQuery = Annotated[int, Query(ge=1, le=10_000, description="how many movies (at most max_k)")]
GenresQuery = Annotated[str | None, Query(max_length=500, description="comma-separated genres, any of")]
YearsQuery = Annotated[str | None, Query(max_length=20, description="`1990-1999` or `1995`, inclusive")]


def parse_filters(loaded: Loaded, max_k: int, k: int, genres: str | None, years: str | None) -> Filters:
    """The filters of a recommendation request (a plain function, not a dependency: the hot
    endpoints take their query parameters themselves, as each resolved dependency costs ~0.1 ms).

    Raises:
        ApiError: 422 for a k over ``max_k``, an unknown genre or a malformed year range.
    """
    if k > max_k:
        raise ApiError(422, f"k must be an int between 1 and {max_k}, got {k}")
    wanted = None
    if genres is not None and genres.strip():
        known = {g.lower(): g for g in loaded.genres}
        wanted = []
        for name in (part.strip() for part in genres.split(",")):
            if not name:
                continue
            if name.lower() not in known:
                raise ApiError(422, f"genres must be names from GET /api/model (e.g. "
                                    f"{', '.join(loaded.genres[:3])}), got {name!r}")
            wanted.append(known[name.lower()])
        wanted = wanted or None
    span = None
    if years is not None and years.strip():
        span = _years(years)
    return Filters(k, wanted, span)


def _years(text: str) -> tuple[int, int]:
    try:
        low, high = parse_years(text)
    except ConfigError:
        low = high = None
    if low is None or high is None:  # the API takes closed ranges only
        raise ApiError(422, f"years must be `FROM-TO` or `YEAR` (e.g. 1990-1999), got {text!r}")
    if not (0 <= low <= 9999 and 0 <= high <= 9999) or low > high:
        raise ApiError(422, f"years must be FROM-TO with 0 <= FROM <= TO <= 9999, got {text!r}")
    return low, high

