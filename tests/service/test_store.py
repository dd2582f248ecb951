"""The profile store: concurrent writers lose nothing, everything survives a restart, tokens work."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from movierec.errors import ConfigError
from movierec.service import Settings, create_app
from movierec.service import store as store_module
from movierec.service.store import Store


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    profiles = [store.create_profile()[0].id for _ in range(8)]
    start = threading.Barrier(16)

    def write(worker: int) -> None:
        start.wait()  # all threads hit the database at once
        for n in range(40):
            profile = profiles[(worker + n) % len(profiles)]
            store.set_rating(profile, str(worker * 1000 + n), (n % 10) / 2 + 0.5)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(16)))
    expected: dict[str, dict[str, float]] = {p: {} for p in profiles}
    for worker in range(16):
        for n in range(40):
            expected[profiles[(worker + n) % len(profiles)]][str(worker * 1000 + n)] = (n % 10) / 2 + 0.5
    for profile in profiles:
        assert {movie: rating for movie, rating, _ in store.ratings(profile)} == expected[profile]
    assert sum(store.count_ratings(p) for p in profiles) == 16 * 40
    store.close()


def test_concurrent_updates_of_one_rating_keep_one_row(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    profile = store.create_profile()[0].id
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.set_rating(profile, "42", 1.0 + (n % 4)), range(200)))
    rows = store.ratings(profile)
    assert len(rows) == 1 and rows[0][1] in {1.0, 2.0, 3.0, 4.0}


def test_rating_limit_holds_under_concurrent_writers(database_url: str) -> None:
    """The limit check and the write are one statement (after a row lock on PostgreSQL): 8 threads
    racing to add 50 movies to a profile limited to 10 leave exactly 10, and a rated movie can still
    be changed at the limit."""
    store = Store(database_url)
    profile = store.create_profile()[0].id
    start = threading.Barrier(8)

    def write(worker: int) -> list[float | None]:
        start.wait()
        return [store.set_rating(profile, str(worker * 100 + n), 3.0, limit=10) for n in range(50)]

    with ThreadPoolExecutor(8) as pool:
        answers = [a for batch in pool.map(write, range(8)) for a in batch]
    assert sum(a is not None for a in answers) == 10
    stored = store.ratings(profile)
    assert len(stored) == 10
    movie = stored[0][0]
    assert store.set_rating(profile, movie, 5.0, limit=10) is not None  # a change, not an addition
    assert store.set_rating(profile, "new", 5.0, limit=10) is None
    assert dict((m, r) for m, r, _ in store.ratings(profile))[movie] == 5.0
    assert store.set_rating(profile, "new", 5.0) is not None  # no limit
    store.close()


@pytest.mark.parametrize("portable", [False, True], ids=["one-statement", "portable"])
def test_a_token_checked_write_needs_the_profiles_token(database_url: str, portable: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``set_rating(..., token=)`` writes only with the profile's own token; without room it writes
    nothing either way. ``portable``: the checks another database's dialect runs (no upsert)."""
    if portable:
        monkeypatch.setattr(store_module, "_UPSERTS", {})
    store = Store(database_url)
    profile, token = store.create_profile()
    _other, other_token = store.create_profile()
    assert store.set_rating(profile.id, "1", 4.0, token=token, limit=2) is not None
    for wrong in (other_token, "x" * 43):
        assert store.set_rating(profile.id, "1", 1.0, token=wrong, limit=2) is None  # no change
        assert store.set_rating(profile.id, "2", 1.0, token=wrong, limit=2) is None  # no addition
    assert store.set_rating("nobody", "2", 1.0, token=token) is None
    assert store.set_rating(profile.id, "2", 2.0, token=token, limit=2) is not None
    assert store.set_rating(profile.id, "3", 2.0, token=token, limit=2) is None  # full
    assert store.set_rating(profile.id, "2", 3.0, token=token, limit=2) is not None  # a change
    assert [(m, r) for m, r, _ in store.ratings(profile.id)] == [("1", 4.0), ("2", 3.0)]
    assert store.ratings("nobody") == [] and store.ratings(_other.id) == []
    store.close()


def test_authenticated_ratings_is_authenticate_and_ratings(database_url: str) -> None:
    store = Store(database_url)
    profile, token = store.create_profile("al")
    _other, other_token = store.create_profile()
    assert store.authenticated_ratings(profile.id, token) == (profile, [])  # no ratings yet
    store.set_rating(profile.id, "7", 4.0)
    store.set_rating(profile.id, "3", 2.5)
    store.set_rating(profile.id, "12", 1.0)
    found = store.authenticated_ratings(profile.id, token)
    assert found is not None and found[0] == profile
    assert found[1] == [("12", 1.0), ("3", 2.5), ("7", 4.0)]  # by movie id (text), no times
    assert [(m, r) for m, r, _ in store.ratings(profile.id)] == [("7", 4.0), ("3", 2.5), ("12", 1.0)]
    for who, secret in ((profile.id, other_token), (profile.id, None), (profile.id, ""), ("nobody", token)):
        assert store.authenticated_ratings(who, secret) is None
    store.close()


def test_sqlites_direct_reads_equal_sqlalchemys(tmp_path: Path) -> None:
    """On SQLite the hot statements run on the driver's cursor; through SQLAlchemy (every other
    database) the same reads give the same answers."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    profile, token = store.create_profile("cy")
    for movie, rating in (("9", 3.5), ("2", 5.0), ("10", 0.5)):
        assert store.set_rating(profile.id, movie, rating, token=token, limit=5) is not None
    reads = [lambda: store.authenticate(profile.id, token), lambda: store.authenticate(profile.id, "x"),
             lambda: store.authenticated_ratings(profile.id, token), lambda: store.ratings(profile.id),
             lambda: store.authenticated_ratings("nobody", token)]
    direct = [read() for read in reads]
    store.is_sqlite = False
    assert [read() for read in reads] == direct
    assert direct[0] == profile and direct[1] is None and direct[4] is None
    assert [(m, r) for m, r, _ in direct[3]] == [("9", 3.5), ("2", 5.0), ("10", 0.5)]
    assert direct[2] == (profile, [("10", 0.5), ("2", 5.0), ("9", 3.5)])
    store.close()


def test_wal_journal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_tokens(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    profile, token = store.create_profile("bo")
    _other, other_token = store.create_profile()
    assert store.authenticate(profile.id, token) == profile
    assert store.authenticate(profile.id, other_token) is None
    assert store.authenticate(profile.id, None) is None
    assert store.authenticate("nobody", token) is None
    assert len(token) >= 40 and token != other_token


def test_bad_url() -> None:
    with pytest.raises(ConfigError, match="SQLAlchemy URL"):
        Store("not a url")


def test_api_writes_under_concurrency_and_a_restart_sees_them(settings: Settings) -> None:
    """Many clients rate at once through the API; a new app on the same file sees every rating."""
    with TestClient(create_app(settings)) as client:
        made = [client.post("/api/profiles").json() for _ in range(5)]
        auth = [{"Authorization": f"Bearer {p['token']}"} for p in made]

        def rate(n: int) -> int:
            who = n % 5
            movie = 1 + n // 5
            return client.put(f"/api/profiles/{made[who]['id']}/ratings/{movie}",
                              json={"rating": 0.5 + (n % 10) / 2}, headers=auth[who]).status_code

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(rate, range(300)))
        assert statuses == [200] * 300
        before = [client.get(f"/api/profiles/{p['id']}/recommendations", headers=a).json()
                  for p, a in zip(made, auth, strict=True)]

    with TestClient(create_app(settings)) as client:  # a restart: new app, new engine, same file
        for who, (profile, headers) in enumerate(zip(made, auth, strict=True)):
            body = client.get(f"/api/profiles/{profile['id']}", headers=headers).json()
            ratings = {r["movie"]["item"]: r["rating"] for r in body["ratings"]}
            assert ratings == {1 + n // 5: 0.5 + (n % 10) / 2 for n in range(who, 300, 5)}
            again = client.get(f"/api/profiles/{profile['id']}/recommendations", headers=headers).json()
            assert again == before[who]
