"""Settings: environment defaults, explicit values winning, bad values refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from movierec.errors import ConfigError
from movierec.service import Settings


def test_environment_fills_what_the_caller_left_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOVIEREC_DATABASE_URL", "postgresql+psycopg://u@db/movierec")
    monkeypatch.setenv("MOVIEREC_ADMIN_TOKEN", "from-the-environment")
    settings = Settings.from_env(tmp_path)
    assert settings.database_url == "postgresql+psycopg://u@db/movierec"
    assert settings.admin_token == "from-the-environment"
    explicit = Settings.from_env(tmp_path, database_url="sqlite:///x.db", admin_token="given-token")
    assert (explicit.database_url, explicit.admin_token) == ("sqlite:///x.db", "given-token")


def test_defaults_live_in_the_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MOVIEREC_DATABASE_URL", raising=False)
    monkeypatch.delenv("MOVIEREC_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv("MOVIEREC_DATA", str(tmp_path / "data"))
    settings = Settings.from_env("model")
    assert settings.admin_token is None
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'data' / 'service.sqlite3'}"
    assert settings.resolved_retrain_dir() == tmp_path / "data" / "service-models"


@pytest.mark.parametrize(("change", "message"), [
    ({"max_k": 0}, "max_k must be an int >= 1, got 0"),
    ({"cache_size": -1}, "cache_size must be an int >= 0, got -1"),
    ({"max_body_bytes": 1.5}, "max_body_bytes must be an int >= 1, got 1.5"),
    ({"admin_token": "short"}, "admin_token must be at least 8 characters"),
])
def test_bad_values_are_named(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(model_dir=Path("m"), **change)
