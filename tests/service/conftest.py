"""A tiny model trained on synthetic data, saved once per session, an app serving it, and a real
PostgreSQL server for the tests that need one (`postgres`, `database_url`)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import PostgresServer, binaries

with warnings.catch_warnings():  # starlette asks for httpx2 (not installed); httpx works the same here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from movierec.artifacts import save_model
from movierec.data.synth import synthesize
from movierec.models.registry import create_model
from movierec.service import Settings, create_app

ADMIN = "admin-secret-token"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthesize(60, 80, 1500, seed=3)
    model = create_model("biased-mf-als", factors=4, epochs=2).fit(data.ratings)
    folder = tmp_path_factory.mktemp("service-model") / "model"
    save_model(model, folder, catalog=data.catalog, metrics={"rmse": 0.9, "ndcg@10": 0.1},
               data={"dataset": "synthetic", "split": "random:0.9:42"})
    return folder


@pytest.fixture()
def settings(model_dir: Path, tmp_path: Path) -> Settings:
    """The service as configured by default, but without rate limits: these tests send bursts from
    one client on purpose (tests/service/test_security.py tests the limits)."""
    return Settings(model_dir=model_dir, database_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
                    admin_token=ADMIN, retrain_dir=tmp_path / "retrained", requests_per_second=0,
                    profile_writes_per_second=0, profiles_per_hour=0)


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of Debian's `postgresql` package, started in a temporary folder for this
    session. Without the package the tests that need it are skipped, except in CI (``CI`` set),
    where `scripts/test.sh` installs it and its absence is a failure."""
    bin_dir = binaries()
    if bin_dir is None:
        message = "needs Debian's postgresql (apt-get install -y postgresql)"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is missing in CI: {message}")
        pytest.skip(message)
    server = PostgresServer(bin_dir).start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store database: a SQLite file, and a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()
