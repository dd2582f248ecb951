"""Writes that survive being killed: a model folder written by `save_model`, `movierec train --out`,
`movierec tune --out` or the service's admin retrain is, after a SIGKILL at any moment, the old
folder or the new one, whole and loadable; never half of one.

Two ways to kill: at every step of the write protocol in turn (`crashes.crash_points`: a forked
child dies just before its n-th file write, fsync, rename, exchange or delete), and real CLI and
service processes killed at seeded random moments of their run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

import movierec._files as files
from crashes import (
    COMMAND,
    crash_points,
    env_with_source,
    free_port,
    kill_after,
    start_server,
    timed,
)
from movierec._files import atomic_file, atomic_folder
from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Ratings
from movierec.models.rating.bias import BiasRecommender

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child (POSIX)")

ADMIN = "admin-secret-token"


def ratings() -> Ratings:
    return Ratings.from_arrays(
        [1, 1, 1, 2, 2, 3, 3, 3, 4, 4], [10, 20, 30, 10, 40, 20, 30, 50, 40, 50],
        [5, 3, 4, 4, 2, 1, 5, 4, 3, 5], scale=(1, 5))


def fitted(reg: float) -> BiasRecommender:
    return BiasRecommender(reg_user=reg, reg_item=1.0, epochs=3).fit(ratings())


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# -- every step of the write protocol -----------------------------------------------------------------
@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames-fallback"])
def test_save_killed_at_every_step_leaves_the_old_or_the_new_model(tmp_path: Path, exchange: bool,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if exchange and files._libc() is None:
        pytest.skip("no renameat2 here")
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    target = tmp_path / "art"
    old, new = fitted(1.0), fitted(9.0)
    save_model(old, target)
    outcomes = []

    def check(n: int) -> None:
        artifact = load_model(target)  # loads, whole: checksums, structure and answers hold
        reg = artifact.manifest["params"]["reg_user"]
        assert reg in (1.0, 9.0)
        expected = old if reg == 1.0 else new
        np.testing.assert_array_equal(artifact.model.user_bias_, expected.user_bias_)
        assert visible(tmp_path) == ["art"]  # nothing half-written under a visible name
        outcomes.append(reg)
        save_model(old, target)  # back to the old model for the next kill point (cleans leftovers)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]

    points = crash_points(lambda: save_model(new, target), check)
    # a kill before the swap keeps the old model, after it gives the new one; the uninterrupted run
    # (last) gives the new one
    assert points >= 8
    assert outcomes[0] == 1.0 and outcomes[-1] == 9.0
    first_new = outcomes.index(9.0)
    assert set(outcomes[first_new:]) == {9.0}  # once swapped, never back


def test_a_killed_fallback_swap_is_put_back_by_the_next_load(tmp_path: Path) -> None:
    """Killed between the fallback's two renames: the target is missing, the complete old folder is
    beside it under a hidden name; `load_model` renames it back."""
    target = tmp_path / "art"
    save_model(fitted(1.0), target)
    dead = tmp_path / f".art.old-{2**22 + 12345}-abcd"  # a pid no process has
    os.rename(target, dead)
    assert load_model(target).manifest["params"]["reg_user"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_leftovers_of_a_dead_writer_are_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "art"
    (tmp_path / f".art.tmp-{2**22 + 12345}-abcd").mkdir()  # dead pid
    live = tmp_path / f".art.tmp-{os.getppid()}-abcd"  # a running process (our parent)
    live.mkdir()
    save_model(fitted(1.0), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["art", live.name])


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    if files._libc() is None:
        pytest.skip("no renameat2 here")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("b")
    assert files._exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "x").read_text() == "b"
    assert (tmp_path / "b" / "x").read_text() == "a"


def test_a_failing_write_leaves_the_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "folder"
    with atomic_folder(target) as temp:
        (temp / "f").write_text("one")
    with pytest.raises(RuntimeError), atomic_folder(target) as temp:
        (temp / "f").write_text("two")
        raise RuntimeError("boom")
    assert (target / "f").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]


def test_atomic_file_killed_at_every_step_holds_old_or_new(tmp_path: Path) -> None:
    target = tmp_path / "table.json"
    target.write_text(json.dumps({"version": "old"}))
    seen = []

    def write() -> None:
        with atomic_file(target) as temp:
            temp.write_text(json.dumps({"version": "new", "padding": "x" * 100_000}))

    def check(n: int) -> None:
        seen.append(json.loads(target.read_text())["version"])  # always whole JSON
        target.write_text(json.dumps({"version": "old"}))

    points = crash_points(write, check)
    assert points >= 3 and seen[0] == "old" and seen[-1] == "new"


# -- real processes killed at random moments ------------------------------------------------------------
@pytest.fixture(scope="module")
def ratings_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(1, 120, 2500), rng.integers(1, 150, 2500),
                                             strict=True)}
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{i},{(u * 7 + i) % 10 / 2 + 0.5},{1_000_000 + n}"
              for n, (u, i) in enumerate(sorted(pairs))]
    path = tmp_path_factory.mktemp("ratings") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def baselines(ratings_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, float]]:
    """A finished `train --out` and `tune --out` folder each, and how long the run took."""
    root = tmp_path_factory.mktemp("baselines")
    env = env_with_source(MOVIEREC_DATA=str(root / "data"))
    found = {}
    for name, args in (("train", ["train", str(ratings_file), "--split", "none", "--param", "reg_user=1"]),
                       ("tune", ["tune", str(ratings_file), "--model", "bias", "--split", "none",
                                 "--trials", "2", "--seed", "1"])):
        folder = root / name
        found[name] = folder, timed([*COMMAND, *args, "--out", str(folder)], env=env)
    return found


Baselines = dict[str, tuple[Path, float]]


def _killed_run(kind: str, seed: int, ratings_file: Path, baselines: Baselines,
                tmp_path: Path) -> None:
    old, seconds = baselines[kind]
    target = tmp_path / "model"
    shutil.copytree(old, target)
    before = json.loads((target / "manifest.json").read_text())
    args = (["train", str(ratings_file), "--split", "none", "--param", "reg_user=9"] if kind == "train"
            else ["tune", str(ratings_file), "--model", "bias", "--split", "none", "--trials", "2",
                  "--seed", "2"])
    # a moment in the second half of a run, where the folder is written
    delay = seconds * random.Random(seed).uniform(0.5, 1.05)
    code = kill_after([*COMMAND, *args, "--out", str(target)], delay,
                      env=env_with_source(MOVIEREC_DATA=str(tmp_path / "data")))
    assert code in (None, 0)
    artifact = load_model(target)  # whole: checksums, structure and stored answers hold
    if artifact.manifest != before:  # the new one, complete
        assert artifact.manifest["data"]["dataset"] == str(ratings_file)
        if kind == "train":
            assert artifact.manifest["params"]["reg_user"] == 9.0
        else:
            assert artifact.manifest["data"]["tune"]["study"]["random_state"] == 2
    else:
        assert code is None  # a finished run replaced it
    assert visible(tmp_path) == (["data", "model"] if (tmp_path / "data").exists() else ["model"])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_train_out_killed_at_a_random_moment(seed: int, ratings_file: Path, baselines: Baselines,
                                             tmp_path: Path) -> None:
    _killed_run("train", seed, ratings_file, baselines, tmp_path)


@pytest.mark.parametrize("seed", [4, 5])
def test_tune_out_killed_at_a_random_moment(seed: int, ratings_file: Path, baselines: Baselines,
                                            tmp_path: Path) -> None:
    _killed_run("tune", seed, ratings_file, baselines, tmp_path)


def test_admin_retrain_killed_at_random_moments(baselines: Baselines, tmp_path: Path) -> None:
    """The service killed while a retrain fits or saves: the served model's folder is untouched and
    every folder in the retrain folder is whole (a visible name means a complete model)."""
    served, _ = baselines["train"]
    before = (served / "manifest.json").read_bytes()
    data = tmp_path / "data"
    env = env_with_source(MOVIEREC_DATA=str(data), MOVIEREC_ADMIN_TOKEN=ADMIN)
    rng = random.Random(7)
    for round_ in range(2):
        # a fresh database: the killed replica's job stays "running" until it goes stale (120 s)
        database = f"sqlite:///{tmp_path / f'store-{round_}.sqlite3'}"
        port = free_port()
        server = start_server("--model-dir", str(served), "--database-url", database, port=port, env=env)
        try:
            answer = httpx.post(f"http://127.0.0.1:{port}/api/admin/retrain", json={"params": {"epochs": 40}},
                                headers={"X-Admin-Token": ADMIN}, timeout=30)
            assert answer.status_code == 202, answer.text
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            server.kill()
            server.wait()
        assert (served / "manifest.json").read_bytes() == before
        load_model(served)
        retrained = data / "service-models"
        for folder in (retrained.iterdir() if retrained.exists() else []):
            if not folder.name.startswith("."):
                assert load_model(folder).manifest["params"]["epochs"] == 40
