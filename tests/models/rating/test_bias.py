"""The bias baseline: hand-computed updates, fold-in, the recommend plumbing, quality on ml-100k."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.data.dataset import Dataset, Ratings
from movierec.data.split import make_split
from movierec.errors import ConfigError, NotFittedError, UnknownIdError
from movierec.models.rating.bias import BiasRecommender
from movierec.models.registry import create_model, parse_params


def tiny() -> Ratings:
    # A rated x=5, y=3; B rated x=4.  mu = 4.
    return Ratings.from_arrays(["A", "A", "B"], ["x", "y", "x"], [5.0, 3.0, 4.0], scale=(1, 5))


def test_one_sweep_without_regularisation_by_hand() -> None:
    model = BiasRecommender(reg_user=0, reg_item=0, epochs=1).fit(tiny())
    # residuals r - mu: [1, -1, 0]; b_x = (1 + 0) / 2 = 0.5; b_y = -1 / 1 = -1
    # b_A = ((1 - 0.5) + (-1 + 1)) / 2 = 0.25; b_B = (0 - 0.5) / 1 = -0.5
    assert model.global_mean_ == pytest.approx(4.0)
    np.testing.assert_allclose(model.item_bias_, [0.5, -1.0])
    np.testing.assert_allclose(model.user_bias_, [0.25, -0.5])
    got = model.predict(["A", "B", "C", "C", "B"], ["x", "y", "x", "z", "z"])
    # (A,x) 4.75; (B,y) 2.5; unknown user C: mu + b_x = 4.5; unknown both: mu; unknown movie: mu + b_B
    np.testing.assert_allclose(got, [4.75, 2.5, 4.5, 4.0, 3.5])


def test_one_sweep_with_regularisation_by_hand() -> None:
    model = BiasRecommender(reg_user=2, reg_item=1, epochs=1).fit(tiny())
    # b_x = 1 / (1 + 2) = 1/3; b_y = -1 / (1 + 1) = -1/2
    # b_A = ((1 - 1/3) + (-1 + 1/2)) / (2 + 2) = 1/24; b_B = (0 - 1/3) / (2 + 1) = -1/9
    np.testing.assert_allclose(model.item_bias_, [1 / 3, -1 / 2])
    np.testing.assert_allclose(model.user_bias_, [1 / 24, -1 / 9])


def test_predictions_are_clipped_to_the_scale() -> None:
    r = Ratings.from_arrays([1, 1, 2], [1, 2, 1], [5.0, 5.0, 5.0], scale=(1, 5))
    model = BiasRecommender(reg_user=0, reg_item=0, epochs=3).fit(r)
    assert model.predict([1], [1])[0] == 5.0


def test_known_pairs_mask() -> None:
    model = BiasRecommender().fit(tiny())
    assert model.known_pairs(["A", "A", "Z"], ["x", "q", "x"]).tolist() == [True, False, False]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"reg_user": -1}, "reg_user must be a number >= 0, got -1"),
        ({"reg_item": "a"}, "reg_item must be a number >= 0"),
        ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
        ({"epochs": 2.5}, "epochs must be an int >= 1"),
    ],
)
def test_bad_hyperparameters(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BiasRecommender(**params).fit(tiny())


def test_constructor_stores_params_unchanged() -> None:
    model = BiasRecommender(reg_user=3, reg_item=4.5, epochs=7)
    assert model.get_params() == {"reg_user": 3, "reg_item": 4.5, "epochs": 7}
    assert create_model("bias", epochs=2).get_params()["epochs"] == 2
    assert parse_params("bias", ["reg-user=2.5", "epochs=3"]) == {"reg_user": 2.5, "epochs": 3}
    with pytest.raises(ConfigError, match="no hyperparameter 'factors'"):
        create_model("bias", factors=3)
    with pytest.raises(ConfigError, match="epochs must be int"):
        parse_params("bias", ["epochs=many"])
    with pytest.raises(ConfigError, match="unknown model 'svd'"):
        create_model("svd")


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        BiasRecommender().predict([1], [1])
    with pytest.raises(NotFittedError):
        BiasRecommender().recommend(1)


def test_refit_starts_fresh() -> None:
    model = BiasRecommender()
    model.fit(tiny())
    other = Ratings.from_arrays([1, 2], [1, 1], [1.0, 2.0], scale=(1, 5))
    model.fit(other)
    assert model.users_.ids.tolist() == [1, 2] and len(model.item_bias_) == 1


@pytest.fixture(scope="module")
def fitted(ml100k: Dataset) -> tuple[BiasRecommender, Ratings]:
    split = make_split(ml100k, "u1")
    return BiasRecommender().fit(split.train), split.train


def test_every_hyperparameter_changes_predictions(ml100k: Dataset) -> None:
    split = make_split(ml100k, "u1")
    users, items = split.test.user_ids[:500], split.test.item_ids[:500]
    base = BiasRecommender().fit(split.train).predict(users, items)
    for name, value in {"reg_user": 40.0, "reg_item": 40.0, "epochs": 1}.items():
        changed = BiasRecommender(**{name: value}).fit(split.train).predict(users, items)
        assert np.abs(changed - base).max() > 1e-3, name


def test_recommend_excludes_seen_and_matches_batch(fitted: tuple[BiasRecommender, Ratings]) -> None:
    model, _ = fitted
    recs = model.recommend(1, k=20)
    seen = set(model.user_history(1)["item"].tolist())
    assert len(recs) == 20 and not seen & set(recs["item"].tolist())
    assert recs["score"].is_monotonic_decreasing
    batch = model.recommend_batch([1, 2], k=20)
    assert batch[batch["user"] == 1]["item"].tolist() == recs["item"].tolist()
    assert batch["rank"].tolist()[:3] == [1, 2, 3]
    with_seen = model.recommend(1, k=5, exclude_seen=False)
    assert len(with_seen) == 5


def test_k_larger_than_catalog(fitted: tuple[BiasRecommender, Ratings]) -> None:
    model, train = fitted
    recs = model.recommend(1, k=100_000)
    n_seen = len(model.user_history(1))
    assert len(recs) == train.n_items - n_seen
    with pytest.raises(ConfigError, match="k must be an int >= 1"):
        model.recommend(1, k=0)
    with pytest.raises(UnknownIdError):
        model.recommend(10_000)


def test_fold_in_reproduces_a_training_user(fitted: tuple[BiasRecommender, Ratings]) -> None:
    """The last sweep solves each user's bias in closed form given the movie biases; fold-in runs
    the same solve, so a known user's own ratings give back exactly that user's list."""
    model, _ = fitted
    history = model.user_history(5)
    pairs = list(zip(history["item"].tolist(), history["rating"].tolist(), strict=True))
    folded = model.recommend_for_ratings(pairs, k=10)
    known = model.recommend(5, k=10)
    assert folded["item"].tolist() == known["item"].tolist()
    np.testing.assert_allclose(folded["score"], known["score"], rtol=1e-9)


def test_fold_in_edge_cases(fitted: tuple[BiasRecommender, Ratings]) -> None:
    model, _ = fitted
    # unknown movies are ignored; with none known the cold-start list is mu + b_i
    cold = model.recommend_for_ratings([(999_999, 4.0)], k=5)
    order = np.argsort(-model.item_bias_, kind="stable")[:5]
    assert cold["item"].tolist() == model.items_.ids[order].tolist()
    assert model.recommend_for_ratings([], k=3)["item"].tolist() == cold["item"].tolist()[:3]
    rated = model.recommend_for_ratings([(cold["item"].iloc[0], 5.0)], k=5)
    assert cold["item"].iloc[0] not in rated["item"].tolist()
    with pytest.raises(ConfigError, match=r"ratings must lie in 1\.\.5, got 7"):
        model.recommend_for_ratings([(1, 7.0)])


@pytest.mark.slow
def test_quality_on_ml100k_folds(ml100k: Dataset) -> None:
    """Surprise's BaselineOnly (the same model) scores 0.946 mean RMSE on u1..u5 (BENCHMARKS.md)."""
    errors = []
    for fold in ("u1", "u2", "u3", "u4", "u5"):
        split = make_split(ml100k, fold)
        predictions = BiasRecommender().fit(split.train).predict(split.test.user_ids,
                                                                 split.test.item_ids)
        errors.append(np.sqrt(np.mean((predictions - split.test.rating) ** 2)))
    assert 0.940 <= np.mean(errors) <= 0.950
