"""Item kNN with baselines: a hand-computed case, a loop-by-loop reference (Surprise's algorithm), the
scoring paths against each other, fold-in, hyperparameters, persistence, quality on ml-100k."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Dataset, Ratings
from movierec.data.split import make_split
from movierec.data.synth import synthesize
from movierec.errors import ConfigError
from movierec.models.rating.bias import BiasRecommender
from movierec.models.rating.knn_baseline import ItemKNNBaseline
from movierec.models.registry import MODELS


def tiny() -> Ratings:
    """Residuals e = r - 3 (rows users A-D, columns movies x, y, z, w; A has not rated w):

        A:  1 -1  0  .
        B:  2  0 -1 -1
        C: -1  0  1  0
        D: -2  1  0  1

    Every row and column sums to 0 and the mean rating is 3, so with no regularisation the
    baseline is exactly mu = 3, b_u = b_i = 0 after any number of sweeps.
    """
    rows = [("A", "x", 4), ("A", "y", 2), ("A", "z", 3),
            ("B", "x", 5), ("B", "y", 3), ("B", "z", 2), ("B", "w", 2),
            ("C", "x", 2), ("C", "y", 3), ("C", "z", 4), ("C", "w", 3),
            ("D", "x", 1), ("D", "y", 4), ("D", "z", 3), ("D", "w", 4)]
    users, items, values = zip(*rows, strict=True)
    return Ratings.from_arrays(list(users), list(items), list(values), scale=(1, 5))


def hand_model(**params: object) -> ItemKNNBaseline:
    return ItemKNNBaseline(**({"shrinkage": 0, "reg_user": 0, "reg_item": 0} | params)).fit(tiny())


def test_similarity_and_prediction_by_hand() -> None:
    model = hand_model(k=2)
    assert model.global_mean_ == 3.0
    np.testing.assert_array_equal(model.user_bias_, 0.0)
    np.testing.assert_array_equal(model.item_bias_, 0.0)
    # w's common raters with every other movie are B, C, D; e_w = (-1, 0, 1), sum e_w^2 = 2.
    #   x: e = (2, -1, -2): sum e_x e_w = -4, sum e_x^2 = 9 -> -4 / sqrt(18) < 0: dropped
    #   y: e = (0, 0, 1):   sum = 1, sum e_y^2 = 1 -> 1 / sqrt(2)
    #   z: e = (-1, 1, 0):  sum = 1, sum e_z^2 = 2 -> 1 / 2
    # Over their 4 common raters, x-y: sum e_x e_y = -1 - 2 = -3 < 0; x-z: -2 - 1 = -3 < 0; y-z: 0.
    # Movies are indexed w, x, y, z (sorted ids); the matrix keeps max(s, 0), no diagonal.
    r2 = 1 / math.sqrt(2)
    expected = np.array([[0, 0, r2, 0.5], [0, 0, 0, 0], [r2, 0, 0, 0], [0.5, 0, 0, 0]])
    np.testing.assert_allclose(model.similarity_[:4, :4], expected, rtol=1e-6)
    assert model.active_.tolist() == [0, 1, 2, 3]
    # r̂_Aw = 3 + (s_wy e_Ay + s_wz e_Az) / (s_wy + s_wz) = 3 + (r2 * -1 + 0.5 * 0) / (r2 + 0.5)
    #       = 3 - (2 - sqrt(2)) = 1 + sqrt(2)
    assert model.predict(["A"], ["w"])[0] == pytest.approx(1 + math.sqrt(2), rel=1e-6)
    # k = 1: only y (the most similar of A's movies) -> 3 + e_Ay = 2
    assert hand_model(k=1).predict(["A"], ["w"])[0] == pytest.approx(2.0, rel=1e-6)
    # k = 3 takes x too, but its similarity is negative: same as k = 2.
    assert hand_model(k=3).predict(["A"], ["w"])[0] == pytest.approx(1 + math.sqrt(2), rel=1e-6)
    # min_k = 3: only two neighbours are positive -> the baseline 3
    assert hand_model(k=3, min_k=3).predict(["A"], ["w"])[0] == 3.0
    # shrinkage 2 scales both similarities by (3 - 1) / (3 - 1 + 2) = 1/2: the weighted mean stays.
    shrunk = hand_model(k=2, shrinkage=2)
    assert shrunk.similarity_[0, 2] == pytest.approx(r2 / 2, rel=1e-6)
    assert shrunk.predict(["A"], ["w"])[0] == pytest.approx(1 + math.sqrt(2), rel=1e-6)
    # Unknown user, movie or both: the baseline's fallbacks (mu + b_i, mu + b_u, mu) = 3 here.
    np.testing.assert_array_equal(model.predict(["Z", "A", "Z"], ["w", "v", "v"]), [3.0, 3.0, 3.0])


def reference_similarity(model: ItemKNNBaseline) -> np.ndarray:
    """s_ij by loops over movie pairs, as Surprise writes it (on all movies, before max(s, 0))."""
    seen = model.seen_.tocsc()
    n = seen.shape[1]
    residual = {}
    for j in range(n):
        users = seen.indices[seen.indptr[j] : seen.indptr[j + 1]]
        ratings = seen.data[seen.indptr[j] : seen.indptr[j + 1]].astype(np.float64)
        residual[j] = dict(zip(users.tolist(), ratings - model.global_mean_ - model.user_bias_[users]
                               - model.item_bias_[j], strict=True))
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            common = sorted(set(residual[i]) & set(residual[j]))
            if i == j or len(common) < 2:
                continue
            ei = np.array([residual[i][u] for u in common])
            ej = np.array([residual[j][u] for u in common])
            denominator = math.sqrt((ei**2).sum() * (ej**2).sum())
            if denominator > 0:
                shrink = (len(common) - 1) / (len(common) - 1 + model.shrinkage)
                sim[i, j] = (ei @ ej) / denominator * shrink
    return sim


def reference_predict(model: ItemKNNBaseline, sim: np.ndarray, user: int, item: int) -> float:
    """Surprise's KNNBaseline.estimate for one known (user index, item index) pair."""
    row = model.seen_[user]
    baseline = model.global_mean_ + model.user_bias_[user]
    neighbours = sorted(zip(sim[item, row.indices], row.indices, row.data, strict=True), reverse=True)
    total = weighted = 0.0
    count = 0
    for s, j, r in neighbours[: model.k]:
        if s > 0:
            total += s
            weighted += s * (r - baseline - model.item_bias_[j])
            count += 1
    return baseline + model.item_bias_[item] + (weighted / total if count >= model.min_k else 0.0)


@pytest.fixture(scope="module")
def synthetic() -> Ratings:
    return synthesize(100, 60, 2000, seed=1).ratings


@pytest.fixture(scope="module")
def fitted(synthetic: Ratings) -> ItemKNNBaseline:
    return ItemKNNBaseline(k=10, shrinkage=5).fit(synthetic)


@pytest.fixture(scope="module")
def pairs(synthetic: Ratings) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(1, 101, 400), rng.integers(1, 61, 400)  # raw ids, training pairs included


def test_agrees_with_a_loop_reference(fitted: ItemKNNBaseline,
                                      pairs: tuple[np.ndarray, np.ndarray]) -> None:
    sim = reference_similarity(fitted)
    full = np.zeros_like(sim)
    full[np.ix_(fitted.active_, fitted.active_)] = fitted.similarity_[:-1, :-1]
    np.testing.assert_allclose(full, np.maximum(sim, 0), atol=1e-6)
    np.testing.assert_array_equal(fitted.similarity_[-1], 0)  # the padding row
    users, items = pairs
    user_index, item_index = fitted.users_.indices(users), fitted.items_.indices(items)
    expected = [reference_predict(fitted, sim, u, i) for u, i in zip(user_index, item_index, strict=True)]
    np.testing.assert_allclose(fitted.predict(users, items), np.clip(expected, *fitted.scale_), atol=1e-5)


def test_batch_predictions_equal_one_at_a_time(fitted: ItemKNNBaseline,
                                               pairs: tuple[np.ndarray, np.ndarray]) -> None:
    users, items = pairs
    users, items = np.r_[users, 999, 1], np.r_[items, 1, 999]  # with unknown ids
    batch = fitted.predict(users, items)
    single = [fitted.predict([u], [i])[0] for u, i in zip(users, items, strict=True)]
    np.testing.assert_allclose(batch, single, rtol=1e-6)


@pytest.mark.parametrize("params", [{}, {"k": 4, "min_k": 3}])
def test_score_users_agrees_with_predict(fitted: ItemKNNBaseline, synthetic: Ratings, params: dict) -> None:
    model = ItemKNNBaseline(**({"k": 10, "shrinkage": 5} | params)).fit(synthetic) if params else fitted
    n_items = len(model.items_)
    for user in (1, 7, 42):  # different rating counts, so different padding widths
        recs = model.recommend(user, k=n_items, exclude_seen=False)
        predicted = model.predict(np.full(n_items, user), recs["item"].to_numpy())
        np.testing.assert_allclose(predicted, np.clip(recs["score"], *model.scale_), rtol=1e-6)
    batch = model.recommend_batch([1, 7, 42], k=5)
    assert batch[batch["user"] == 7]["item"].tolist() == model.recommend(7, k=5)["item"].tolist()


def test_fold_in_reproduces_a_training_user(fitted: ItemKNNBaseline) -> None:
    """The baseline's last sweep solves each user's bias in closed form given the movie biases; fold-in
    runs the same solve, so a known user's own ratings give back that user's scores."""
    n_items = len(fitted.items_)
    for user in (3, 42):
        history = fitted.user_history(user)
        rated = list(zip(history["item"].tolist(), history["rating"].tolist(), strict=True))
        folded = fitted.recommend_for_ratings(rated, k=n_items, exclude_rated=False)
        known = fitted.recommend(user, k=n_items, exclude_seen=False)
        folded, known = folded.sort_values("item"), known.sort_values("item")
        assert folded["item"].tolist() == known["item"].tolist()
        np.testing.assert_allclose(folded["score"], known["score"], rtol=1e-6)


def test_fold_in_without_known_movies_is_the_baseline(fitted: ItemKNNBaseline) -> None:
    cold = fitted.recommend_for_ratings([(999, 4.0)], k=5)
    order = np.argsort(-fitted.item_bias_, kind="stable")[:5]
    assert cold["item"].tolist() == fitted.items_.ids[order].tolist()
    np.testing.assert_allclose(cold["score"], fitted.global_mean_ + fitted.item_bias_[order])


def test_min_k_out_of_reach_gives_exactly_the_baseline(synthetic: Ratings,
                                                       pairs: tuple[np.ndarray, np.ndarray]) -> None:
    users, items = pairs
    model = ItemKNNBaseline(k=500, min_k=500, reg_user=5, reg_item=3, baseline_epochs=4).fit(synthetic)
    bias = BiasRecommender(reg_user=5, reg_item=3, epochs=4).fit(synthetic)
    np.testing.assert_array_equal(model.predict(users, items), bias.predict(users, items))


def test_movies_with_one_rating_have_no_neighbours(synthetic: Ratings) -> None:
    # Only the first rating of every movie: nothing has two raters, every prediction is the baseline.
    _, first = np.unique(synthetic.item_index, return_index=True)
    once = synthetic.take(np.sort(first))
    model = ItemKNNBaseline().fit(once)
    assert len(model.active_) == 0 and model.similarity_.shape == (1, 1)
    users, items = once.user_ids, once.item_ids
    baseline = BiasRecommender().fit(once).predict(users, items)
    np.testing.assert_array_equal(model.predict(users, items), baseline)


def test_every_hyperparameter_changes_predictions(synthetic: Ratings,
                                                  pairs: tuple[np.ndarray, np.ndarray]) -> None:
    users, items = pairs
    base = ItemKNNBaseline().fit(synthetic).predict(users, items)
    changes = {"k": 5, "min_k": 10, "shrinkage": 10.0, "reg_user": 1.0, "reg_item": 1.0,
               "baseline_epochs": 1}
    for name, value in changes.items():
        changed = ItemKNNBaseline(**{name: value}).fit(synthetic).predict(users, items)
        assert np.abs(changed - base).max() > 1e-3, name
    # max_items only guards memory: within it, nothing changes; below the active movies, fit refuses.
    np.testing.assert_array_equal(ItemKNNBaseline(max_items=60).fit(synthetic).predict(users, items), base)
    with pytest.raises(ConfigError, match=r"max_items is 10, but the similarity matrix would cover 60"):
        ItemKNNBaseline(max_items=10).fit(synthetic)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 0}, "k must be an int >= 1, got 0"),
        ({"k": 2.5}, "k must be an int >= 1, got 2.5"),
        ({"k": True}, "k must be an int >= 1, got True"),
        ({"min_k": 0}, r"min_k must be an int between 1 and k \(40\), got 0"),
        ({"min_k": 41}, r"min_k must be an int between 1 and k \(40\), got 41"),
        ({"shrinkage": -1}, "shrinkage must be a number >= 0, got -1"),
        ({"shrinkage": float("nan")}, "shrinkage must be a number >= 0, got nan"),
        ({"reg_user": "a"}, "reg_user must be a number >= 0, got 'a'"),
        ({"reg_item": -0.5}, "reg_item must be a number >= 0, got -0.5"),
        ({"baseline_epochs": 0}, "baseline_epochs must be an int >= 1, got 0"),
        ({"max_items": 0}, "max_items must be an int >= 1, got 0"),
    ],
)
def test_bad_hyperparameters(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ItemKNNBaseline(**params).fit(tiny())


def test_constructor_stores_params_unchanged() -> None:
    params = {"k": 7, "min_k": 2, "shrinkage": 3, "reg_user": 1.5, "reg_item": 0, "baseline_epochs": 3,
              "max_items": 99}
    assert ItemKNNBaseline(**params).get_params() == params
    assert ItemKNNBaseline.name == "item-knn-baseline"


def test_save_load_round_trip(fitted: ItemKNNBaseline, pairs: tuple[np.ndarray, np.ndarray],
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, ItemKNNBaseline.name, ItemKNNBaseline)
    loaded = load_model(save_model(fitted, tmp_path / "knn")).model
    assert isinstance(loaded, ItemKNNBaseline) and loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.similarity_, fitted.similarity_)
    np.testing.assert_array_equal(loaded.residual_, fitted.residual_)
    users, items = pairs
    np.testing.assert_array_equal(loaded.predict(users, items), fitted.predict(users, items))
    assert loaded.recommend(5, k=10).equals(fitted.recommend(5, k=10))
    rated = [(3, 5.0), (8, 1.0), (20, 4.0)]
    assert loaded.recommend_for_ratings(rated, k=10).equals(fitted.recommend_for_ratings(rated, k=10))


@pytest.mark.slow
def test_quality_on_ml100k_u1(ml100k: Dataset) -> None:
    """Surprise's KNNBaseline (item, pearson_baseline) scores RMSE 0.9359 on u1 (measured side by side;
    its u1..u5 mean is 0.920 in BENCHMARKS.md); this model matches it to 1e-6 per prediction."""
    split = make_split(ml100k, "u1")
    model = ItemKNNBaseline().fit(split.train)
    errors = model.predict(split.test.user_ids, split.test.item_ids) - split.test.rating
    rmse, mae = np.sqrt(np.mean(errors**2)), np.mean(np.abs(errors))
    assert 0.930 < rmse < 0.941
    assert mae < 0.739
