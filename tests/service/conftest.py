"""A tiny model trained on synthetic data, saved once per session, and an app serving it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    return Settings(model_dir=model_dir, database_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
                    admin_token=ADMIN, retrain_dir=tmp_path / "retrained")


@pytest.fixture()
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
