"""Service settings: one immutable value built at the edge (CLI, tests), never read at import.

`Settings.from_env` fills what the caller left out from the environment:

- ``MOVIEREC_DATABASE_URL``: any SQLAlchemy URL (``postgresql+psycopg://...``); default a SQLite file
  ``service.sqlite3`` in the movierec data folder (``$MOVIEREC_DATA``);
- ``MOVIEREC_ADMIN_TOKEN``: the token the admin endpoints require; unset disables them;
- rate limits, per replica (each worker process counts on its own); 0 turns one off:
  ``MOVIEREC_REQUESTS_PER_SECOND`` (50) and ``MOVIEREC_REQUEST_BURST`` (100) per client address,
  ``MOVIEREC_PROFILE_WRITES_PER_SECOND`` (10, burst twice that) per profile,
  ``MOVIEREC_PROFILES_PER_HOUR`` (20, all at once at most) profile creations per client address;
  ``MOVIEREC_RATE_LIMITS=off`` turns them all off (a benchmark, or a proxy that limits already);
- ``MOVIEREC_CORS_ORIGINS``: comma-separated origins (``https://app.example.org``) whose scripts may
  call the API; unset (the default) sends no CORS headers at all.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from movierec.errors import ConfigError

__all__ = ["Settings"]

_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")

#: Settings the environment may set, by variable, and the kind of number each takes.
_LIMIT_VARIABLES: dict[str, tuple[str, type]] = {
    "requests_per_second": ("MOVIEREC_REQUESTS_PER_SECOND", float),
    "request_burst": ("MOVIEREC_REQUEST_BURST", int),
    "profile_writes_per_second": ("MOVIEREC_PROFILE_WRITES_PER_SECOND", float),
    "profiles_per_hour": ("MOVIEREC_PROFILES_PER_HOUR", int),
    "max_query_bytes": ("MOVIEREC_MAX_QUERY_BYTES", int),
}


def _number(variable: str, text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise ConfigError(f"{variable} must be {expected}, got {text!r}") from None


@dataclass(frozen=True)
class Settings:
    """What the service needs to start.

    Attributes:
        model_dir: the artifact folder to serve (see `movierec.artifacts`); None to serve whatever
            model the store says every replica serves (a replica joining a running service).
        database_url: SQLAlchemy URL of the profile store; None means the default SQLite file.
        admin_token: secret for ``/api/admin/*``; None disables those endpoints (403).
        retrain_dir: where background retrains write their artifacts; None means
            ``<data folder>/service-models``.
        max_k: the largest ``k`` a request may ask for.
        max_body_bytes: requests with a larger body are refused with 413.
        max_query_bytes: requests with a longer query string are refused with 414.
        requests_per_second, request_burst: the token bucket every client address draws from, one
            token a request (429 with Retry-After when empty); 0 turns it off.
        profile_writes_per_second: writes (PUT, DELETE) to one profile, per second, in bursts of up
            to twice that; the bucket is keyed by profile id and the token presented, so requests
            with a wrong token cannot use up the owner's. 0 turns it off.
        profiles_per_hour: profile creations per client address per hour, all at once at most; 0
            turns it off.
        cors_origins: origins allowed to call the API from a browser script; empty: no CORS headers.
        metrics_dir: a folder the worker processes of one ``serve`` share, each writing its metrics
            there so that ``/metrics`` from any of them counts all (``serve`` makes and removes it);
            None: this process's metrics only.
        max_profile_ratings: ratings one profile may hold.
        cache_size: recommendation answers kept per served model (least recently used go first);
            0 turns the cache off. An answer depends only on the model and the request (user or
            ratings, k, filters), so a hit is exact; a reload or retrain starts a fresh cache.
        workers: server processes on this machine (``movierec serve --workers``); they share the
            store like replicas on several machines do.
        sync_interval: seconds between a replica's looks at the store for a newly published model;
            a reload or retrain through one replica is served by every replica within this interval
            plus the time to load the model.
        job_stale_after: seconds without a heartbeat after which a running retrain counts as lost
            (its replica stopped), so another may start.
    """

    model_dir: Path | None
    database_url: str | None = None
    admin_token: str | None = None
    retrain_dir: Path | None = None
    max_k: int = 500
    max_body_bytes: int = 64 * 1024
    max_profile_ratings: int = 5000
    cache_size: int = 10_000
    workers: int = 1
    sync_interval: float = 1.0
    job_stale_after: float = 120.0
    max_query_bytes: int = 2048
    requests_per_second: float = 50.0
    request_burst: int = 100
    profile_writes_per_second: float = 10.0
    profiles_per_hour: int = 20
    cors_origins: tuple[str, ...] = ()
    metrics_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.retrain_dir is not None:
            object.__setattr__(self, "retrain_dir", Path(self.retrain_dir))
        if self.metrics_dir is not None:
            object.__setattr__(self, "metrics_dir", Path(self.metrics_dir))
        if isinstance(self.cors_origins, str) or not all(isinstance(o, str) for o in self.cors_origins):
            raise ConfigError(f"cors_origins must be a list of origins, got {self.cors_origins!r}")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for origin in self.cors_origins:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(f"cors_origins must be origins like https://app.example.org (scheme, "
                                  f"host, optional port; no path, no '*'), got {origin!r}")
        for name in ("max_k", "max_body_bytes", "max_profile_ratings", "cache_size", "workers",
                     "max_query_bytes", "request_burst", "profiles_per_hour"):
            value = getattr(self, name)
            low = 0 if name in ("cache_size", "profiles_per_hour", "request_burst") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
        for name in ("requests_per_second", "profile_writes_per_second"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigError(f"{name} must be a number >= 0 (0: no limit), got {value!r}")
        if self.requests_per_second > 0 and self.request_burst < 1:
            raise ConfigError(f"request_burst must be an int >= 1 while requests_per_second is set, "
                              f"got {self.request_burst!r}")
        for name in ("sync_interval", "job_stale_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}")
        if self.admin_token is not None and len(self.admin_token) < 8:
            raise ConfigError("admin_token must be at least 8 characters, got a shorter one")

    @classmethod
    def from_env(cls, model_dir: str | Path | None, **overrides: Any) -> Settings:
        """Settings for ``model_dir``; ``overrides`` (non-None) win over the environment."""
        values: dict[str, Any] = {
            "database_url": os.environ.get("MOVIEREC_DATABASE_URL") or None,
            "admin_token": os.environ.get("MOVIEREC_ADMIN_TOKEN") or None,
        }
        for name, (variable, kind) in _LIMIT_VARIABLES.items():
            text = os.environ.get(variable, "").strip()
            if text:
                values[name] = _number(variable, text, kind)
        switch = os.environ.get("MOVIEREC_RATE_LIMITS", "").strip().lower()
        if switch in ("off", "0", "false", "no"):
            values.update(requests_per_second=0, profile_writes_per_second=0, profiles_per_hour=0)
        elif switch not in ("", "on", "1", "true", "yes"):
            raise ConfigError(f"MOVIEREC_RATE_LIMITS must be 'on' or 'off', got {switch!r}")
        origins = os.environ.get("MOVIEREC_CORS_ORIGINS", "").strip()
        if origins:
            values["cors_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model_dir=None if model_dir is None else Path(model_dir), **values)

    @property
    def rate_limited(self) -> bool:
        """Whether any rate limit is on."""
        return bool(self.requests_per_second or self.profile_writes_per_second or self.profiles_per_hour)

    def to_json(self) -> str:
        """These settings as JSON (`from_json` reads them back): how `serve` hands them to workers."""
        return json.dumps({name: (str(value) if isinstance(value, Path) else value)
                           for name, value in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return cls(**json.loads(text))

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<data folder>/service.sqlite3``."""
        if self.database_url:
            return self.database_url
        from movierec.data.download import data_home

        return f"sqlite:///{data_home() / 'service.sqlite3'}"

    def resolved_retrain_dir(self) -> Path:
        if self.retrain_dir is not None:
            return self.retrain_dir
        from movierec.data.download import data_home

        return data_home() / "service-models"
