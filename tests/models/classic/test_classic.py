"""Neural presets: learning, the per-example dot product, classifier outputs, fallbacks, determinism,
fold-in, persistence, hyperparameter errors, the lazy Adam and hand-written gradients against
references, and (slow) the Keras recipe's target on mlsmall-rand90."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from devices import assert_same_run
from movierec.artifacts import load_model, read_manifest, save_model
from movierec.data.dataset import Dataset, Ratings
from movierec.data.split import Split, make_split, random_split
from movierec.data.synth import synthesize
from movierec.errors import ConfigError, DataError
from movierec.models.classic.dot_bias_sigmoid import DotBiasSigmoid
from movierec.models.classic.embedding_mlp import EmbeddingMLP, EmbeddingRegressor
from movierec.models.classic.mean_normalized_mf import MeanNormalizedMF
from movierec.models.classic.rating_classifier import RatingClassifier
from movierec.models.classic.shared import LazyAdam as _LazyAdam
from movierec.models.core.recommender import Recommender
from movierec.models.registry import MODELS

# Small-data settings (the defaults are sized for MovieLens; 4,800 ratings need more steps).
PRESETS: dict[str, tuple[type[Recommender], dict[str, Any]]] = {
    "embedding-mlp": (EmbeddingMLP, {"epochs": 10, "batch_size": 128}),
    "dot-bias-sigmoid": (DotBiasSigmoid, {"factors": 8, "epochs": 12, "learning_rate": 3e-3,
                                          "reg": 1e-3}),
    "rating-classifier": (RatingClassifier, {"epochs": 10, "batch_size": 128}),
    "mean-normalized-mf": (MeanNormalizedMF, {"epochs": 100}),
    "embedding-regressor": (EmbeddingRegressor, {"batch_size": 128}),
}
NAMES = list(PRESETS)


@pytest.fixture(scope="module")
def split() -> Split:
    return random_split(synthesize(200, 100, 6000, seed=1).ratings, 0.8, 0)


@pytest.fixture(scope="module")
def fitted(split: Split) -> dict[str, Recommender]:
    """Every preset fitted once; the regressor stops early on its own carve-out of train."""
    models = {}
    for name, (cls, params) in PRESETS.items():
        valid = None if name == "embedding-regressor" else split.test
        models[name] = cls(**params).fit(split.train, valid)
    return models


def rmse(model: Recommender, ratings: Ratings) -> float:
    predicted = model.predict(ratings.user_ids, ratings.item_ids)
    return float(np.sqrt(np.mean((predicted - ratings.rating) ** 2)))


# -- learning ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_each_preset_learns(name: str, fitted: dict[str, Recommender], split: Split) -> None:
    model = fitted[name]
    global_mean = float(np.sqrt(np.mean((split.test.rating - split.train.rating.mean()) ** 2)))
    assert global_mean == pytest.approx(1.04, abs=0.01)
    assert rmse(model, split.test) < global_mean - 0.08
    assert model.name == name
    history = model.history_
    assert 1 <= len(history) <= model.epochs
    assert [r["epoch"] for r in history] == list(range(1, len(history) + 1))
    for record in history:
        assert {"epoch", "epochs", "train_loss", "train_rmse", "lr", "seconds",
                "valid_loss", "valid_rmse"} <= set(record)
        assert all(math.isfinite(v) for v in record.values())
    assert history[-1]["train_rmse"] < history[0]["train_rmse"]


def test_callback_gets_each_history_record(split: Split) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    model = EmbeddingMLP(epochs=3, batch_size=256).fit(split.train, split.test,
                                                       callback=lambda e, r: seen.append((e, r)))
    assert [e for e, _ in seen] == ["epoch"] * 3
    assert [r for _, r in seen] == model.history_
    model = DotBiasSigmoid(epochs=2).fit(split.train, callback=lambda e, r: seen.append((e, r)))
    assert [r for _, r in seen[3:]] == model.history_
    assert "valid_loss" not in model.history_[0]


# -- dot-bias-sigmoid: the dot product is per example -----------------------------------------------
def test_dot_product_is_per_example(fitted: dict[str, Recommender], split: Split) -> None:
    model = fitted["dot-bias-sigmoid"]
    low, high = model.scale_
    users, items = split.train.user_index[:2], split.train.item_index[:2]
    assert users[0] != users[1] and items[0] != items[1]
    got = model.predict(model.users_.ids[users], model.items_.ids[items])
    for n in range(2):
        z = (float(model.user_factors_[users[n]] @ model.item_factors_[items[n]])
             + model.user_bias_[users[n]] + model.item_bias_[items[n]])
        assert got[n] == pytest.approx(low + (high - low) / (1 + math.exp(-z)), abs=1e-6)
    assert abs(got[0] - got[1]) > 1e-3
    # The training loss that was recorded is the mean of per-example BCEs under the final weights.
    z = (np.einsum("nk,nk->n", model.user_factors_[split.train.user_index],
                   model.item_factors_[split.train.item_index]).astype(np.float64)
         + model.user_bias_[split.train.user_index] + model.item_bias_[split.train.item_index])
    y = (split.train.rating - low) / (high - low)
    bce = np.mean(np.logaddexp(0, z) - y * z)
    assert model.history_[-1]["train_loss"] == pytest.approx(bce, abs=1e-4)


def test_dot_bias_sigmoid_unknown_ids(fitted: dict[str, Recommender]) -> None:
    model = fitted["dot-bias-sigmoid"]
    low, high = model.scale_
    user, item = model.users_.ids[3], model.items_.ids[5]
    got = model.predict([10**6, user, 10**6], [item, 10**6, 10**6])
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    np.testing.assert_allclose(got, [low + (high - low) * sigmoid(model.item_bias_[5]),
                                     low + (high - low) * sigmoid(model.user_bias_[3]),
                                     (low + high) / 2], atol=1e-6)


# -- rating-classifier ------------------------------------------------------------------------------
def test_classifier_outputs(fitted: dict[str, Recommender], split: Split) -> None:
    model = fitted["rating-classifier"]
    levels = np.unique(split.train.rating)
    np.testing.assert_array_equal(model.levels_.numpy(), levels)
    users, items = split.test.user_ids, split.test.item_ids
    expected = model.predict(users, items)
    assert expected.min() >= levels[0] and expected.max() <= levels[-1]
    best = model.predict_argmax(users, items)
    assert set(np.unique(best)) <= set(levels.tolist())
    assert len(np.unique(best)) >= 2
    # The expected value sits within a step or two of the most probable level.
    assert np.median(np.abs(expected - best)) < 1.0
    record = model.history_[-1]
    assert 0 < record["valid_accuracy"] < 1
    manual_rmse = float(np.sqrt(np.mean((best - split.test.rating) ** 2)))
    assert record["valid_argmax_rmse"] == pytest.approx(manual_rmse, abs=1e-5)
    accuracy = float(np.mean(best == split.test.rating))
    assert record["valid_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    with pytest.raises(ConfigError, match="same length"):
        model.predict_argmax([1, 2], [1])


def test_classifier_levels_follow_the_data() -> None:
    ratings = synthesize(60, 40, 1200, seed=2, scale="1-5").ratings
    model = RatingClassifier(epochs=2, batch_size=256).fit(ratings)
    np.testing.assert_array_equal(model.levels_.numpy(), [1, 2, 3, 4, 5])
    assert set(np.unique(model.predict_argmax(ratings.user_ids[:50], ratings.item_ids[:50]))) <= {
        1.0, 2.0, 3.0, 4.0, 5.0}


# -- mean-normalized-mf -----------------------------------------------------------------------------
def test_mean_normalized_mf_means_and_fallbacks(fitted: dict[str, Recommender], split: Split) -> None:
    model = fitted["mean-normalized-mf"]
    train = split.train
    movie = 7
    by_hand = train.rating[train.item_index == movie].mean()
    assert model.item_mean_[movie] == pytest.approx(by_hand, abs=1e-5)
    assert model.global_mean_ == pytest.approx(train.rating.mean(), abs=1e-6)
    item = model.items_.ids[movie]
    got = model.predict([10**6, model.users_.ids[0], 10**6], [item, 10**6, 10**6])
    np.testing.assert_allclose(got, [model.item_mean_[movie] + model.item_bias_[movie],
                                     model.global_mean_, model.global_mean_], atol=1e-5)
    # A new user with no ratings is the same as an unknown one: movie mean + movie bias.
    cold = model.recommend_for_ratings([], k=3)
    best = np.argsort(-(model.item_mean_ + model.item_bias_), kind="stable")[:3]
    assert cold["item"].tolist() == model.items_.ids[best].tolist()


@pytest.mark.parametrize("name", ["embedding-mlp", "rating-classifier"])
def test_tower_unknown_ids_use_the_average_embeddings(name: str, fitted: dict[str, Recommender]
                                                      ) -> None:
    model = fitted[name]
    item = model.items_.ids[4]
    average_user = model._scores_for_vectors(model._users_ext[-1:])[0, 4]
    assert model.predict([10**6], [item])[0] == pytest.approx(average_user, abs=1e-5)
    both = model.predict([10**6], [10**6])[0]
    assert model.scale_[0] <= both <= model.scale_[1]


# -- determinism ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_model(name: str, split: Split) -> None:
    cls, params = PRESETS[name]
    params = {**params, "epochs": 3}
    users, items = split.test.user_ids[:200], split.test.item_ids[:200]
    first = cls(**params, random_state=5).fit(split.train).predict(users, items)
    again = cls(**params, random_state=5).fit(split.train).predict(users, items)
    other = cls(**params, random_state=6).fit(split.train).predict(users, items)
    assert_same_run(first, again)
    assert not np.allclose(first, other)


# -- fold-in ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_fold_in_of_a_training_user_agrees_with_the_trained_user(
        name: str, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    counts = np.diff(model.seen_.indptr)
    user = int(np.argmax(counts))
    history = model.user_history(model.users_.ids[user])
    folded = model.recommend_for_ratings(zip(history["item"], history["rating"], strict=True),
                                         k=len(model.items_), exclude_rated=False)
    all_items = model.items_.ids
    trained = model.predict(np.full(len(all_items), model.users_.ids[user]), all_items)
    folded_scores = folded.set_index("item")["score"].reindex(all_items).to_numpy()
    rho = spearmanr(folded_scores, trained)[0]
    assert rho > 0.5, rho


@pytest.mark.parametrize("name", NAMES)
def test_fold_in_ignores_unknown_movies_and_handles_none(name: str, fitted: dict[str, Recommender]
                                                         ) -> None:
    model = fitted[name]
    item = model.items_.ids[0]
    with_unknown = model.recommend_for_ratings([(item, 5.0), (10**6, 1.0)], k=5)
    alone = model.recommend_for_ratings([(item, 5.0)], k=5)
    assert with_unknown.equals(alone)
    assert len(model.recommend_for_ratings([], k=5)) == 5


# -- persistence ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name: str, fitted: dict[str, Recommender], split: Split,
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fitted[name]
    monkeypatch.setitem(MODELS, name, type(model))
    save_model(model, tmp_path / "m", history=model.history_)
    loaded = load_model(tmp_path / "m").model
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    users, items = split.test.user_ids, split.test.item_ids
    np.testing.assert_allclose(loaded.predict(users, items), model.predict(users, items), atol=1e-6)
    user = model.users_.ids[0]
    assert loaded.recommend(user, 5)["item"].tolist() == model.recommend(user, 5)["item"].tolist()
    pairs = [(model.items_.ids[i], 4.0) for i in range(5)]
    np.testing.assert_allclose(loaded.recommend_for_ratings(pairs, 5)["score"],
                               model.recommend_for_ratings(pairs, 5)["score"], atol=1e-6)
    if isinstance(model, RatingClassifier):
        np.testing.assert_array_equal(loaded.predict_argmax(users, items),
                                      model.predict_argmax(users, items))
    assert len(read_manifest(tmp_path / "m")["history"]) == len(model.history_)


# -- hyperparameters --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (EmbeddingMLP, {"factors": 0}, "factors must be an int >= 1, got 0"),
        (EmbeddingMLP, {"hidden": "64,x"}, "hidden must be layer sizes .* got '64,x'"),
        (EmbeddingMLP, {"hidden": (64, 0)}, r"hidden must be .* got \(64, 0\)"),
        (EmbeddingMLP, {"dropout": 1.0}, "dropout must be a fraction 0 <= x < 1, got 1.0"),
        (EmbeddingMLP, {"weight_decay": -1}, "weight_decay must be a number >= 0, got -1"),
        (DotBiasSigmoid, {"learning_rate": 0}, "learning_rate must be a number > 0, got 0"),
        (DotBiasSigmoid, {"batch_size": 2.5}, "batch_size must be an int >= 1, got 2.5"),
        (DotBiasSigmoid, {"device": "tpu"}, r"device must be 'auto', 'cpu' or 'cuda\[:N\]', got 'tpu'"),
        (RatingClassifier, {"epochs": True}, "epochs must be an int >= 1, got True"),
        (MeanNormalizedMF, {"reg": -0.5}, "reg must be a number >= 0, got -0.5"),
        (MeanNormalizedMF, {"init_sd": "big"}, "init_sd must be a number >= 0, got 'big'"),
        (MeanNormalizedMF, {"threads": 0}, "threads must be an int >= 1, got 0"),
        (EmbeddingRegressor, {"valid_fraction": 1.0}, "valid_fraction must be a fraction .* got 1.0"),
        (EmbeddingRegressor, {"temporal_valid": "yes"}, "temporal_valid must be true or false, got 'yes'"),
        (EmbeddingRegressor, {"patience": 0}, "patience must be an int >= 1, got 0"),
        (EmbeddingRegressor, {"random_state": -1}, "random_state must be an int >= 0, got -1"),
    ],
)
def test_bad_hyperparameters(cls: type[Recommender], params: dict[str, Any], message: str,
                             split: Split) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**params).fit(split.train)


@pytest.mark.parametrize("cls", [cls for cls, _ in PRESETS.values()])
def test_constructor_stores_params_unchanged(cls: type[Recommender]) -> None:
    defaults = cls.default_params()
    assert cls().get_params() == defaults
    assert {"random_state", "device"} <= set(defaults) and defaults["device"] == "auto"
    if "hidden" in defaults:
        assert cls(hidden=(16, 8)).get_params()["hidden"] == (16, 8)


def test_hidden_as_string_or_tuple_builds_the_same_network(split: Split) -> None:
    a = EmbeddingMLP(hidden="16, 8", epochs=1).fit(split.train)
    b = EmbeddingMLP(hidden=(16, 8), epochs=1).fit(split.train)
    assert [layer.out_features for layer in a.module_.layers] == [16, 8, 1]
    np.testing.assert_array_equal(a.predict([1, 2], [3, 4]), b.predict([1, 2], [3, 4]))


# -- embedding-regressor: validation carve-outs ---------------------------------------------------
def test_regressor_temporal_carve_out_holds_out_the_latest_ratings(split: Split) -> None:
    train = split.train
    model = EmbeddingRegressor(temporal_valid=True, valid_fraction=0.2)
    rows, valid = model._split_valid(train, None)
    assert len(valid) == math.floor(len(train) * 0.2) and len(rows) == len(train) - len(valid)
    assert train.timestamp[rows].max() <= valid.timestamp.min()
    random_rows, _ = EmbeddingRegressor(valid_fraction=0.2)._split_valid(train, None)
    assert train.timestamp[random_rows].max() > valid.timestamp.min()
    # a caller's validation set (possibly the test part) never steers early stopping
    given_rows, given = model._split_valid(train, split.test)
    assert np.array_equal(given_rows, rows) and given.fingerprint() == valid.fingerprint()
    quick = {"epochs": 8, "patience": 1, "batch_size": 256}
    probe_users, probe_items = split.test.user_ids[:50], split.test.item_ids[:50]
    assert_same_run(
        EmbeddingRegressor(**quick).fit(train, valid=split.test).predict(probe_users, probe_items),
        EmbeddingRegressor(**quick).fit(train).predict(probe_users, probe_items))
    fitted = EmbeddingRegressor(temporal_valid=True, epochs=60, patience=1,
                                batch_size=128).fit(train)
    assert len(fitted.history_) < 60  # stopped early on the latest ratings
    undated = synthesize(50, 30, 600, seed=3, with_timestamps=False).ratings
    with pytest.raises(DataError, match="timestamps"):
        EmbeddingRegressor(temporal_valid=True).fit(undated)
    assert len(EmbeddingRegressor(valid_fraction=0.0, epochs=2).fit(undated).history_) == 2


# -- fast paths against references ----------------------------------------------------------------
def test_lazy_adam_matches_dense_keras_adam_when_every_row_is_touched() -> None:
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4)).astype(np.float32)
    table = torch.tensor(start)
    columns = torch.tensor([1.0, 1.0, 1.0, 0.0])
    adam = _LazyAdam(table, learning_rate=0.1, l2=0.05, l2_columns=columns)
    w, m, v = start.astype(np.float64), np.zeros((3, 4)), np.zeros((3, 4))
    for t in range(1, 4):
        grads = rng.normal(size=(4, 4))
        rows = np.array([0, 1, 2, 0])  # row 0 twice: its gradients add up
        adam.step(torch.as_tensor(rows), torch.as_tensor(grads, dtype=torch.float32))
        g = np.zeros((3, 4))
        np.add.at(g, rows, grads)
        g += 2 * 0.05 * w * columns.numpy()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.1 * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(table.numpy(), w, rtol=1e-5, atol=1e-6)
    # An untouched row stays exactly as it was.
    adam.step(torch.tensor([1]), torch.ones(1, 4))
    np.testing.assert_allclose(table.numpy()[[0, 2]], w[[0, 2]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["embedding-mlp", "rating-classifier"])
def test_fold_in_gradient_matches_autograd(name: str, fitted: dict[str, Recommender]) -> None:
    model = fitted[name]
    net = model.module_
    items = np.array([0, 3, 9, 17])
    ratings = np.array([4.0, 2.5, 5.0, 1.0])
    p = np.random.default_rng(1).normal(scale=0.1, size=model.factors)
    item_first = model._item_first[items].astype(np.float64)
    got = model._user_gradient(p, item_first, model._targets(ratings))
    vector = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    net64 = net.double()
    try:
        # the same float32 item part the model folds in with (recomputing it in float64 would move
        # the gradient by float32 rounding, ~1e-6 relative, which is not what this test is about)
        np.testing.assert_allclose(
            item_first, net64.item_part(net64.item[torch.as_tensor(items)]).detach().numpy(),
            rtol=1e-5, atol=1e-6)
        first = net64.user_part(vector[None]) + torch.as_tensor(item_first)
        loss = model._data_loss(net64.head(first), model._targets(ratings)) + \
            model.reg * vector.square().sum()
        loss.backward()
    finally:
        net.float()
    np.testing.assert_allclose(got, vector.grad.numpy(), rtol=1e-6, atol=1e-9)


# -- quality gate on real data ----------------------------------------------------------------------
@pytest.mark.slow
def test_dot_bias_sigmoid_reaches_the_keras_target_on_mlsmall_rand90(mlsmall: Dataset) -> None:
    split = make_split(mlsmall, "random:0.9:42")
    model = DotBiasSigmoid().fit(split.train, split.test)
    record = model.history_[-1]
    assert len(model.history_) == 5
    # valid_loss covers all 10,084 test rows (355 with a movie unknown to train, via the fallback)
    assert record["valid_loss"] <= 0.598
    assert record["valid_rmse"] <= 0.847
    assert rmse(model, split.test) == pytest.approx(record["valid_rmse"], abs=1e-4)
