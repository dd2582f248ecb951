"""What every request passes before a route sees it: the query-string limit, the rate limits, and the
security headers every answer carries.

`Guard` is pure ASGI (one function call per request, no task per request) and keeps its token
buckets in this process's memory: the limits hold per replica, so N worker processes allow N times
as much in total. Three buckets, each refusing with 429 and ``Retry-After`` (whole seconds until a
token is back):

- per client address, every request (``requests_per_second``, bursts of ``request_burst``);
- per client address, profile creations (``profiles_per_hour``, all of them at once at most);
- per profile, writes (PUT and DELETE under ``/api/profiles/{id}``): keyed by the profile id and the
  token presented, so someone without the token cannot use up the owner's writes (their own
  requests, which change nothing, still count against their address).

The client address is what uvicorn reports: behind a proxy it is the proxy's, unless uvicorn trusts
the proxy's ``X-Forwarded-For`` (``--forwarded-allow-ips``; by default it trusts 127.0.0.1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from movierec.service import errors
from movierec.service.settings import Settings

__all__ = ["PAGE_CSP", "Buckets", "Guard"]

#: The web page: its own script, style and data only; no inline script or style, no frames, no plugins.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
#: JSON answers: nothing to load, nothing to frame.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: FastAPI's interactive documentation (/docs, /redoc): Swagger UI and ReDoc from their CDN, with the
#: inline start-up script FastAPI writes into those pages.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")

_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
_API_HEADERS = [*_COMMON, (b"content-security-policy", API_CSP.encode()), (b"cache-control", b"no-store")]
_PAGE_HEADERS = [*_COMMON, (b"content-security-policy", PAGE_CSP.encode())]
_DOCS_HEADERS = [*_COMMON, (b"content-security-policy", DOCS_CSP.encode())]


def _headers_for(path: str) -> list[tuple[bytes, bytes]]:
    if path.startswith("/api/") or path in ("/openapi.json", "/metrics"):
        return _API_HEADERS  # answers hold tokens and ratings: never cached on the way
    if path.startswith(("/docs", "/redoc")):
        return _DOCS_HEADERS
    return _PAGE_HEADERS


class Buckets:
    """Token buckets by key: each holds up to ``burst`` tokens and gains ``rate`` a second.

    Memory stays bounded: past ``max_keys`` keys, buckets that have filled up again (idle clients)
    are dropped, and if that is not enough (a flood from many keys) the oldest half goes, which only
    ever forgives.
    """

    def __init__(self, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = float(rate), float(burst), max_keys
        self._buckets: dict[Hashable, list[float]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: Hashable, now: float) -> float:
        """Take one token for ``key`` at time ``now`` (seconds): 0.0 when granted, else the seconds
        until one will be there (nothing taken)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            if self.burst < 1:
                return 1.0 / self.rate
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [key for key, (tokens, then) in self._buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys // 2:
            for key in list(self._buckets)[: len(self._buckets) - self.max_keys // 2]:
                del self._buckets[key]


_WRITES = frozenset({"PUT", "DELETE", "POST", "PATCH"})
_PROFILES = "/api/profiles"


class Guard:
    """Refuse over-long query strings (414) and requests over a rate limit (429 with Retry-After);
    add the security headers to every answer. See the module docstring.

    ``clock`` gives seconds (monotonic); tests pass their own.
    """

    def __init__(self, app: ASGIApp, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.clock = clock
        self.max_query = settings.max_query_bytes
        self.per_address = (Buckets(settings.requests_per_second, settings.request_burst)
                            if settings.requests_per_second > 0 else None)
        self.creations = (Buckets(settings.profiles_per_hour / 3600.0, settings.profiles_per_hour)
                          if settings.profiles_per_hour > 0 else None)
        self.profile_writes = (Buckets(settings.profile_writes_per_second,
                                       max(1.0, 2 * settings.profile_writes_per_second))
                               if settings.profile_writes_per_second > 0 else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if len(query) > self.max_query:
            await self._refuse(send, 414, f"the query string must be at most {self.max_query} bytes, "
                                          f"got {len(query)}", "uri_too_long")
            return
        wait = self._wait(scope)
        if wait:
            await self._refuse(send, 429, "too many requests from this client or to this profile; retry "
                                          f"after {wait} s", "too_many_requests",
                               {"Retry-After": str(wait)})
            return
        extra = _headers_for(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

    def _wait(self, scope: Scope) -> int:
        """Whole seconds the client must wait (0: go ahead), taking a token from each bucket that
        applies."""
        now = self.clock()
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if self.per_address is not None and (wait := self.per_address.take(address, now)):
            return math.ceil(wait)
        method = scope["method"]
        if method not in _WRITES:
            return 0
        path: str = scope["path"]
        if not path.startswith(_PROFILES):
            return 0
        if path in (_PROFILES, _PROFILES + "/"):
            if method != "POST" or self.creations is None:
                return 0
            return math.ceil(self.creations.take(address, now))
        if self.profile_writes is not None and path[len(_PROFILES)] == "/" and method in ("PUT", "DELETE"):
            profile = path[len(_PROFILES) + 1:].split("/", 1)[0]
            token = b""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    token = value
                    break
            # the token's hash, not the token: no secret is kept in this table
            if wait := self.profile_writes.take((profile, hash(token)), now):
                return math.ceil(wait)
        return 0

    async def _refuse(self, send: Send, status: int, message: str, code: str,
                      headers: dict[str, str] | None = None) -> None:
        response = errors.error_response(status, message, code, headers=headers)
        response.raw_headers.extend(_API_HEADERS)

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await response({"type": "http"}, nothing, send)
