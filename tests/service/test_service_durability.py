"""The service killed with SIGKILL while clients write ratings: after a restart every write that was
acknowledged (2xx) is there with its last acknowledged value, and nothing is half applied (no row
that no write explains, no rating without its profile). A real `movierec serve` process, on SQLite
(``synchronous=FULL``) and on a real PostgreSQL server; `benchmarks/reliability.py` runs many more
rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from crashes import env_with_source, kill_rounds
from movierec.errors import ConfigError
from movierec.service.store import SQLITE_SYNCHRONOUS, Store


def test_sqlite_runs_with_full_synchronous_and_wal(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        store.close()
    assert SQLITE_SYNCHRONOUS == "FULL"


@pytest.mark.parametrize("seed", [1])
def test_no_acknowledged_write_is_lost_under_kill_9(model_dir: Path, database_url: str, tmp_path: Path,
                                                    seed: int) -> None:
    env = env_with_source(MOVIEREC_DATA=str(tmp_path / "data"))
    results = list(kill_rounds(model_dir, database_url, 2, env=env, seed=seed, clients=3,
                               movies=list(range(1, 81)), write_seconds=(0.4, 1.0)))
    assert len(results) == 2
    assert all(r.acknowledged > 0 for r in results)  # the clients did write before each kill
    assert [(r.lost, r.half) for r in results] == [(0, 0), (0, 0)]


def test_sqlite_synchronous_can_be_normal_and_nothing_else(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'normal.sqlite3'}", sqlite_synchronous="normal")
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
    finally:
        store.close()
    with pytest.raises(ConfigError, match="sqlite_synchronous must be FULL, NORMAL or EXTRA, got 'OFF'"):
        Store(f"sqlite:///{tmp_path / 'off.sqlite3'}", sqlite_synchronous="OFF")
