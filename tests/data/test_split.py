"""Splits: the BENCHMARKS.md recipes row for row, and properties every split must have."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.data.dataset import Dataset, Ratings
from movierec.data.split import (
    kfold_splits,
    leave_last_split,
    make_split,
    pairs_check,
    random_split,
    temporal_split,
    user_ratio_split,
)
from movierec.errors import ConfigError, DataError

# name -> (dataset fixture, spec, train rows, train check, test rows, test check), BENCHMARKS.md
NAMED_SPLITS = {
    "ml100k-u1": ("ml100k", "u1", 80_000, "abc3d3aafd9be88b", 20_000, "83d6f87526557644"),
    "mlsmall-rand90": ("mlsmall", "random:0.9:42", 90_752, "ed3a23c4cf3f5932",
                       10_084, "5417b1020ff03c21"),
    "ml100k-strat75": ("ml100k", "user-ratio:0.75:42", 75_353, "b31b9b91d7d10b5e",
                       24_647, "a0bea469838db613"),
    "mlsmall-strat80": ("mlsmall", "user-ratio:0.8:42", 80_896, "e04768155dc465d7",
                        19_940, "77c5fdcd4fdd7b4f"),
}


@pytest.mark.parametrize("name", list(NAMED_SPLITS))
def test_named_benchmark_splits_match_exactly(name: str, request: pytest.FixtureRequest) -> None:
    fixture, spec, n_train, train_check, n_test, test_check = NAMED_SPLITS[name]
    dataset: Dataset = request.getfixturevalue(fixture)
    split = make_split(dataset, spec)
    assert (len(split.train), len(split.test)) == (n_train, n_test)
    assert pairs_check(split.train) == train_check
    assert pairs_check(split.test) == test_check


@pytest.mark.parametrize("fold", ["u1", "u2", "u3", "u4", "u5", "ua", "ub"])
def test_canonical_folds_sizes(ml100k: Dataset, fold: str) -> None:
    split = make_split(ml100k, fold)
    expected = (80_000, 20_000) if fold.startswith("u") and fold[1].isdigit() else (90_570, 9_430)
    assert (len(split.train), len(split.test)) == expected
    if fold in ("ua", "ub"):
        assert set(split.test.user_counts.tolist()) == {10}


def test_canonical_test_folds_partition_the_data(ml100k: Dataset) -> None:
    cover = sum(ml100k.folds[f"u{i}"].astype(int) for i in range(1, 6))
    assert cover.tolist() == [1] * len(ml100k.ratings)


def test_canonical_fold_missing(mlsmall: Dataset) -> None:
    with pytest.raises(ConfigError, match="canonical fold 'u1'"):
        make_split(mlsmall, "u1")


def test_pairs_check_by_hand() -> None:
    r = Ratings.from_arrays([2, 10, 2], [5, 1, 3], [1.0, 2.0, 3.0])
    import hashlib

    # numeric order: (2,3), (2,5), (10,1)
    assert pairs_check(r) == hashlib.sha256(b"2,3\n2,5\n10,1\n").hexdigest()[:16]


def test_random_split_recipe_by_hand() -> None:
    n = 10
    r = Ratings.from_arrays(np.arange(n), np.arange(n), np.ones(n))
    perm = np.random.default_rng(7).permutation(n)
    split = random_split(r, 0.75, 7)
    assert sorted(split.train.user_ids.tolist()) == sorted(perm[:7].tolist())  # floor(7.5) = 7
    assert split.recipe == "random:0.75:7"


# -- properties ------------------------------------------------------------------------------


@st.composite
def ratings_strategy(draw: st.DrawFn) -> Ratings:
    n_users = draw(st.integers(2, 8))
    n_items = draw(st.integers(2, 8))
    cells = draw(
        st.lists(st.tuples(st.integers(1, n_users), st.integers(1, n_items)),
                 min_size=4, max_size=40, unique=True)
    )
    times = draw(st.lists(st.integers(0, 5), min_size=len(cells), max_size=len(cells)))
    users = [u * 10 for u, _ in cells]  # non-contiguous raw ids
    items = [i for _, i in cells]
    ratings = [float(1 + (u + i) % 5) for u, i in cells]
    return Ratings.from_arrays(users, items, ratings, times, scale=(1, 5))


def row_keys(r: Ratings) -> list[tuple[int, int]]:
    return list(zip(r.user_ids.tolist(), r.item_ids.tolist(), strict=True))


def assert_partition(whole: Ratings, train: Ratings, test: Ratings) -> None:
    keys_train, keys_test = set(row_keys(train)), set(row_keys(test))
    assert not keys_train & keys_test
    assert keys_train | keys_test == set(row_keys(whole))
    # train keeps file order
    positions = {key: i for i, key in enumerate(row_keys(whole))}
    train_positions = [positions[key] for key in row_keys(train)]
    assert train_positions == sorted(train_positions)


@settings(max_examples=60, deadline=None)
@given(ratings_strategy(), st.floats(0.1, 0.9), st.integers(0, 2**31))
def test_random_split_partitions(r: Ratings, frac: float, seed: int) -> None:
    n_train = math.floor(len(r) * frac)
    if n_train in (0, len(r)):
        with pytest.raises(DataError):
            random_split(r, frac, seed)
        return
    split = random_split(r, frac, seed)
    assert len(split.train) == n_train
    assert_partition(r, split.train, split.test)
    assert pairs_check(random_split(r, frac, seed).test) == pairs_check(split.test)


@settings(max_examples=60, deadline=None)
@given(ratings_strategy(), st.floats(0.1, 0.9), st.integers(0, 2**31))
def test_user_ratio_keeps_ceil_per_user(r: Ratings, frac: float, seed: int) -> None:
    try:
        split = user_ratio_split(r, frac, seed)
    except DataError:
        # only when every user's ceil(n_u*frac) equals n_u (test would be empty)
        assert all(math.ceil(n * frac) == n for n in r.user_counts.tolist())
        return
    assert_partition(r, split.train, split.test)
    train_counts = dict(zip(split.train.users.ids.tolist(), split.train.user_counts.tolist(),
                            strict=True))
    for user, n_u in zip(r.users.ids.tolist(), r.user_counts.tolist(), strict=True):
        assert train_counts.get(user, 0) == math.ceil(n_u * frac)


@settings(max_examples=60, deadline=None)
@given(ratings_strategy(), st.integers(1, 3))
def test_leave_last_takes_latest_per_user(r: Ratings, n: int) -> None:
    try:
        split = leave_last_split(r, n)
    except DataError:
        assert (r.user_counts <= n).all()
        return
    assert_partition(r, split.train, split.test)
    frame = r.to_frame()
    frame["position"] = np.arange(len(frame))
    test_keys = set(row_keys(split.test))
    for _, rows in frame.groupby("user"):
        ordered = rows.sort_values(["timestamp", "position"], kind="stable")
        expected = (set(zip(ordered["user"].tail(n), ordered["item"].tail(n), strict=True))
                    if len(rows) > n else set())
        got = {key for key in zip(rows["user"], rows["item"], strict=True) if key in test_keys}
        assert got == expected


@settings(max_examples=40, deadline=None)
@given(ratings_strategy(), st.floats(0.2, 0.8))
def test_temporal_train_precedes_test(r: Ratings, frac: float) -> None:
    try:
        split = temporal_split(r, frac)
    except DataError:
        return
    assert_partition(r, split.train, split.test)
    assert split.train.timestamp.max() <= split.test.timestamp.min()
    assert len(split.train) == math.floor(len(r) * frac)


@settings(max_examples=40, deadline=None)
@given(ratings_strategy(), st.integers(2, 4), st.integers(0, 100))
def test_kfold_test_parts_partition(r: Ratings, k: int, seed: int) -> None:
    if len(r) < k:
        return
    folds = kfold_splits(r, k, seed)
    seen: list[tuple[int, int]] = []
    for split in folds:
        assert_partition(r, split.train, split.test)
        seen += row_keys(split.test)
    assert sorted(seen) == sorted(row_keys(r))


def test_splits_need_timestamps() -> None:
    r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="timestamps"):
        temporal_split(r, 0.5)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("random:2", "between 0 and 1"),
        ("random:x:1", "FRAC must be a float"),
        ("user-ratio:0.5:abc", "SEED must be a int"),
        ("leave-last:0", "n must be an int >= 1"),
        ("kfold:5:6:1", "FOLD must be between 1 and 5"),
        ("kfold:1:1:1", "k must be an int >= 2"),
        ("shuffle:0.5", "unknown split"),
        ("random:0.5:1:2", "unknown split"),
    ],
)
def test_bad_specs(ml100k: Dataset, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_split(ml100k, spec)


def test_spec_defaults_and_recipes(ml100k: Dataset) -> None:
    assert make_split(ml100k, "random").recipe == "random:0.9:42"
    assert make_split(ml100k, "user-ratio").recipe == "user-ratio:0.75:42"
    split = make_split(ml100k, "leave-last:2")
    assert len(split.test) == 2 * ml100k.ratings.n_users
