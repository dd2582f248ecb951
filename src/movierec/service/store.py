"""The store: what every replica of the service shares. People who are not in the training data, their
secret tokens and ratings; the model version being served (`served_model`, `publish_model`); background
jobs and their progress (`start_job`, `update_job`, `jobs`).

SQLAlchemy Core over SQLite (WAL journal, so readers never wait for the writer) by default; any
SQLAlchemy URL works (PostgreSQL). Tokens are random 256-bit secrets: only their SHA-256 is stored
(a slow password hash buys nothing for a secret with that much entropy), compared in constant time.

Every write is one short transaction of one statement, so concurrent writers queue on the database's
write lock (SQLite: up to ``busy_timeout``) instead of failing: no rating is ever lost. A database
that cannot be reached raises `StoreUnavailable` (the service answers 503 with Retry-After); the
connection pool checks a connection before use, so the store recovers by itself when the database
returns.

Durability: a write is acknowledged (the method returns, the service answers 2xx) only after its
transaction committed. SQLite runs with ``synchronous=FULL``: every commit fsyncs the WAL, so an
acknowledged write survives not only the service being killed (``NORMAL`` would do for that: the WAL
is in the kernel's page cache once ``write`` returns) but also a crash of the machine or a power
cut, which ``NORMAL`` may roll back. The fsync has a price: one writer in process made 1,660-2,300
writes/s with NORMAL and 170-430 with FULL on the shared VM's virtual disk (a local SSD syncs
faster); ``Store(..., sqlite_synchronous="NORMAL")`` trades the power-cut guarantee for them.
PostgreSQL commits with its own ``synchronous_commit`` (``on`` unless the operator turned it off),
i.e. after its WAL is flushed. ``tests/service/test_service_durability.py`` and ``benchmarks/reliability.py``
kill the service with SIGKILL under concurrent writers and check that every acknowledged write is
there and none is half applied.

The schema carries its version (`SCHEMA_VERSION`, in ``movierec_meta``). Opening a database written by
an older movierec adds what is missing (version 1 had only profiles and ratings); a database written by
a newer one is refused with a message saying so.

The statements are SQLAlchemy Core, built once. On SQLite and on PostgreSQL through psycopg the few
that every request runs (a profile, its ratings, the row lock, the rating upsert) are compiled once
and run on the driver's own cursor inside SQLAlchemy's connection and transaction (`Store._cursor`):
SQLAlchemy's per-execution work cost more than SQLite's, and on PostgreSQL about as much as a
loopback round trip. Other databases run them through SQLAlchemy. On PostgreSQL reads run on
autocommit connections (no BEGIN and ROLLBACK round trips around a lone SELECT).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import Engine

from movierec.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "Profile", "Store", "StoreUnavailable"]

log = logging.getLogger(__name__)

#: SQLite's ``PRAGMA synchronous``: FULL, so an acknowledged write survives a power cut (see above).
SQLITE_SYNCHRONOUS = "FULL"

#: The schema this movierec writes: 1 profiles and ratings; 2 adds the served model, jobs and itself.
SCHEMA_VERSION = 2

_metadata = sa.MetaData()

meta = sa.Table(
    "movierec_meta",
    _metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

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

# One row (slot 1): the model folder every replica serves, and its version, raised by each publish.
served = sa.Table(
    "served_model",
    _metadata,
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("model_dir", sa.Text, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    # 1 while running, NULL after: the unique index lets the database itself refuse a second running job
    sa.Column("running", sa.Integer, nullable=True, unique=True),
    sa.Column("progress", sa.Float, nullable=False),
    sa.Column("epoch", sa.Integer, nullable=True),
    sa.Column("epochs", sa.Integer, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Column("finished", sa.Float, nullable=True),
    sa.Column("heartbeat", sa.Float, nullable=False),
    sa.Column("model_dir", sa.Text, nullable=True),
)
_LOST = "lost: the replica running it stopped answering"
_JOB_FIELDS = ("id", "status", "progress", "epoch", "epochs", "message", "started", "finished", "model_dir")


class StoreUnavailable(RuntimeError):
    """The database cannot be reached (down, restarting, or its connection was lost)."""


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
# PostgreSQL's fold-in read: the profile (if the token's digest is its own) and its ratings, joined.
_PROFILE_RATED = (
    sa.select(profiles.c.id, profiles.c.name, profiles.c.created, ratings.c.movie_id, ratings.c.rating)
    .select_from(profiles.outerjoin(ratings, ratings.c.profile_id == profiles.c.id))
    .where((profiles.c.id == sa.bindparam("profile_id"))
           & (profiles.c.token_sha256 == sa.bindparam("token_sha256")))
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


def _compiled(statement: Any, dialect: Any) -> tuple[str, tuple[str, ...] | None]:
    """A statement's SQL for ``dialect`` and the order of its parameters where they are positional
    (SQLite's ``?``; None for psycopg's named ``%(name)s``)."""
    compiled = statement.compile(dialect=dialect)
    return str(compiled), tuple(compiled.positiontup) if compiled.positiontup else None


# The hot statements' SQL, compiled once per driver, run straight on the driver's cursor (see
# `Store._cursor`); keyed by (driver, the statement object's id): they live as long as the module.
_DRIVER_SQL = {
    **{("pysqlite", id(statement)): _compiled(statement, sqlite.dialect())
       for statement in (_PROFILE, _RATINGS, _RATED, _UPSERTS["sqlite", False], _UPSERTS["sqlite", True])},
    **{("psycopg", id(statement)): _compiled(statement, postgresql_psycopg.dialect())
       for statement in (_PROFILE, _RATINGS, _RATED, _PROFILE_RATED, _LOCK_PROFILE,
                         _UPSERTS["postgresql", False], _UPSERTS["postgresql", True])},
}


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
        sqlite_synchronous: SQLite's ``PRAGMA synchronous``: ``FULL`` (the default: an acknowledged
            write survives a power cut) or ``NORMAL`` (survives a killed process only; a commit
            skips its fsync: 0.4-0.6 ms instead of 2.3-5.8 ms per write on the shared VM's disk).

    Raises:
        ConfigError: an unusable URL, a database that cannot be reached (one line: where, and why),
            or a schema written by a newer movierec.
    """

    def __init__(self, url: str, *, busy_timeout: float = 30.0,
                 sqlite_synchronous: str = SQLITE_SYNCHRONOUS) -> None:
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
        else:
            # the service's store threads (8) and the rest (the model watcher, admin, sync routes) never
            # wait for a connection. No pre-ping round trip on every checkout: a connection the server
            # dropped (restart, failover) fails one request with StoreUnavailable, and SQLAlchemy then
            # replaces every connection of the pool.
            kwargs.update(pool_size=8, max_overflow=16)
        try:
            self.engine: Engine = sa.create_engine(parsed, **kwargs)
            # reads: autocommit where the database has transactions worth skipping for a lone SELECT
            self._reader: Engine = (self.engine if self.is_sqlite else
                                    sa.create_engine(parsed, isolation_level="AUTOCOMMIT", pool_size=8,
                                                     max_overflow=16))
        except Exception as exc:  # a missing driver, a bad option
            raise ConfigError(f"cannot open database {parsed.render_as_string(hide_password=True)}: "
                              f"{exc}") from None
        self._driver = parsed.get_driver_name() if parsed.get_driver_name() in ("pysqlite", "psycopg") \
            else None
        if self.is_sqlite:
            mode = str(sqlite_synchronous).upper()
            if mode not in ("FULL", "NORMAL", "EXTRA"):
                raise ConfigError(f"sqlite_synchronous must be FULL, NORMAL or EXTRA, "
                                  f"got {sqlite_synchronous!r}")
            sa.event.listen(self.engine, "connect", functools.partial(_sqlite_pragmas, mode))
        try:
            self._migrate()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            self.close()
            raise ConfigError(f"cannot reach the database {self._where()}: {_cause(exc)}") from None

    def _where(self) -> str:
        """The database for messages: the URL without its password, and host and port where it has them."""
        url = self.url.render_as_string(hide_password=True)
        if self.url.host:
            return f"{url} (host {self.url.host}, port {self.url.port or 'default'})"
        return url

    def _migrate(self) -> None:
        """Create the schema, or bring a database from an older movierec up to `SCHEMA_VERSION`.

        Raises:
            ConfigError: a schema from a newer movierec.
        """
        for attempt in range(3):  # replicas starting at once on a fresh database may race to create it
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":  # one migration at a time across replicas
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7262937)"))
                    tables = set(sa.inspect(conn).get_table_names())
                    version = None
                    if meta.name in tables:
                        value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")
                                             ).scalar_one_or_none()
                        version = int(value) if value is not None else None
                    elif profiles.name in tables:
                        version = 1  # before the schema carried its version: profiles and ratings only
                    if version is not None and version > SCHEMA_VERSION:
                        raise ConfigError(
                            f"the database {self._where()} holds schema version {version}, written by a "
                            f"newer movierec; this one knows version {SCHEMA_VERSION}: upgrade movierec, "
                            f"or give it another database")
                    _metadata.create_all(conn)  # adds what an older schema lacks, leaves the rest
                    if version != SCHEMA_VERSION:
                        conn.execute(meta.delete().where(meta.c.key == "schema_version"))
                        conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                        if version is not None:
                            log.info("database schema migrated from version %d to %d", version,
                                     SCHEMA_VERSION)
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError) as exc:
                if attempt == 2:  # "already exists": another replica created it meanwhile
                    raise ConfigError(f"cannot set up the database {self._where()}: {_cause(exc)}") from None
                time.sleep(0.2)
            except sa.exc.OperationalError as exc:
                if "already exists" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        self.engine.dispose()
        self._reader.dispose()

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A connection for reads; `StoreUnavailable` when the database cannot be reached."""
        try:
            with self._reader.connect() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(f"the database is unavailable: {_cause(exc)}") from exc

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A transaction, committed when the block ends (only then is a write acknowledged);
        `StoreUnavailable` when the database cannot be reached, in which case nothing was written."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise StoreUnavailable(f"the database is unavailable: {_cause(exc)}") from exc

    # -- running the hot statements ----------------------------------------------------------------
    def _cursor(self, conn: sa.Connection, statement: Any, params: dict[str, Any]) -> Any:
        """A prebuilt statement run as SQL compiled once, on the driver's own cursor (SQLite's, or
        psycopg's): SQLAlchemy's per-execution work (execution context, result objects) cost more
        than the database's. Transactions are still the connection's (``engine.begin()`` commits)."""
        sql, names = _DRIVER_SQL[self._driver, id(statement)]
        driver = conn.connection.driver_connection
        return driver.execute(sql, params if names is None else [params[name] for name in names])

    def _rows(self, conn: sa.Connection, statement: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of a prebuilt statement, as tuples."""
        if self._driver is not None:
            return [tuple(row) for row in self._cursor(conn, statement, params).fetchall()]
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
        if self._driver is not None:
            return self._cursor(conn, upsert, params).fetchone() is not None
        return conn.execute(upsert, params).first() is not None

    # -- profiles --------------------------------------------------------------------------------
    def create_profile(self, name: str | None = None) -> tuple[Profile, str]:
        """A new profile and its secret token (returned once, never stored in the clear)."""
        token = secrets.token_urlsafe(32)
        profile = Profile(id=secrets.token_urlsafe(12), name=name, created=time.time())
        with self._write() as conn:
            conn.execute(profiles.insert().values(id=profile.id, token_sha256=_digest(token),
                                                  name=name, created=profile.created))
        return profile, token

    def authenticate(self, profile_id: str, token: str | None) -> Profile | None:
        """The profile if ``token`` is its token; None for an unknown profile or a wrong token
        (indistinguishable, so nobody can probe which profile ids exist)."""
        if not token:
            return None
        with self._read() as conn:
            row = self._profile_row(conn, profile_id, token)
        return None if row is None else _profile(row)

    def authenticated_ratings(self, profile_id: str, token: str | None
                              ) -> tuple[Profile, list[tuple[str, float]]] | None:
        """`authenticate` and the profile's (movie id text, rating) pairs, by movie id, on one
        connection: what a recommendation request needs. None for an unknown profile or a wrong
        token (whose ratings are then never read).

        On SQLite two narrow queries, not a join: joined, every rating row carried the profile's
        columns into a sort, and SQLite took three times as long; the pairs come in key order,
        unsorted. On PostgreSQL one join, the token's digest matched in SQL (as the rating write
        does): one round trip instead of two, 40% less of the service's time per read."""
        if not token:
            return None
        with self._read() as conn:
            if self._driver == "psycopg":
                rows = self._rows(conn, _PROFILE_RATED, {"profile_id": profile_id,
                                                         "token_sha256": _digest(token)})
                if not rows:
                    return None
                return (Profile(id=rows[0][0], name=rows[0][1], created=rows[0][2]),
                        [(movie, rating) for *_, movie, rating in rows if movie is not None])
            row = self._profile_row(conn, profile_id, token)
            if row is None:
                return None
            return _profile(row), self._rows(conn, _RATED, {"profile_id": profile_id})

    def delete_profile(self, profile_id: str) -> None:
        with self._write() as conn:
            conn.execute(ratings.delete().where(ratings.c.profile_id == profile_id))
            conn.execute(profiles.delete().where(profiles.c.id == profile_id))

    def count_profiles(self) -> int:
        with self._read() as conn:
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
        with self._write() as conn:
            if dialect == "postgresql":
                # under READ COMMITTED each writer's count(*) sees only its own snapshot: lock the
                # profile's row first so writers to one profile take turns (SQLite's single write
                # lock already does this)
                lock = {"profile_id": profile_id}
                if self._driver is not None:
                    self._cursor(conn, _LOCK_PROFILE, lock)
                else:
                    conn.execute(_LOCK_PROFILE, lock)
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
        with self._write() as conn:
            result = conn.execute(
                ratings.delete().where(
                    (ratings.c.profile_id == profile_id) & (ratings.c.movie_id == str(movie_id))
                )
            )
        return bool(result.rowcount)

    def ratings(self, profile_id: str) -> list[tuple[str, float, float]]:
        """A profile's ratings as (movie id text, rating, updated), oldest change first."""
        with self._read() as conn:
            return self._rows(conn, _RATINGS, {"profile_id": profile_id})

    def count_ratings(self, profile_id: str) -> int:
        with self._read() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(ratings).where(ratings.c.profile_id == profile_id)
            ).scalar_one())

    # -- the served model ------------------------------------------------------------------------
    def served_model(self) -> tuple[int, str] | None:
        """(version, model folder) that every replica should serve, or None before the first publish."""
        with self._read() as conn:
            row = conn.execute(sa.select(served.c.version, served.c.model_dir).where(served.c.slot == 1)
                               ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def publish_model(self, model_dir: str) -> int:
        """Make ``model_dir`` the model every replica serves; returns its new version (one higher than
        the last, whoever published it)."""
        now = time.time()
        for _ in range(3):
            try:
                with self._write() as conn:
                    bumped = conn.execute(served.update().where(served.c.slot == 1).values(
                        version=served.c.version + 1, model_dir=model_dir, updated=now)).rowcount
                    if not bumped:
                        conn.execute(served.insert().values(slot=1, version=1, model_dir=model_dir,
                                                            updated=now))
                    return int(conn.execute(sa.select(served.c.version).where(served.c.slot == 1)
                                            ).scalar_one())
            except sa.exc.IntegrityError:  # two first publishes at once: the other inserted; bump it
                continue
        raise StoreUnavailable("could not publish the model: the database kept refusing the write")

    # -- jobs ------------------------------------------------------------------------------------
    def start_job(self, job_id: str, message: str, *, stale_after: float) -> dict[str, Any] | None:
        """Record a new running job; None while another is running (one at a time, across replicas).

        A running job whose replica stopped sending heartbeats for ``stale_after`` seconds is marked
        failed first, so a crashed replica does not block retraining for ever.
        """
        now = time.time()
        try:
            with self._write() as conn:
                stale = (jobs.c.running == 1) & (jobs.c.heartbeat < now - stale_after)
                conn.execute(jobs.update().where(stale).values(
                    status="failed", running=None, finished=now, message=_LOST))
                conn.execute(jobs.insert().values(id=job_id, status="running", running=1, progress=0.0,
                                                  message=message, started=now, heartbeat=now))
        except sa.exc.IntegrityError:
            return None
        return self.job(job_id, stale_after=stale_after)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Change a job's fields (`_JOB_FIELDS`) and beat its heart; a status other than running ends it."""
        values = {name: fields[name] for name in _JOB_FIELDS if name in fields and name != "id"}
        values["heartbeat"] = time.time()
        if values.get("status", "running") != "running":
            values["running"] = None
            values.setdefault("finished", values["heartbeat"])
        with self._write() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def job(self, job_id: str, *, stale_after: float) -> dict[str, Any] | None:
        """One job as a dict of `_JOB_FIELDS`, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(*jobs.c[_JOB_FIELDS], jobs.c.heartbeat).where(jobs.c.id == job_id)
                               ).first()
        return None if row is None else _job(row, stale_after)

    def jobs(self, *, stale_after: float, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs, newest first."""
        with self._read() as conn:
            rows = conn.execute(sa.select(*jobs.c[_JOB_FIELDS], jobs.c.heartbeat)
                                .order_by(jobs.c.started.desc()).limit(limit)).all()
        return [_job(row, stale_after) for row in rows]


def _job(row: Any, stale_after: float) -> dict[str, Any]:
    """A job row as the API shows it; a running job without a heartbeat for ``stale_after`` seconds is
    shown as failed (its replica stopped) until the next `Store.start_job` records it so."""
    job = dict(zip(_JOB_FIELDS, row[:-1], strict=True))
    if job["status"] == "running" and row[-1] < time.time() - stale_after:
        job.update(status="failed", message=_LOST)
    return job


def _cause(exc: BaseException) -> str:
    """The driver's own words for a database error, on one line."""
    original = getattr(exc, "orig", None) or exc
    text = " ".join(str(original).split())
    return text.removeprefix("connection failed: ") or type(original).__name__


def _sqlite_pragmas(synchronous: str, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL survives in the file; on an in-memory database it is silently "memory"
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
