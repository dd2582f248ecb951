"""The contract every registered model keeps, run against each entry of the registry.

Data: a tiny checkerboard of tastes. Users and movies fall in two groups (by parity); a user rates
movies of their own group 4.5-5 and the others 1-1.5. Each user rates a random 60% of the movies,
except user 0, who rates every movie of their group but one (the withheld movie) and a few of the
others: a personalised model must rank the withheld movie first among user 0's unseen movies.

Models that need the movie catalog (``uses_catalog``) get a tiny one whose genres, tags and decades
follow the same parity, so content features agree with the tastes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from movierec.artifacts import load_model, save_model
from movierec.data.dataset import Catalog, Ratings
from movierec.errors import UnknownIdError
from movierec.models.core.recommender import Recommender
from movierec.models.registry import MODELS, create_model

N_USERS, N_ITEMS = 40, 30
WITHHELD = 10  # an even movie: user 0's group

# Small settings so every model trains in well under a second on the checkerboard.
FAST: dict[str, dict[str, Any]] = {
    "bias": {"epochs": 2},  # converged by 10 sweeps: fewer make the epochs parameter visible
    "item-knn-baseline": {"baseline_epochs": 2},
    "bayesian-mf": {"burn_in": 10, "samples": 20, "thin": 1},
    # their default batch is larger than the checkerboard: a small one makes batch_size visible
    "biased-mf-sgd": {"batch_size": 128},
    "svdpp": {"batch_size": 128},
    "embedding-mlp": {"batch_size": 32, "epochs": 20},
    "rating-classifier": {"batch_size": 32, "epochs": 20},
    "embedding-regressor": {"batch_size": 32},
    "dot-bias-sigmoid": {"factors": 8, "epochs": 20, "learning_rate": 0.01},
    "mean-normalized-mf": {"epochs": 100},
    # who rated what is random on the checkerboard, the tastes are in the ratings: interactions are
    # the high ratings only; 30 movies: a strong penalty would drown their co-occurrences
    "ease": {"reg": 10.0, "min_rating": 3.0},
    "item-knn": {"neighbors": 10, "min_rating": 3.0},
    # checkerboard users watch movies of both groups alike, so the tastes live in the ratings only:
    # ranking models see them through a threshold
    "ials": {"factors": 8, "epochs": 5, "cg_steps": 1, "min_rating": 3.0},  # 3 steps converge here
    "bpr": {"factors": 8, "epochs": 20, "batch_size": 64, "learning_rate": 0.1, "min_rating": 3.0},
    # tags are off by default; on, so that min_tag_movies has something to act on
    "content": {"tag_weight": 1.0},
    # its collaborative part (ials) sees the checkerboard's tastes only through a rating threshold
    "hybrid": {"min_rating": 3.0},
    # few factors: 64 and its double would both be capped at the checkerboard's 30 movies
    "gf-cf": {"factors": 4, "min_rating": 3.0},
    "blend": {"min_rating": 3.0},
    # about 12 unseen movies per checkerboard user: lists of 5 leave room for a longer alternative
    "ltr": {"min_rating": 3.0, "candidates": 5},
    # 40 users: small batches give enough updates; the KL weight reaches beta within the run
    # checkerboard users rate 60% of all movies at random: only liked ratings (min_rating) carry tastes
    "mult-vae": {"hidden": "64", "latent": 16, "epochs": 15, "batch_size": 8, "anneal_steps": 40,
                 "min_rating": 3.0},
}
# Values to try for hyperparameters the suite cannot perturb by itself (strings, tuples).
ALTERNATIVES: dict[str, dict[str, Any]] = {
    # checkerboard users have ~18 ratings: k beyond that changes nothing, a small k does
    "item-knn-baseline": {"k": 3, "min_k": 40},
    "bayesian-mf": {"implicit": "none"},
    "biased-mf-sgd": {"optimizer": "adam", "lr_schedule": "cosine"},
    "svdpp": {"optimizer": "adam", "lr_schedule": "cosine"},
    "embedding-mlp": {"hidden": "16"},
    "rating-classifier": {"hidden": "16"},
    # early stopping can make epochs/patience moot on a given dataset: values that bind here
    "embedding-regressor": {"hidden": "16,8", "epochs": 1, "patience": 1},
    # checkerboard ratings are 1-1.5 or 4.5-5: a threshold between them changes which count
    "popularity": {"min_rating": 3.0, "weighting": "rating"},
    # checkerboard ratings come in bursts 1000 s apart: a gap wider than that makes each user's
    # history a session
    "ease": {"min_rating": 0.0, "weighting": "rating", "session_gap": 5000.0, "dropout": 0.2},
    "item-knn": {"min_rating": 0.0, "weighting": "rating", "similarity": "cosine", "bm25_b": 0.9},
    # a gap wider than the 1000 s between bursts: each user's whole history is one session
    "ials": {"min_rating": 0.0, "weighting": "rating", "session_gap": 5000.0},
    "gf-cf": {"weighting": "rating", "session_gap": 5000.0},
    "blend": {"members": "ease,item-knn,gf-cf", "weights": "0.2,0.4,0.4", "weighting": "rating"},
    # checkerboard ratings >= 4 are 4.5 or 5: a level of 4.8 keeps only the 5s
    "ltr": {"members": "ease,item-knn,gf-cf", "weights": "0.2,0.4,0.4", "weighting": "rating",
            "liked_ratings": "4.8"},
    "bpr": {"min_rating": 0.0, "weighting": "rating"},
    # every checkerboard rating is 1-1.5 or 4.5-5: a threshold between them binds
    "content": {"weighting": "deviation", "min_rating": 3.0},
    "hybrid": {"collaborative": "biased-mf-als", "weighting": "deviation", "min_rating": 0.0},
    # dropout 0.5 * 3 is no fraction; min_rating 4.8 drops the 4.5s
    "mult-vae": {"hidden": "32", "dropout": 0.2, "min_rating": 4.8, "weighting": "rating"},
}
# Hyperparameters that must not change results (where the computation runs, memory guards).
NEUTRAL = {"device", "max_items", "threads"}
# Models that rank the same way for everybody: they cannot find a withheld taste.
NON_PERSONALISED = {"bias", "popularity"}

NAMES = sorted(MODELS)


def catalog() -> Catalog:
    """Movies 1..30 (raw ids): odd ones (user 0's group) are quiet 1980s-90s dramas, even ones loud
    1950s-60s comedies; every third is also an action movie; a few tags are on 1-3 movies only."""
    ids = np.arange(1, N_ITEMS + 1)
    extra = {1: ["cult"], 3: ["cult"], 5: ["cult"], 2: ["rare"], 4: ["rare"], 7: ["unique"]}
    return Catalog(pd.DataFrame({
        "item": ids,
        "title": [f"Movie {i}" for i in ids],
        "year": [1985 + i % 10 if i % 2 else 1955 + i % 10 for i in ids],
        "genres": [["Drama" if i % 2 else "Comedy"] + (["Action"] if i % 3 == 0 else []) for i in ids],
        "tags": [(["slow" if i % 2 else "loud"] if i <= 16 else []) + extra.get(i, []) for i in ids],
    }))


CATALOG = catalog()


def fit(model: Recommender, ratings: Ratings, **kwargs: Any) -> Recommender:
    """``model.fit``, with the catalog for models that need one."""
    if model.uses_catalog:
        kwargs["catalog"] = CATALOG
    return model.fit(ratings, **kwargs)


def checkerboard() -> Ratings:
    rng = np.random.default_rng(0)
    users, items, values, times = [], [], [], []
    for user in range(N_USERS):
        for item in range(N_ITEMS):
            same = user % 2 == item % 2
            if user == 0:
                rated = (same and item != WITHHELD) or (not same and item in (1, 3, 5))
            else:
                rated = rng.random() < 0.6
            if rated:
                users.append(user + 1)  # raw ids from 1, like MovieLens
                items.append(item + 1)
                values.append(rng.choice([4.5, 5.0]) if same else rng.choice([1.0, 1.5]))
                # for models that hold out by time; in bursts of three ratings 1 s apart, 1000 s
                # between bursts, for models that read rating sessions (30 s gaps by default)
                times.append(1_000_000 + 1_000 * (len(times) // 3) + len(times) % 3)
    return Ratings.from_arrays(users, items, values, times, scale=(0.5, 5.0))


@pytest.fixture(scope="module")
def data() -> Ratings:
    return checkerboard()


def make(name: str, **params: Any) -> Recommender:
    return create_model(name, **(FAST.get(name, {}) | params))


@pytest.fixture(scope="module", params=NAMES)
def fitted(request: pytest.FixtureRequest, data: Ratings) -> Recommender:
    return fit(make(request.param), data)


def probe_pairs(data: Ratings) -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(data.users.ids[:6], 5)
    items = np.tile(data.items.ids[[0, 7, 10, 21, 29]], 6)
    return users, items


def test_withheld_item_ranks_first(fitted: Recommender) -> None:
    if fitted.name in NON_PERSONALISED:
        pytest.skip(f"{fitted.name} ranks the same way for every user by design")
    top = fitted.recommend(1, k=3)
    assert top["item"].iloc[0] == WITHHELD + 1, top


def test_seen_items_are_excluded(fitted: Recommender, data: Ratings) -> None:
    seen = set(data.item_ids[data.user_ids == 2].tolist())
    recs = fitted.recommend(2, k=N_ITEMS)
    assert not seen & set(recs["item"].tolist())
    assert len(recs) == N_ITEMS - len(seen)  # k larger than what is left: all of it, no padding
    everything = fitted.recommend(2, k=N_ITEMS + 50, exclude_seen=False)
    assert sorted(everything["item"].tolist()) == list(range(1, N_ITEMS + 1))
    assert everything["score"].is_monotonic_decreasing


def test_batch_equals_single(fitted: Recommender) -> None:
    batch = fitted.recommend_batch([3, 1, 4], k=5)
    for user in (3, 1, 4):
        single = fitted.recommend(user, k=5)
        rows = batch[batch["user"] == user]
        assert rows["item"].tolist() == single["item"].tolist()
        np.testing.assert_allclose(rows["score"], single["score"], rtol=1e-6, atol=1e-9)


def test_scores_agree_with_predictions(fitted: Recommender) -> None:
    if not fitted.predicts_ratings:
        pytest.skip("ranking scores are not ratings")
    recs = fitted.recommend(5, k=8)
    predicted = fitted.predict(np.full(len(recs), 5), recs["item"].to_numpy())
    np.testing.assert_allclose(predicted, np.clip(recs["score"], 0.5, 5.0), rtol=1e-5, atol=1e-6)


def test_unknown_users_and_items(fitted: Recommender, data: Ratings) -> None:
    values = fitted.predict([999, 1, 999], [1, 999, 999])
    assert np.isfinite(values).all()
    if fitted.predicts_ratings:
        assert ((values >= 0.5) & (values <= 5.0)).all()
    assert fitted.known_pairs([999, 1, 1], [1, 999, 1]).tolist() == [False, False, True]
    with pytest.raises(UnknownIdError):
        fitted.recommend(999)
    cold = fitted.recommend_for_ratings([(999, 4.0)], k=5)
    assert len(cold) == 5 and np.isfinite(cold["score"]).all()


def test_new_user_fold_in(fitted: Recommender) -> None:
    # A newcomer who loves the even movies and dislikes the odd ones.
    pairs = [(m, 5.0) for m in (1, 3, 5, 7)] + [(m, 1.0) for m in (2, 4)]
    recs = fitted.recommend_for_ratings(pairs, k=5)
    assert len(recs) == 5 and not {1, 2, 3, 4, 5, 7} & set(recs["item"].tolist())
    if fitted.name not in NON_PERSONALISED:
        # raw ids are 1-based: odd raw ids are the even (0-based) group the newcomer loves
        assert (recs["item"] % 2 == 1).mean() >= 0.8, recs


def test_same_seed_same_result(data: Ratings, request: pytest.FixtureRequest) -> None:
    for name in NAMES:
        users, items = probe_pairs(data)
        first = fit(make(name), data).predict(users, items)
        second = fit(make(name), data).predict(users, items)
        np.testing.assert_allclose(first, second, rtol=0, atol=1e-6, err_msg=name)


def test_refit_starts_fresh(data: Ratings) -> None:
    other = Ratings.from_arrays([1, 1, 2, 2, 3], [1, 2, 1, 3, 2], [5.0, 1.0, 4.0, 2.0, 3.0],
                                scale=(0.5, 5.0))
    for name in NAMES:
        reused = fit(fit(make(name), data), other)
        fresh = fit(make(name), other)
        users, items = np.array([1, 2, 3, 3]), np.array([3, 2, 1, 3])
        np.testing.assert_allclose(reused.predict(users, items), fresh.predict(users, items),
                                   rtol=0, atol=1e-6, err_msg=name)
        # a catalog model knows every catalog movie, rated or not
        expected = list(range(1, N_ITEMS + 1)) if reused.uses_catalog else [1, 2, 3]
        assert reused.items_.ids.tolist() == expected


def test_save_load_round_trip(fitted: Recommender, data: Ratings, tmp_path: Path) -> None:
    save_model(fitted, tmp_path / "model")
    loaded = load_model(tmp_path / "model").model
    assert type(loaded) is type(fitted) and loaded.get_params() == fitted.get_params()
    users, items = probe_pairs(data)
    np.testing.assert_array_equal(loaded.predict(users, items), fitted.predict(users, items))
    assert loaded.recommend(2, k=5)["item"].tolist() == fitted.recommend(2, k=5)["item"].tolist()
    pairs = [(1, 5.0), (2, 1.0)]
    np.testing.assert_allclose(loaded.recommend_for_ratings(pairs, k=5)["score"],
                               fitted.recommend_for_ratings(pairs, k=5)["score"], rtol=1e-6)


def altered(name: str, param: str, value: Any) -> Any:
    if param in ALTERNATIVES.get(name, {}):
        return ALTERNATIVES[name][param]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 if value > 1 else value + 2
    if isinstance(value, float):
        return value * 3 if value != 0 else 0.1
    raise AssertionError(f"{name}: add an alternative value for {param}={value!r} to ALTERNATIVES")


@pytest.mark.parametrize("name", NAMES)
def test_every_hyperparameter_changes_the_result(name: str, data: Ratings) -> None:
    users, items = probe_pairs(data)
    base_params = FAST.get(name, {})
    baseline = fit(make(name), data).predict(users, items)
    defaults = MODELS[name].default_params() | base_params
    for param, value in defaults.items():
        if param in NEUTRAL:
            continue
        changed = fit(make(name, **{param: altered(name, param, value)}), data).predict(users, items)
        assert np.abs(changed - baseline).max() > 1e-6, f"{name}: {param} changed nothing"


@pytest.mark.parametrize("name", NAMES)
def test_constructor_stores_parameters_unchanged(name: str) -> None:
    defaults = MODELS[name].default_params()
    model = MODELS[name](**defaults)
    assert model.get_params() == defaults
    assert not model.is_fitted


@pytest.mark.parametrize("name", NAMES)
def test_fit_and_load_leave_global_random_state_alone(name: str, data: Ratings, tmp_path: Path) -> None:
    import torch

    # the legacy global numpy state is exactly what must stay untouched
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    threads = torch.get_num_threads()
    model = fit(make(name), data)
    save_model(model, tmp_path / "m")
    load_model(tmp_path / "m")
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # noqa: NPY002
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("name", NAMES)
def test_failed_fit_leaves_the_model_as_it_was(name: str, data: Ratings) -> None:
    model = fit(make(name), data)
    users, items = probe_pairs(data)
    before = model.predict(users, items)

    def fail(event: str, info: dict) -> None:
        raise RuntimeError("interrupted")

    other = Ratings.from_arrays([7, 8, 9], [1, 2, 3], [1.0, 2.0, 3.0], [1, 2, 3], scale=(0.5, 5.0))
    with contextlib.suppress(RuntimeError):  # a model reporting no progress would just finish
        fit(model, other, callback=fail)
    if model.users_.ids.tolist() == [7, 8, 9]:
        return  # no callback event: the fit completed, nothing to roll back
    np.testing.assert_array_equal(model.predict(users, items), before)
    fresh = make(name)
    with pytest.raises(RuntimeError):
        fit(fresh, other, callback=fail)
    assert not fresh.is_fitted


def test_repeated_movies_in_fold_in_count_once(fitted: Recommender) -> None:
    once = fitted.recommend_for_ratings([(1, 5.0), (2, 1.0)], k=5)
    repeated = fitted.recommend_for_ratings([(1, 2.0), (1, 5.0), (2, 1.0), (1, 5.0)], k=5)
    assert once["item"].tolist() == repeated["item"].tolist()
    np.testing.assert_allclose(once["score"], repeated["score"], rtol=1e-6)


def test_recommended_scores_lie_on_the_scale(fitted: Recommender) -> None:
    if not fitted.predicts_ratings:
        pytest.skip("ranking scores are not ratings")
    for frame in (fitted.recommend(2, k=30), fitted.recommend_for_ratings([(1, 5.0)] * 1, k=30)):
        assert frame["score"].between(0.5, 5.0).all()


def test_similar_movies_and_explanations(fitted: Recommender, data: Ratings) -> None:
    withheld = WITHHELD + 1
    similar = fitted.similar_items(withheld, k=5)
    assert len(similar) == 5 and withheld not in set(similar["item"].tolist())
    assert np.isfinite(similar["score"]).all() and similar["score"].is_monotonic_decreasing
    why = fitted.explain(1, withheld, n=3)
    rated = set(data.item_ids[data.user_ids == 1].tolist())
    assert 1 <= len(why) <= 3 and set(why["item"].tolist()) <= rated
    assert (why["contribution"] > 0).all() and why["contribution"].is_monotonic_decreasing
    if fitted.name not in NON_PERSONALISED:
        # user 1 loves the withheld movie's group (odd raw ids): the reason comes from that group
        assert why["item"].iloc[0] % 2 == 1, why
    recs = fitted.recommend_for_ratings([(1, 5.0), (3, 5.0), (2, 1.0)], k=3, explain=2)
    assert all(set(b) <= {1, 2, 3} for b in recs["because"])
