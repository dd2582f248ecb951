"""recommend_all: every user's top-k in a Parquet file equals `recommend` user by user, whatever the
chunking or the threads; nothing partial is ever left; and evaluation scored a few users at a time
gives exactly the metrics it gives in one block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.data.split import random_split
from movierec.data.synth import synthesize
from movierec.errors import ConfigError, NotFittedError
from movierec.eval.protocol import evaluate
from movierec.export import recommend_all
from movierec.models import create_model
from movierec.models.core import recommender as recommender_module


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return synthesize(90, 70, 2500, seed=4)


@pytest.fixture(scope="module", params=["ials", "item-knn-baseline"])
def model(request: pytest.FixtureRequest, data):  # type: ignore[no-untyped-def]
    params = {"ials": {"factors": 8, "epochs": 3}, "item-knn-baseline": {}}[request.param]
    return create_model(request.param, **params).fit(data.ratings)


def expected(model, k: int, exclude_seen: bool = True) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    frames = []
    for user in model.users_.ids:
        top = model.recommend(user, k=k, exclude_seen=exclude_seen)
        frames.append(pd.DataFrame({"user": user, "rank": np.arange(1, len(top) + 1, dtype=np.int32),
                                    "item": top["item"].to_numpy(), "score": top["score"].to_numpy()}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(("chunk_users", "workers"), [(None, 1), (None, 2), (1, 2), (7, 3), (1000, 2)])
def test_the_file_equals_recommend_user_by_user(model, tmp_path: Path, chunk_users, workers) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[int, int]] = []
    summary = recommend_all(model, tmp_path / "top.parquet", 5, chunk_users=chunk_users, workers=workers,
                            progress=lambda done, total: seen.append((done, total)))
    written = pd.read_parquet(tmp_path / "top.parquet")
    pd.testing.assert_frame_equal(written, expected(model, 5), check_dtype=False)
    assert list(written.columns) == ["user", "rank", "item", "score"]
    assert summary["users"] == len(model.users_) and summary["rows"] == len(written)
    assert seen[-1] == (len(model.users_), len(model.users_))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_k_beyond_the_catalog_and_seen_movies_included(model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recommend_all(model, tmp_path / "all.parquet", 500, exclude_seen=False, chunk_users=13)
    written = pd.read_parquet(tmp_path / "all.parquet")
    assert (written.groupby("user").size() == len(model.items_)).all()  # every movie, no more
    pd.testing.assert_frame_equal(written, expected(model, 500, exclude_seen=False), check_dtype=False)


def test_bad_input_and_failures_leave_nothing_behind(data, model, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "top.parquet"
    recommend_all(model, target, 3)
    before = target.read_bytes()
    with pytest.raises(ConfigError, match="k must be"):
        recommend_all(model, target, 0)
    with pytest.raises(ConfigError, match="folder"):
        recommend_all(model, tmp_path, 3)
    with pytest.raises(ConfigError, match="workers"):
        recommend_all(model, target, 3, workers=0)
    with pytest.raises(NotFittedError):
        recommend_all(create_model("ials"), target, 3)

    calls = {"n": 0}
    original = type(model).recommend_indices

    def fails_on_the_third_chunk(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "recommend_indices", fails_on_the_third_chunk)
    with pytest.raises(RuntimeError, match="disk on fire"):
        recommend_all(model, target, 3, chunk_users=10)
    assert target.read_bytes() == before  # the earlier file, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["top.parquet"]  # no partial file beside it


@pytest.mark.parametrize("name", ["ials", "bias"])
def test_evaluation_a_few_users_at_a_time_equals_one_block(data, name: str,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    split = random_split(data.ratings, 0.8, 1)
    model = create_model(name).fit(split.train)
    whole = evaluate(model, split, k=10)
    monkeypatch.setattr(recommender_module, "_BLOCK_SCORES", 3 * len(model.items_))  # 3 users a block
    assert recommender_module.block_users(len(model.items_)) == 3
    chunked = evaluate(model, split, k=10)
    assert whole.metrics.keys() == chunked.metrics.keys()
    for key, value in whole.metrics.items():
        assert chunked.metrics[key] == pytest.approx(value, rel=0, abs=1e-12), key
