"""Matrix factorisation: ALS against hand-computed ridge solves, SVD++'s implicit set, fold-in, fallbacks,
seeding, persistence, hyperparameter checks, and quality on ml-100k u1 (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from devices import assert_same_run
from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Dataset, Ratings, Vocabulary
from movierec.data.split import Split, make_split, random_split
from movierec.data.synth import synthesize
from movierec.errors import ConfigError
from movierec.models.rating.als import BiasedMFALS, RowBlocks, als_solve_rows
from movierec.models.rating.bias import BiasRecommender
from movierec.models.rating.mf import BiasedMFSGD
from movierec.models.rating.svdpp import SVDpp
from movierec.models.registry import MODELS

# Small settings: each fit takes a fraction of a second on the synthetic split.
FAST: dict[type, dict[str, Any]] = {
    BiasedMFALS: {"factors": 8},
    BiasedMFSGD: {"batch_size": 512, "learning_rate": 0.2},
    SVDpp: {"factors": 20, "batch_size": 512, "epochs": 5, "learning_rate": 0.1},
}
CLASSES = list(FAST)
# A value for each hyperparameter that must change the fitted model.
CHANGED: dict[str, Any] = {
    "factors": 12, "epochs": 2, "learning_rate": 0.02, "reg": 0.3, "bias_reg": 20.0, "implicit_reg": 0.3,
    "init_std": 0.3, "batch_size": 300, "optimizer": "adam", "lr_schedule": "cosine", "random_state": 7,
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # the test machines are shared 2-core boxes, where intra-op threads mostly wait on each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def split() -> Split:
    return random_split(synthesize(200, 100, 6000, seed=1).ratings, 0.8, 0)


def rmse(model: Any, ratings: Ratings) -> float:
    return float(np.sqrt(np.mean((model.predict(ratings.user_ids, ratings.item_ids) - ratings.rating) ** 2)))


def by_hand(model: Any, ratings: Ratings) -> np.ndarray:
    """mu + b_u + b_i + p_u·q_i from the fitted attributes, unclipped (known pairs only)."""
    u = model.users_.indices(ratings.user_ids)
    i = model.items_.indices(ratings.item_ids)
    p = model.user_factors_[u].astype(np.float64)
    if isinstance(model, SVDpp):
        p = p + model.user_implicit_[u]
    return (model.global_mean_ + model.user_bias_[u] + model.item_bias_[i]
            + np.sum(p * model.item_factors_[i], axis=1))


@pytest.fixture(scope="module")
def fitted(split: Split) -> dict[type, Any]:
    return {cls: cls(**FAST[cls]).fit(split.train) for cls in CLASSES}


# -- quality on synthetic low-rank data ----------------------------------------------------------


def test_every_model_beats_the_bias_baseline(split: Split, fitted: dict[type, Any]) -> None:
    baseline = rmse(BiasRecommender().fit(split.train), split.test)  # 0.911
    for cls, model in fitted.items():
        assert rmse(model, split.test) < baseline - 0.015, cls.__name__


# -- ALS: the batched solves are the closed-form ridge solutions ---------------------------------


def reference_solve(rows: np.ndarray, cols: np.ndarray, n_rows: int, other: np.ndarray,
                    targets: np.ndarray, reg: float, bias_reg: float) -> np.ndarray:
    """One row at a time with numpy.linalg.solve, float64."""
    out = np.zeros((n_rows, other.shape[1]))
    for r in range(n_rows):
        mine = rows == r
        if not mine.any():
            continue
        x, y = other[cols[mine]].astype(np.float64), targets[mine].astype(np.float64)
        penalty = np.append(np.full(other.shape[1] - 1, reg * mine.sum()), bias_reg)
        out[r] = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)
    return out


@pytest.mark.parametrize("bias_reg", [0.0, 2.0])  # 0 forces the primal form for every row
def test_batched_solves_equal_row_by_row_numpy(bias_reg: float) -> None:
    rng = np.random.default_rng(0)
    n_rows, n_cols, d = 30, 200, 9
    counts = np.concatenate([[0, 1, 3], rng.integers(4, 60, n_rows - 3)])  # row 0 rates nothing
    rows = np.repeat(np.arange(n_rows), counts)
    cols = np.concatenate([rng.choice(n_cols, c, replace=False) for c in counts])
    order = rng.permutation(len(rows))  # blocks must not rely on the ratings being sorted
    rows, cols = rows[order], cols[order]
    other = np.hstack([rng.normal(size=(n_cols, d - 1)), np.ones((n_cols, 1))]).astype(np.float32)
    targets = rng.normal(size=len(rows)).astype(np.float32)
    blocks = RowBlocks(rows, cols, n_rows, n_cols, torch.device("cpu"))
    assert {w for *_, w in blocks.chunks} >= {1, 4, 8, 64}  # both dual (w < d) and primal rows
    got, sse = als_solve_rows(blocks, torch.from_numpy(other), torch.from_numpy(targets), 0.1, bias_reg)
    expected = reference_solve(rows, cols, n_rows, other, targets, 0.1, bias_reg)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    residual = targets - np.sum(other[cols] * expected[rows], axis=1)
    assert sse == pytest.approx(float(residual @ residual), rel=1e-4)


def test_user_solve_matches_numpy_by_hand(split: Split) -> None:
    """Each epoch ends with the users' half-step, so every fitted [p_u, b_u] is the ridge solution
    given the final movie side; 40 factors put users with <= 32 ratings through the dual form."""
    model = BiasedMFALS(factors=40, epochs=3).fit(split.train)
    counts = split.train.user_counts
    for user in (int(np.argmin(counts)), int(np.argmax(counts))):  # 14 ratings (dual), 68 (primal)
        mine = split.train.user_index == user
        items, ratings = split.train.item_index[mine], split.train.rating[mine].astype(np.float64)
        x = np.hstack([model.item_factors_[items].astype(np.float64), np.ones((len(items), 1))])
        y = ratings - model.global_mean_ - model.item_bias_[items]
        penalty = np.append(np.full(40, 0.13 * len(items)), 1.0)  # reg * n_u on p_u, bias_reg on b_u
        solution = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)
        np.testing.assert_allclose(model.user_factors_[user], solution[:-1], rtol=1e-4, atol=1e-5)
        assert model.user_bias_[user] == pytest.approx(solution[-1], rel=1e-4, abs=1e-5)


def test_fold_in_of_a_training_user_is_that_users_solve(split: Split) -> None:
    model = BiasedMFALS(factors=40, epochs=3).fit(split.train)
    n_items = len(model.items_)
    for user in model.users_.ids[:5]:
        history = model.user_history(user)
        pairs = list(zip(history["item"].tolist(), history["rating"].tolist(), strict=True))
        folded = model.recommend_for_ratings(pairs, k=n_items, exclude_rated=False)
        known = model.recommend(user, k=n_items, exclude_seen=False)
        assert folded["item"].tolist()[:10] == known["item"].tolist()[:10]
        np.testing.assert_allclose(folded.sort_values("item")["score"], known.sort_values("item")["score"],
                                   rtol=1e-5, atol=1e-5)


def test_als_history_reports_exact_errors(split: Split) -> None:
    events: list[tuple[str, dict]] = []
    model = BiasedMFALS(factors=8, epochs=4).fit(split.train, valid=split.test,
                                                 callback=lambda e, info: events.append((e, info)))
    assert [e for e, _ in events] == ["epoch"] * 4 and [r["epoch"] for r in model.history_] == [1, 2, 3, 4]
    last = model.history_[-1]
    train_error = by_hand(model, split.train) - split.train.rating
    assert last["train_rmse"] == pytest.approx(np.sqrt(np.mean(train_error**2)), rel=1e-4)
    known = model.known_pairs(split.test.user_ids, split.test.item_ids)
    test = split.test.take(known, reindex=False)
    assert last["valid_rmse"] == pytest.approx(np.sqrt(np.mean((by_hand(model, test) - test.rating) ** 2)),
                                               rel=1e-4)
    assert model.history_[0]["train_rmse"] > last["train_rmse"]


# -- SVD++: the implicit set is the training ratings' movies -------------------------------------


def test_svdpp_implicit_term_uses_only_training_movies(split: Split, fitted: dict[type, Any]) -> None:
    model = fitted[SVDpp]
    train, test = split.train, split.test
    for user in test.user_ids[:20]:
        rated = set(train.item_ids[train.user_ids == user].tolist())
        tested = set(test.item_ids[test.user_ids == user].tolist())
        assert rated and tested and not rated & tested
        index = model.items_.indices(sorted(rated))
        expected = model.implicit_factors_[index].sum(0) / np.sqrt(len(index))
        np.testing.assert_allclose(model.user_implicit_[model.users_.index(user)], expected,
                                   rtol=1e-5, atol=1e-6)
    known = model.known_pairs(test.user_ids, test.item_ids)
    rows = test.take(known, reindex=False)
    np.testing.assert_allclose(model.predict(rows.user_ids, rows.item_ids),
                               np.clip(by_hand(model, rows), *model.scale_), rtol=1e-5)


def test_validation_data_changes_nothing_but_the_history(split: Split, fitted: dict[type, Any]) -> None:
    for cls in CLASSES:
        with_valid = cls(**FAST[cls]).fit(split.train, valid=split.test)
        assert_same_run(with_valid.predict(split.test.user_ids, split.test.item_ids),
                        fitted[cls].predict(split.test.user_ids, split.test.item_ids))
        assert "valid_rmse" in with_valid.history_[-1] and "valid_rmse" not in fitted[cls].history_[-1]


@pytest.mark.parametrize("cls", [BiasedMFSGD, SVDpp])
def test_gradient_models_report_epochs(cls: type, split: Split) -> None:
    events: list[tuple[str, dict]] = []
    model = cls(**FAST[cls]).fit(split.train, valid=split.test,
                                 callback=lambda e, info: events.append((e, info)))
    epochs = model.epochs
    assert [e for e, _ in events] == ["epoch"] * epochs and len(model.history_) == epochs
    assert model.history_[-1]["train_rmse"] < model.history_[0]["train_rmse"]
    known = model.known_pairs(split.test.user_ids, split.test.item_ids)
    test = split.test.take(known, reindex=False)
    assert model.history_[-1]["valid_rmse"] == pytest.approx(
        np.sqrt(np.mean((by_hand(model, test) - test.rating) ** 2)), rel=1e-4)


# -- the shared contract: fallbacks, seeding, persistence, hyperparameters -------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_unknown_users_and_movies_fall_back_to_biases(cls: type, fitted: dict[type, Any]) -> None:
    model = fitted[cls]
    user, item = model.users_.ids[3], model.items_.ids[5]
    u, i = model.users_.index(user), model.items_.index(item)
    got = model.predict([99_999, user, 99_999], [item, 99_999, 99_999])
    mu = model.global_mean_
    expected = np.clip([mu + model.item_bias_[i], mu + model.user_bias_[u], mu], *model.scale_)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    cold = model.recommend_for_ratings([(99_999, 4.0)], k=3)
    top = np.argsort(-model.item_bias_, kind="stable")[:3]
    assert cold["item"].tolist() == model.items_.ids[top].tolist()
    np.testing.assert_allclose(cold["score"], mu + model.item_bias_[top], rtol=1e-6)


@pytest.mark.parametrize("cls", CLASSES)
def test_fold_in_solves_the_new_user_with_the_movies_frozen(cls: type, fitted: dict[type, Any]) -> None:
    model = fitted[cls]
    items = model.items_.ids[[1, 4, 9, 16, 25]]
    ratings = np.array([5.0, 4.0, 1.0, 2.0, 4.5])
    scores = model.recommend_for_ratings(list(zip(items, ratings, strict=True)), k=len(model.items_),
                                         exclude_rated=False).sort_values("item")["score"].to_numpy()
    index = model.items_.indices(items)
    q = model.item_factors_[index].astype(np.float64)
    offset = np.zeros(q.shape[1])
    if cls is SVDpp:
        offset = model.implicit_factors_[index].sum(0) / np.sqrt(len(index))
    x = np.hstack([q, np.ones((5, 1))])
    y = ratings - model.global_mean_ - model.item_bias_[index] - q @ offset
    bias_penalty = model.bias_reg if cls is BiasedMFALS else model.reg * 5
    penalty = np.append(np.full(q.shape[1], model.reg * 5), bias_penalty)
    solution = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)
    expected = (model.global_mean_ + solution[-1] + model.item_bias_
                + model.item_factors_ @ (solution[:-1] + offset))
    # recommendation scores of a rating model are shown clipped to the scale, like predictions
    np.testing.assert_allclose(scores, np.clip(expected, *model.scale_), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", CLASSES)
def test_same_seed_same_model_other_seed_other_model(cls: type, split: Split) -> None:
    users, items = split.test.user_ids, split.test.item_ids
    first = cls(**FAST[cls]).fit(split.train).predict(users, items)
    again = cls(**FAST[cls]).fit(split.train).predict(users, items)
    other = cls(**FAST[cls] | {"random_state": 1}).fit(split.train).predict(users, items)
    assert_same_run(first, again)
    assert np.abs(first - other).max() > 1e-3


@pytest.mark.parametrize("cls", CLASSES)
def test_every_hyperparameter_changes_the_result(cls: type, split: Split, fitted: dict[type, Any]) -> None:
    users, items = split.test.user_ids[:300], split.test.item_ids[:300]
    base = fitted[cls].predict(users, items)
    for name in cls.param_names():
        if name == "device":
            continue
        changed = cls(**FAST[cls] | {name: CHANGED[name]}).fit(split.train).predict(users, items)
        assert np.abs(changed - base).max() > 1e-4, f"{cls.__name__}: {name} changed nothing"


@pytest.mark.parametrize("cls", CLASSES)
def test_save_load_round_trip(cls: type, fitted: dict[type, Any], split: Split, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, cls.name, cls)
    model = fitted[cls]
    save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model").model
    assert type(loaded) is cls and loaded.get_params() == model.get_params()
    users, items = split.test.user_ids, split.test.item_ids
    np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))
    user = model.users_.ids[0]
    assert loaded.recommend(user, k=10)["item"].tolist() == model.recommend(user, k=10)["item"].tolist()
    pairs = [(model.items_.ids[0], 5.0), (model.items_.ids[1], 1.0)]
    np.testing.assert_allclose(loaded.recommend_for_ratings(pairs, k=5)["score"],
                               model.recommend_for_ratings(pairs, k=5)["score"], rtol=1e-9)


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (BiasedMFALS, {"factors": 0}, "factors must be an int >= 1, got 0"),
        (BiasedMFALS, {"factors": 2.5}, "factors must be an int >= 1, got 2.5"),
        (BiasedMFALS, {"epochs": 0}, "epochs must be an int >= 1, got 0"),
        (BiasedMFALS, {"reg": 0}, "reg must be a number > 0, got 0"),
        (BiasedMFALS, {"bias_reg": -1.0}, "bias_reg must be a number >= 0, got -1.0"),
        (BiasedMFALS, {"random_state": -1}, "random_state must be an int >= 0, got -1"),
        (BiasedMFALS, {"device": "tpu"}, "device must be 'auto', 'cpu' or 'cuda"),
        (BiasedMFSGD, {"learning_rate": 0}, "learning_rate must be a number > 0, got 0"),
        (BiasedMFSGD, {"reg": float("nan")}, "reg must be a number >= 0, got nan"),
        (BiasedMFSGD, {"init_std": -0.1}, "init_std must be a number > 0, got -0.1"),
        (BiasedMFSGD, {"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        (BiasedMFSGD, {"optimizer": "lbfgs"}, "optimizer must be one of adam, .*, got 'lbfgs'"),
        (BiasedMFSGD, {"lr_schedule": "linear"}, "lr_schedule must be .*got 'linear'"),
        (SVDpp, {"implicit_reg": "high"}, "implicit_reg must be a number >= 0, got 'high'"),
        (SVDpp, {"epochs": True}, "epochs must be an int >= 1, got True"),
    ],
)
def test_bad_hyperparameters_are_named(cls: type, params: dict, message: str, split: Split) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**params).fit(split.train)


@pytest.mark.parametrize("cls", CLASSES)
def test_constructor_stores_hyperparameters_unchanged(cls: type) -> None:
    params = {name: CHANGED[name] for name in cls.param_names() if name != "device"} | {"device": "cpu"}
    assert cls(**params).get_params() == params
    assert not cls().is_fitted


def test_ids_without_training_ratings_keep_no_random_factors() -> None:
    # synthetic vocabularies hold every id, rated or not: movie 30 has no rating here
    users, items = np.repeat(np.arange(1, 21), 3), np.tile([1, 2, 3], 20)
    values = np.where(users % 2 == 0, 5.0, 1.0) * (items != 3) + 3.0 * (items == 3)
    ratings = Ratings.from_arrays(users, items, values, scale=(1, 5),
                                  items=Vocabulary(np.arange(1, 31), "movie"))
    for cls in CLASSES:
        model = cls(**FAST[cls]).fit(ratings)
        np.testing.assert_array_equal(model.item_factors_[29], 0.0)
        assert model.item_bias_[29] == 0.0
        assert model.predict([2], [30])[0] == pytest.approx(model.global_mean_ + model.user_bias_[1])


# -- quality on ml-100k u1 (BENCHMARKS.md anchors: LensKit BiasedMF 0.920, Surprise SVD 0.938 and
# SVD++ 0.922, mean of u1..u5; u1 is the hardest fold) ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "measured"), [(BiasedMFALS, 0.9229), (BiasedMFSGD, 0.9282), (SVDpp, 0.9211)])
def test_quality_on_ml100k_u1(cls: type, measured: float, ml100k: Dataset) -> None:
    split = make_split(ml100k, "u1")
    assert rmse(cls().fit(split.train), split.test) < measured + 0.005
