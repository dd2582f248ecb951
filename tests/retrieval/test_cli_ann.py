"""`--ann` / `--exact` on `movierec recommend` and `recommend-all`: the index is built on first use and
saved beside the artifact, the lists keep seen movies out, and a bad mode is bad input (exit 2)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from movierec.artifacts import load_model, save_model
from movierec.cli import app
from movierec.data.synth import synthesize
from movierec.models.registry import create_model
from movierec.retrieval.index import INDEX_FILE, META_FILE

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason="faiss is not installed (pip install 'movierec[ann]')")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = synthesize(200, 1200, 10000, seed=5)
    model = create_model("ials", factors=8, epochs=2).fit(data.ratings, catalog=data.catalog)
    return save_model(model, tmp_path_factory.mktemp("ann") / "model")


def _run(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@needs_faiss
def test_recommend_all_with_ann_on_builds_saves_and_keeps_seen_movies_out(model_dir: Path,
                                                                          tmp_path: Path) -> None:
    result = _run("recommend-all", "--model-dir", model_dir, "--out", tmp_path / "ann.parquet", "-k", "5",
                  "--ann", "on", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ann_recall_at_10"] >= 0.98
    assert (model_dir / INDEX_FILE).is_file() and (model_dir / META_FILE).is_file()
    exact = _run("recommend-all", "--model-dir", model_dir, "--out", tmp_path / "exact.parquet", "-k", "5",
                 "--exact", "--json")
    assert exact.exit_code == 0 and "ann_recall_at_10" not in json.loads(exact.stdout)
    got, want = pd.read_parquet(tmp_path / "ann.parquet"), pd.read_parquet(tmp_path / "exact.parquet")
    assert len(got) == len(want)
    model = load_model(model_dir).model
    seen = model.seen_
    users, items = model.users_.indices(got["user"].to_numpy()), model.items_.indices(got["item"].to_numpy())
    assert not any(seen[u, i] for u, i in zip(users.tolist(), items.tolist(), strict=True))
    overlap = got.merge(want, on=["user", "item"])
    assert len(overlap) / len(want) >= 0.95  # recall@5 of the approximate lists


@needs_faiss
def test_recommend_with_ann_on_lists_the_users_movies(model_dir: Path) -> None:
    user = str(load_model(model_dir).model.users_.ids[0])
    ann = _run("recommend", "--model-dir", model_dir, "--user", user, "--ann", "on", "--json")
    exact = _run("recommend", "--model-dir", model_dir, "--user", user, "--exact", "--json")
    assert ann.exit_code == 0 and exact.exit_code == 0, ann.output + exact.output
    got = [r["item"] for r in json.loads(ann.stdout)["recommendations"]]
    want = [r["item"] for r in json.loads(exact.stdout)["recommendations"]]
    assert len(got) == 10 and len(set(got) & set(want)) >= 9


def test_a_bad_ann_mode_is_bad_input(model_dir: Path) -> None:
    user = str(load_model(model_dir).model.users_.ids[0])
    result = _run("recommend", "--model-dir", model_dir, "--user", user, "--ann", "maybe")
    assert result.exit_code == 2
    assert "ann must be one of auto, on, off, got 'maybe'" in result.output
