"""The profile store: people who are not in the training data, their secret tokens and ratings.

SQLAlchemy Core over SQLite (WAL journal, so readers never wait for the writer) by default; any
SQLAlchemy URL works (PostgreSQL). Tokens are random 256-bit secrets: only their SHA-256 is stored
(a slow password hash buys nothing for a secret with that much entropy), compared in constant time.

Every write is one short transaction of one statement, so concurrent writers queue on the database's
write lock (SQLite: up to ``busy_timeout``) instead of failing: no rating is ever lost.

The statements are SQLAlchemy Core, built once. On SQLite the few that every request runs (a
profile, its ratings, the rating upsert) are compiled once and run on the driver's own cursor inside
SQLAlchemy's connection and transaction (`Store._cursor`): SQLAlchemy's per-execution work cost more
than SQLite's. Other databases run them through SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from movierec.errors import ConfigError

__all__ = ["Profile", "Store"]

_metadata = sa.MetaData()

profiles = sa.Table(
    "profiles",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("name", sa.String(100), nullable=True),
    sa.Column("created", sa.Float, nullable=False),
)

ratings = sa.Table(
    "ratings",
    _metadata,
    sa.Column("profile_id", sa.String(32), sa.ForeignKey("profiles.id", ondelete="CASCADE"),
              primary_key=True),
    # movie ids are text so a model with string ids is served too; the service converts back
    sa.Column("movie_id", sa.String(64), primary_key=True),
    sa.Column("rating", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)


# The hot statements, built once with bound parameters: building a statement per call (its column
# collections, its cache key) cost more than running it.
_PROFILE = sa.select(profiles).where(profiles.c.id == sa.bindparam("profile_id"))
_RATINGS = (
    sa.select(ratings.c.movie_id, ratings.c.rating, ratings.c.updated)
    .where(ratings.c.profile_id == sa.bindparam("profile_id"))
    .order_by(ratings.c.updated, ratings.c.movie_id)
)
# A fold-in's read: no times, in primary-key order (no sort; the order only has to be stable).
_RATED = (
    sa.select(ratings.c.movie_id, ratings.c.rating)
    .where(ratings.c.profile_id == sa.bindparam("profile_id"))
    .order_by(ratings.c.movie_id)
)
_LOCK_PROFILE = sa.select(profiles.c.id).where(profiles.c.id == sa.bindparam("profile_id")).with_for_update()
_RATING_FIELDS = ("profile_id", "movie_id", "rating", "updated")
_NO_LIMIT = 2**31 - 1  # the :limit parameter is typed like count(*): a 32-bit integer on PostgreSQL


def _limited_upsert(module: Any, *, check_token: bool) -> Any:
    """``INSERT INTO ratings SELECT <row> WHERE <room> ON CONFLICT DO UPDATE`` for SQLite or
    PostgreSQL (``module``: their dialect package): room means fewer than ``:limit`` ratings, or
    this movie already rated. With ``check_token`` the row is selected from the profile's own row
    only where its token digest is ``:token_sha256``: a wrong token writes nothing, in the same
    statement."""
    mine = ratings.c.profile_id == sa.bindparam("profile_id")
    count = sa.select(sa.func.count()).select_from(ratings).where(mine).scalar_subquery()
    there = sa.exists().where(mine & (ratings.c.movie_id == sa.bindparam("movie_id")))
    row = sa.select(*(sa.bindparam(name, type_=ratings.c[name].type).label(name) for name in _RATING_FIELDS))
    room = (count < sa.bindparam("limit")) | there
    if check_token:
        row = row.select_from(profiles).where(
            (profiles.c.id == sa.bindparam("profile_id"))
            & (profiles.c.token_sha256 == sa.bindparam("token_sha256")))
    statement = module.insert(ratings).from_select(list(_RATING_FIELDS), row.where(room))
    statement = statement.on_conflict_do_update(
        index_elements=[ratings.c.profile_id, ratings.c.movie_id],
        set_={"rating": statement.excluded.rating, "updated": statement.excluded.updated},
    )
    # PostgreSQL: RETURNING tells whether a row was written (psycopg 3 reports rowcount -1 here);
    # SQLite's rowcount is exact, and RETURNING needs SQLite 3.35 (Debian 11 ships 3.34)
    return statement.returning(ratings.c.updated) if module is postgresql else statement


_UPSERTS = {(name, check): _limited_upsert(module, check_token=check)
            for name, module in (("sqlite", sqlite), ("postgresql", postgresql)) for check in (False, True)}


def _compiled_for_sqlite(statement: Any) -> tuple[str, tuple[str, ...]]:
    """A statement's SQLite SQL and the order of its ``?`` parameters."""
    compiled = statement.compile(dialect=sqlite.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


# The hot statements' SQL, compiled once, run on SQLite straight on the driver's cursor (see
# `Store._rows`); keyed by the statement object's id (they live as long as the module).
_SQLITE_SQL = {id(statement): _compiled_for_sqlite(statement)
               for statement in (_PROFILE, _RATINGS, _RATED, _UPSERTS["sqlite", False],
                                 _UPSERTS["sqlite", True])}


@dataclass(frozen=True)
class Profile:
    id: str
    name: str | None
    created: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token_matches(row: tuple[Any, ...] | None, token: str) -> bool:
    """Whether ``row`` (a profile row: id, token_sha256, name, created; or None) holds ``token``'s
    digest, in constant time; a missing profile is compared against a dummy digest, so both take
    the same work."""
    expected = row[1] if row is not None else "0" * 64
    return hmac.compare_digest(expected, _digest(token)) and row is not None


def _profile(row: tuple[Any, ...]) -> Profile:
    return Profile(id=row[0], name=row[2], created=row[3])


class Store:
    """Profiles and their ratings in a SQL database.

    Args:
        url: a SQLAlchemy URL; for a SQLite file its folder is created.
        busy_timeout: seconds a SQLite writer waits for the write lock before giving up.

    Raises:
        ConfigError: an unusable URL.
    """

    def __init__(self, url: str, *, busy_timeout: float = 30.0) -> None:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"database URL must be a SQLAlchemy URL, got {url!r} ({exc})") from None
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
            if database in ("", ":memory:"):
                # one shared connection, or every pooled connection would see its own empty database
                kwargs["poolclass"] = sa.pool.StaticPool
        try:
            self.engine: Engine = sa.create_engine(parsed, **kwargs)
        except Exception as exc:  # a missing driver, a bad option
            raise ConfigError(f"cannot open database {parsed.render_as_string(hide_password=True)}: "
                              f"{exc}") from None
        if self.is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        _metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- running the hot statements ----------------------------------------------------------------
    def _cursor(self, conn: sa.Connection, statement: Any, params: dict[str, Any]) -> Any:
        """A prebuilt statement run on SQLite as SQL compiled once, on the driver's own cursor:
        SQLAlchemy's per-execution work (execution context, result objects) cost more than
        SQLite's. Transactions are still the connection's (``engine.begin()`` commits)."""
        sql, names = _SQLITE_SQL[id(statement)]
        return conn.connection.driver_connection.execute(sql, [params[name] for name in names])

    def _rows(self, conn: sa.Connection, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a prebuilt statement, as tuples."""
        if self.is_sqlite:
            return self._cursor(conn, statement, params).fetchall()
        return [tuple(row) for row in conn.execute(statement, params)]

    def _profile_row(self, conn: sa.Connection, profile_id: str, token: str) -> tuple[Any, ...] | None:
        """The profile's row if ``token`` is its token (`_token_matches`), else None."""
        row = next(iter(self._rows(conn, _PROFILE, {"profile_id": profile_id})), None)
        return row if _token_matches(row, token) else None

    def _written(self, conn: sa.Connection, upsert: Any, params: dict[str, Any]) -> bool:
        """Run a limited upsert (`_limited_upsert`); whether it wrote a row."""
        if self.is_sqlite:
            return self._cursor(conn, upsert, params).rowcount > 0  # SQLite's rowcount is exact
        # PostgreSQL's upsert has RETURNING: psycopg 3 reports rowcount -1 for it
        return conn.execute(upsert, params).first() is not None

    # -- profiles --------------------------------------------------------------------------------
    def create_profile(self, name: str | None = None) -> tuple[Profile, str]:
        """A new profile and its secret token (returned once, never stored in the clear)."""
        token = secrets.token_urlsafe(32)
        profile = Profile(id=secrets.token_urlsafe(12), name=name, created=time.time())
        with self.engine.begin() as conn:
            conn.execute(profiles.insert().values(id=profile.id, token_sha256=_digest(token),
                                                  name=name, created=profile.created))
        return profile, token

    def authenticate(self, profile_id: str, token: str | None) -> Profile | None:
        """The profile if ``token`` is its token; None for an unknown profile or a wrong token
        (indistinguishable, so nobody can probe which profile ids exist)."""
        if not token:
            return None
        with self.engine.connect() as conn:
            row = self._profile_row(conn, profile_id, token)
        return None if row is None else _profile(row)

    def authenticated_ratings(self, profile_id: str, token: str | None
                              ) -> tuple[Profile, list[tuple[str, float]]] | None:
        """`authenticate` and the profile's (movie id text, rating) pairs, by movie id, on one
        connection: what a recommendation request needs. None for an unknown profile or a wrong
        token (whose ratings are then never read).

        Two narrow queries, not a join: joined, every rating row carried the profile's columns into
        a sort, and SQLite took three times as long; the pairs come in key order, unsorted."""
        if not token:
            return None
        with self.engine.connect() as conn:
            row = self._profile_row(conn, profile_id, token)
            if row is None:
                return None
            return _profile(row), self._rows(conn, _RATED, {"profile_id": profile_id})

    def delete_profile(self, profile_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(ratings.delete().where(ratings.c.profile_id == profile_id))
            conn.execute(profiles.delete().where(profiles.c.id == profile_id))

    def count_profiles(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(profiles)).scalar_one())

    # -- ratings ---------------------------------------------------------------------------------
    def set_rating(self, profile_id: str, movie_id: str, rating: float, *, limit: int | None = None,
                   token: str | None = None) -> float | None:
        """Add or change one rating (an upsert); returns the time stored, or None when nothing was
        written: the profile already holds ``limit`` ratings and this movie is not among them, or
        (with ``token``) the token is not the profile's. `authenticate` tells the two apart.

        On SQLite and PostgreSQL the token check, the limit check and the write are one statement
        (``INSERT ... SELECT ... WHERE token and room ... ON CONFLICT DO UPDATE``; on PostgreSQL
        after locking the profile's row), so concurrent writers cannot overshoot the limit;
        elsewhere the checks precede the write. The token is checked by its digest in SQL: equality
        on a SHA-256 the caller cannot steer reveals nothing through timing.
        """
        now = time.time()
        movie_id = str(movie_id)
        values = {"profile_id": profile_id, "movie_id": movie_id, "rating": float(rating), "updated": now}
        dialect = self.engine.dialect.name
        upsert = _UPSERTS.get((dialect, token is not None))
        with self.engine.begin() as conn:
            if dialect == "postgresql":
                # under READ COMMITTED each writer's count(*) sees only its own snapshot: lock the
                # profile's row first so writers to one profile take turns (SQLite's single write
                # lock already does this)
                conn.execute(_LOCK_PROFILE, {"profile_id": profile_id})
            if upsert is not None:
                limited = {**values, "limit": _NO_LIMIT if limit is None else limit}
                if token is not None:
                    limited["token_sha256"] = _digest(token)
                if not self._written(conn, upsert, limited):
                    return None
            else:  # portable fallback: check, update, insert if nothing was there and there is room
                mine = ratings.c.profile_id == profile_id
                if token is not None and self._profile_row(conn, profile_id, token) is None:
                    return None
                done = conn.execute(
                    ratings.update().where(mine & (ratings.c.movie_id == movie_id))
                    .values(rating=float(rating), updated=now)
                ).rowcount
                if not done:
                    count = sa.select(sa.func.count()).select_from(ratings).where(mine)
                    if limit is not None and conn.execute(count).scalar_one() >= limit:
                        return None
                    conn.execute(ratings.insert().values(**values))
        return now

    def delete_rating(self, profile_id: str, movie_id: str) -> bool:
        """Remove one rating; False if there was none."""
        with self.engine.begin() as conn:
            result = conn.execute(
                ratings.delete().where(
                    (ratings.c.profile_id == profile_id) & (ratings.c.movie_id == str(movie_id))
                )
            )
        return bool(result.rowcount)

    def ratings(self, profile_id: str) -> list[tuple[str, float, float]]:
        """A profile's ratings as (movie id text, rating, updated), oldest change first."""
        with self.engine.connect() as conn:
            return self._rows(conn, _RATINGS, {"profile_id": profile_id})

    def count_ratings(self, profile_id: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(ratings).where(ratings.c.profile_id == profile_id)
            ).scalar_one())


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL survives in the file; on an in-memory database it is silently "memory"
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes under WAL
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
