"""Service settings: one immutable value built at the edge (CLI, tests), never read at import.

`Settings.from_env` fills what the caller left out from the environment:

- ``MOVIEREC_DATABASE_URL``: any SQLAlchemy URL (``postgresql+psycopg://...``); default a SQLite file
  ``service.sqlite3`` in the movierec data folder (``$MOVIEREC_DATA``);
- ``MOVIEREC_ADMIN_TOKEN``: the token the admin endpoints require; unset disables them.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from movierec.errors import ConfigError

__all__ = ["Settings"]


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

    def __post_init__(self) -> None:
        if self.model_dir is not None:
            object.__setattr__(self, "model_dir", Path(self.model_dir))
        if self.retrain_dir is not None:
            object.__setattr__(self, "retrain_dir", Path(self.retrain_dir))
        for name in ("max_k", "max_body_bytes", "max_profile_ratings", "cache_size", "workers"):
            value = getattr(self, name)
            low = 0 if name == "cache_size" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
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
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(model_dir=None if model_dir is None else Path(model_dir), **values)

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
