"""Several replicas over one database: what they share lives in the store (the served model version,
retrain jobs, profiles and ratings), so a write, a reload or a retrain through one is seen through the
others; SQLite and a real PostgreSQL server, in process and as `movierec serve` processes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pgserver import PostgresServer, free_port

from conftest import ADMIN
from crashes import start_server, stop_server
from movierec.artifacts import save_model
from movierec.data.synth import synthesize
from movierec.errors import ConfigError
from movierec.models.registry import create_model
from movierec.service import Settings, create_app
from movierec.service.store import SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"X-Admin-Token": ADMIN}
SYNC = 0.1  # seconds between a replica's looks at the store in these tests


def eventually(check: Callable[[], Any], seconds: float = 5.0) -> Any:
    """``check()`` once it is truthy, or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not within {seconds} s"
            return value
        time.sleep(0.02)


@pytest.fixture(scope="module")
def second_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model of the same movies, for reloads: EASE instead of biased MF."""
    data = synthesize(60, 80, 1500, seed=3)
    folder = tmp_path_factory.mktemp("second") / "ease"
    save_model(create_model("ease").fit(data.ratings), folder, catalog=data.catalog)
    return folder


@pytest.fixture()
def replicas(model_dir: Path, database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    """Two replicas of the service (A started with the model, B joining without one) on one database."""
    shared = {"database_url": database_url, "admin_token": ADMIN, "retrain_dir": tmp_path / "retrained",
              "sync_interval": SYNC}
    with ExitStack() as stack:
        a = stack.enter_context(TestClient(create_app(Settings(model_dir=model_dir, **shared))))
        b = stack.enter_context(TestClient(create_app(Settings(model_dir=None, **shared))))
        yield a, b


def served(client: TestClient) -> tuple[str, int]:
    health = client.get("/api/health").json()
    return health["model"], health["model_version"]


# -- the store's shared state ------------------------------------------------------------------------
def test_publishing_raises_the_version_for_everyone(database_url: str) -> None:
    first, second = Store(database_url), Store(database_url)
    assert first.served_model() is None
    assert first.publish_model("/models/a") == 1
    assert second.served_model() == (1, "/models/a")
    assert second.publish_model("/models/b") == 2
    assert first.publish_model("/models/a") == 3
    assert second.served_model() == (3, "/models/a")
    first.close()
    second.close()


def test_one_running_job_at_a_time_and_a_lost_one_frees_the_slot(database_url: str) -> None:
    store = Store(database_url)
    job = store.start_job("j1", "fitting", stale_after=60)
    assert job is not None and (job["id"], job["status"], job["progress"]) == ("j1", "running", 0.0)
    assert store.start_job("j2", "fitting", stale_after=60) is None  # the database refuses a second
    store.update_job("j1", epoch=1, epochs=4, progress=0.25, message="epoch 1/4")
    assert store.job("j1", stale_after=60)["progress"] == 0.25
    store.update_job("j1", status="done", progress=1.0, model_dir="/models/j1")
    done = store.job("j1", stale_after=60)
    assert done["status"] == "done" and done["finished"] is not None and done["model_dir"] == "/models/j1"
    assert store.start_job("j2", "fitting", stale_after=60) is not None  # the slot is free again
    # j2's replica dies: no heartbeat. Seen as lost at once with a short patience, and replaced.
    time.sleep(0.05)
    assert store.job("j2", stale_after=0.01)["status"] == "failed"
    assert store.start_job("j3", "fitting", stale_after=0.01) is not None
    assert store.job("j2", stale_after=60)["message"].startswith("lost")
    assert [j["id"] for j in store.jobs(stale_after=60)] == ["j3", "j2", "j1"]
    store.close()


def test_a_version_1_database_is_migrated_and_keeps_its_profiles(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # the schema of movierec before the store carried its version
        conn.execute(sa.text("CREATE TABLE profiles (id VARCHAR(32) PRIMARY KEY, token_sha256 VARCHAR(64) "
                             "NOT NULL, name VARCHAR(100), created FLOAT NOT NULL)"))
        conn.execute(sa.text("CREATE TABLE ratings (profile_id VARCHAR(32) NOT NULL, movie_id VARCHAR(64) "
                             "NOT NULL, rating FLOAT NOT NULL, updated FLOAT NOT NULL, "
                             "PRIMARY KEY (profile_id, movie_id))"))
        conn.execute(sa.text("INSERT INTO profiles VALUES ('p1', 'x', 'old', 1.0)"))
        conn.execute(sa.text("INSERT INTO ratings VALUES ('p1', '7', 4.5, 2.0)"))
    engine.dispose()
    store = Store(url)
    assert store.ratings("p1") == [("7", 4.5, 2.0)]
    assert store.publish_model("/models/a") == 1 and store.start_job("j", "x", stale_after=60) is not None
    with store.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT value FROM movierec_meta WHERE key = 'schema_version'"))
        assert version.scalar_one() == str(SCHEMA_VERSION)
    store.close()


def test_a_schema_from_a_newer_movierec_is_refused(database_url: str) -> None:
    Store(database_url).close()
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE movierec_meta SET value = '99' WHERE key = 'schema_version'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="schema version 99, written by a newer movierec"):
        Store(database_url)


def test_an_unreachable_database_is_one_clear_line() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigError) as caught:
        Store(f"postgresql+psycopg://someone:secret@127.0.0.1:{port}/movierec")
    message = str(caught.value)
    assert f"host 127.0.0.1, port {port}" in message and "refused" in message.lower()
    assert "secret" not in message and "\n" not in message


# -- replicas in one process ----------------------------------------------------------------------------
def test_a_write_through_one_replica_is_read_through_the_other(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = replicas
    created = a.post("/api/profiles").json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    before = b.get(f"/api/profiles/{created['id']}/recommendations?k=5", headers=auth).json()
    assert before["rated"] == 0
    for movie, rating in ((1, 5.0), (2, 4.5), (3, 1.0)):
        assert a.put(f"/api/profiles/{created['id']}/ratings/{movie}", json={"rating": rating},
                     headers=auth).status_code == 200
        after = b.get(f"/api/profiles/{created['id']}/recommendations?k=5", headers=auth).json()
        assert after["rated"] == movie  # B answers from the ratings as they are now, never a stale copy
    assert [r["movie"]["item"] for r in b.get(f"/api/profiles/{created['id']}", headers=auth).json()
            ["ratings"]] == [1, 2, 3]


def test_a_reload_through_one_replica_is_served_by_the_other(replicas, second_model: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = replicas
    assert served(a) == served(b) == ("biased-mf-als", 1)
    known = b.get("/api/users/1/recommendations?k=5").json()  # cached by B for version 1
    body = a.post("/api/admin/reload", json={"model_dir": str(second_model)}, headers=AUTH).json()
    assert (body["model"], body["model_version"]) == ("ease", 2)
    assert served(a) == ("ease", 2)
    started = time.monotonic()
    eventually(lambda: served(b) == ("ease", 2), seconds=2.0)  # the documented bound
    assert time.monotonic() - started < 2.0
    fresh = b.get("/api/users/1/recommendations?k=5").json()
    assert fresh["recommendations"] != known["recommendations"]  # not the old version's cached answer


def test_a_retrain_started_through_one_replica_is_followed_through_the_other(replicas) -> None:  # type: ignore[no-untyped-def]
    a, b = replicas
    job = a.post("/api/admin/retrain", json={"params": {"factors": 3, "epochs": 30}}, headers=AUTH).json()
    assert job["status"] == "running"
    refused = b.post("/api/admin/retrain", headers=AUTH)  # one retrain at a time, across replicas
    assert refused.status_code == 409
    seen = eventually(lambda: (j := b.get(f"/api/admin/jobs/{job['id']}", headers=AUTH).json())["status"]
                      != "running" and j, seconds=60)
    assert seen["status"] == "done" and seen["progress"] == 1.0 and seen["epochs"] == 30
    assert [j["id"] for j in b.get("/api/admin/jobs", headers=AUTH).json()] == [job["id"]]
    eventually(lambda: served(b) == ("biased-mf-als", 2), seconds=2.0)
    assert b.get("/api/model").json()["params"]["factors"] == 3


def test_a_replica_keeps_serving_when_a_published_model_does_not_load(replicas, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = replicas
    store = Store(a.app.state.service.settings.resolved_database_url())
    store.publish_model(str(tmp_path / "missing"))  # published by something that skipped the checks
    store.close()
    time.sleep(5 * SYNC)
    assert served(b) == ("biased-mf-als", 1) and b.get("/api/users/1/recommendations").status_code == 200


# -- a database that goes away ---------------------------------------------------------------------------
def test_a_database_outage_answers_503_and_loses_no_acknowledged_write(model_dir: Path,
                                                                         postgres: PostgresServer,
                                                                         tmp_path: Path) -> None:
    settings = Settings(model_dir=model_dir, database_url=postgres.new_database(), admin_token=ADMIN,
                        retrain_dir=tmp_path, sync_interval=SYNC)
    with TestClient(create_app(settings)) as client:
        created = client.post("/api/profiles").json()
        auth = {"Authorization": f"Bearer {created['token']}"}
        path = f"/api/profiles/{created['id']}"
        acknowledged = {}
        for movie in (1, 2):
            answer = client.put(f"{path}/ratings/{movie}", json={"rating": 4.0}, headers=auth)
            assert answer.status_code == 200
            acknowledged[movie] = 4.0
        postgres.stop()
        try:
            for request in (lambda: client.put(f"{path}/ratings/3", json={"rating": 2.0}, headers=auth),
                            lambda: client.get(f"{path}/recommendations", headers=auth),
                            lambda: client.post("/api/profiles")):
                answer = request()
                assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
                assert answer.json()["error"] == "unavailable"
            # a known user's answer needs the model only
            assert client.get("/api/users/1/recommendations").status_code == 200
        finally:
            postgres.start()
        assert client.put(f"{path}/ratings/3", json={"rating": 2.0}, headers=auth).status_code == 200
        acknowledged[3] = 2.0
        stored = client.get(path, headers=auth).json()["ratings"]
        assert {r["movie"]["item"]: r["rating"] for r in stored} == acknowledged


# -- replicas as processes --------------------------------------------------------------------------------
@pytest.fixture()
def server_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MOVIEREC_DATA": str(tmp_path / "data"), "MOVIEREC_ADMIN_TOKEN": ADMIN}


def test_serve_with_two_workers_shares_one_postgresql(model_dir: Path, second_model: Path,
                                                      postgres: PostgresServer,
                                                      server_env: dict[str, str]) -> None:
    """`movierec serve --workers 2`: two processes answer on one port; a write acknowledged by one is
    read by the other (each request on a new connection, so either may answer), and a reload through
    one is served by both."""
    url, port = postgres.new_database(), free_port()
    server = start_server("--model-dir", str(model_dir), "--database-url", url, "--workers", "2",
                          "--sync-interval", "0.2", port=port, env=server_env, timeout=60)
    base = f"http://127.0.0.1:{port}"
    try:
        replicas: set[str] = set()
        deadline = time.monotonic() + 30
        while len(replicas) < 2 and time.monotonic() < deadline:
            replicas.add(httpx.get(f"{base}/api/health").json()["replica"])
        assert len(replicas) == 2  # two processes answer
        created = httpx.post(f"{base}/api/profiles").json()
        auth = {"Authorization": f"Bearer {created['token']}"}
        for movie in range(1, 21):
            assert httpx.put(f"{base}/api/profiles/{created['id']}/ratings/{movie}", json={"rating": 3.5},
                             headers=auth).status_code == 200
            read = httpx.get(f"{base}/api/profiles/{created['id']}/recommendations?k=3", headers=auth)
            assert read.json()["rated"] == movie  # whichever worker answers has every earlier write
        reload = httpx.post(f"{base}/api/admin/reload", json={"model_dir": str(second_model)}, headers=AUTH)
        assert reload.json()["model_version"] == 2
        time.sleep(0.6)  # three sync intervals, well inside the bound
        answers = {(h["replica"], h["model"], h["model_version"])
                   for h in (httpx.get(f"{base}/api/health").json() for _ in range(40))}
        assert {(model, version) for _, model, version in answers} == {("ease", 2)}
    finally:
        stop_server(server)


def test_a_replica_started_without_a_model_serves_the_published_one(model_dir: Path,
                                                                    postgres: PostgresServer,
                                                                    server_env: dict[str, str]) -> None:
    """Two `movierec serve` processes on two ports (as on two machines): B joins with just the
    database and serves what A published; a write through A is read through B."""
    url = postgres.new_database()
    port_a, port_b = free_port(), free_port()
    a = start_server("--model-dir", str(model_dir), "--database-url", url, port=port_a, env=server_env,
                     timeout=60)
    try:
        b = start_server("--database-url", url, port=port_b, env=server_env, timeout=60)
        try:
            assert httpx.get(f"http://127.0.0.1:{port_b}/api/health").json()["model_version"] == 1
            created = httpx.post(f"http://127.0.0.1:{port_a}/api/profiles").json()
            auth = {"Authorization": f"Bearer {created['token']}"}
            profile = f"api/profiles/{created['id']}"
            httpx.put(f"http://127.0.0.1:{port_a}/{profile}/ratings/5", json={"rating": 5.0},
                      headers=auth).raise_for_status()
            read = httpx.get(f"http://127.0.0.1:{port_b}/{profile}", headers=auth).json()
            assert [(r["movie"]["item"], r["rating"]) for r in read["ratings"]] == [(5, 5.0)]
        finally:
            stop_server(b)
    finally:
        stop_server(a)
