"""Hyperparameter search: the best trial is the best, the direction follows the metric, a seed repeats
the search, the test part never reaches a fit, and every search-space entry fits its model."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import optuna
import pytest

from movierec.data.dataset import Dataset, Ratings
from movierec.data.split import make_split
from movierec.data.synth import synthesize
from movierec.errors import ConfigError
from movierec.eval.protocol import evaluate
from movierec.models import registry
from movierec.models.rating.bias import BiasRecommender
from movierec.models.registry import MODELS, create_model
from movierec.tune import (
    NEUTRAL,
    SPACES,
    Choice,
    FloatRange,
    IntRange,
    generic_space,
    metric_direction,
    parse_space,
    search_space,
    tune,
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return synthesize(60, 40, 1500, seed=3)


@pytest.fixture(scope="module")
def train(dataset: Dataset) -> Ratings:
    return make_split(dataset, "user-ratio:0.75:42").train


def _pairs(ratings: Ratings) -> set[tuple[Any, Any]]:
    return set(zip(ratings.user_ids.tolist(), ratings.item_ids.tolist(), strict=True))


# -- metrics and directions --------------------------------------------------------------------------
@pytest.mark.parametrize(("metric", "expected"), [
    ("rmse", ("rmse", "minimize", None)),
    ("MAE", ("mae", "minimize", None)),
    ("accuracy", ("accuracy", "maximize", None)),
    ("ndcg@10", ("ndcg@10", "maximize", 10)),
    ("ndcg", ("ndcg@10", "maximize", 10)),
    ("precision@5", ("precision@5", "maximize", 5)),
    ("coverage@20", ("coverage@20", "maximize", 20)),
])
def test_metric_direction(metric: str, expected: tuple) -> None:
    assert metric_direction(metric) == expected


@pytest.mark.parametrize("metric", ["auc", "ndcg@0", "ndcg@x", "rmse@10", ""])
def test_unknown_metric_names_the_value(metric: str, train: Ratings) -> None:
    with pytest.raises(ConfigError, match=f"got {metric!r}"):
        tune("bias", train, metric=metric, trials=1)


@pytest.mark.parametrize("trials", [0, -3, 2.5, "3", True])
def test_bad_trials_names_the_value(trials: Any, train: Ratings) -> None:
    with pytest.raises(ConfigError, match=f"trials must be an int >= 1, got {trials!r}"):
        tune("bias", train, trials=trials)


def test_rating_metric_of_a_ranking_model_is_refused(train: Ratings, monkeypatch: pytest.MonkeyPatch) -> None:
    class Ranker(BiasRecommender):
        name = "ranker"
        predicts_ratings = False

    monkeypatch.setitem(registry.MODELS, "ranker", Ranker)
    with pytest.raises(ConfigError, match="rmse needs predicted ratings"):
        tune("ranker", train, metric="rmse", trials=1)
    with pytest.raises(ConfigError, match="accuracy needs a classifier"):
        tune("bias", train, metric="accuracy", trials=1)
    with pytest.raises(ConfigError, match="needs the catalog"):
        tune("bias", train, metric="diversity@10", trials=1)


def test_other_bad_arguments(train: Ratings) -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        tune("nope", train, trials=1)
    with pytest.raises(ConfigError, match="no hyperparameter 'factors'"):
        tune("bias", train, trials=1, fixed_params={"factors": 3})
    with pytest.raises(ConfigError, match="no hyperparameter 'factors'"):
        tune("bias", train, trials=1, space={"factors": IntRange(1, 3)})
    with pytest.raises(ConfigError, match="low <= high"):
        tune("bias", train, trials=1, space={"epochs": IntRange(5, 2)})
    with pytest.raises(ConfigError, match="canonical ml-100k fold"):
        tune("bias", train, trials=1, valid_spec="u1")
    with pytest.raises(ConfigError, match="unknown split 'halves'"):
        tune("bias", train, trials=1, valid_spec="halves")
    with pytest.raises(ConfigError, match="search space is empty"):
        tune("bias", train, trials=1, fixed_params={"reg_user": 5.0, "reg_item": 5.0, "epochs": 3})


# -- the search --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "metric", "pick"), [
    ("bias", "rmse", np.min),
    ("bias", "mae", np.min),
    ("biased-mf-als", "ndcg@10", np.max),
    ("biased-mf-als", "recall@5", np.max),
])
def test_best_trial_is_the_best_of_the_frame(model: str, metric: str, pick: Any, train: Ratings) -> None:
    fixed = {"epochs": 2, "factors": 4} if model == "biased-mf-als" else {}
    space = {"reg": FloatRange(0.01, 1.0, log=True), "bias_reg": FloatRange(0.1, 30.0, log=True)} if fixed \
        else None
    result = tune(model, train, metric=metric, trials=6, fixed_params=fixed, space=space)
    values = result.trials["value"].to_numpy()
    assert len(result.trials) == 6 and (result.trials["state"] == "COMPLETE").all()
    assert len(set(np.round(values, 12))) > 1  # the space matters, so "best" means something
    assert result.best_value == pick(values)
    best_row = result.trials.loc[result.trials["number"] == result.study["best_trial"]].iloc[0]
    assert best_row["value"] == result.best_value
    for name in result.study["space"]:
        assert result.best_params[name] == best_row[name]
    assert result.best_params == {**fixed, **{n: best_row[n] for n in result.study["space"]}}
    assert result.study["direction"] == ("minimize" if pick is np.min else "maximize")
    assert result.leaderboard(1)["number"].iloc[0] == result.study["best_trial"]


def test_best_params_reproduce_the_best_value(train: Ratings) -> None:
    result = tune("bias", train, metric="rmse", trials=5, valid_spec="random:0.8:5")
    carve = make_split(Dataset("t", train, catalog=None), "random:0.8:5")  # type: ignore[arg-type]
    model = result.best_model().fit(carve.train)
    assert model.get_params() == create_model("bias", **result.best_params).get_params()
    rmse = evaluate(model, carve, ranking=False).metrics["rmse"]
    assert rmse == pytest.approx(result.best_value, abs=1e-12)
    assert result.study["valid_train_ratings"] == len(carve.train)
    assert result.study["valid_test_ratings"] == len(carve.test)


def test_same_seed_same_search_other_seed_other_search(train: Ratings) -> None:
    def run(seed: int) -> Any:
        return tune("bias", train, metric="rmse", trials=12, random_state=seed).trials.drop(columns="seconds")

    first, again, other = run(7), run(7), run(8)
    assert first.equals(again)
    assert not first[["reg_user", "reg_item", "epochs"]].equals(other[["reg_user", "reg_item", "epochs"]])


def test_search_leaves_global_random_state_and_optuna_logging_alone(train: Ratings) -> None:
    # the legacy global numpy state is exactly what must stay untouched (optuna's sampler too)
    numpy_state = np.random.get_state()  # noqa: NPY002
    verbosity = optuna.logging.get_verbosity()
    tune("bias", train, metric="rmse", trials=3)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])  # noqa: NPY002
    assert optuna.logging.get_verbosity() == verbosity


def test_quiet_and_reports_through_the_callback(train: Ratings, capfd: pytest.CaptureFixture) -> None:
    events: list[tuple[str, dict]] = []
    result = tune("bias", train, metric="rmse", trials=4, callback=lambda e, i: events.append((e, i)))
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert [e for e, _ in events] == ["trial"] * 4
    assert [i["number"] for _, i in events] == [0, 1, 2, 3]
    assert [i["value"] for _, i in events] == result.trials["value"].tolist()
    bests = [i["best_value"] for _, i in events]
    assert bests == list(np.minimum.accumulate(result.trials["value"].to_numpy()))
    assert events[-1][1]["best_params"] == result.best_params
    assert set(events[0][1]["params"]) == {"reg_user", "reg_item", "epochs"}


class Spy(BiasRecommender):
    """Bias model that records the (user, movie) pairs of every training set it is fitted on."""

    name = "spy"
    seen_pairs: ClassVar[list[set[tuple[Any, Any]]]] = []

    def _fit(self, train: Ratings, valid: Ratings | None, callback: Any) -> None:
        Spy.seen_pairs.append(_pairs(train))
        super()._fit(train, valid, callback)


def test_test_rows_never_reach_a_fit(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.MODELS, "spy", Spy)
    monkeypatch.setattr(Spy, "seen_pairs", [])
    split = make_split(dataset, "user-ratio:0.75:42")
    test_pairs, train_pairs = _pairs(split.test), _pairs(split.train)
    result = tune("spy", split.train, metric="rmse", trials=4, valid_spec="user-ratio:0.8:1")
    assert len(Spy.seen_pairs) == 4
    for fitted in Spy.seen_pairs:
        assert not fitted & test_pairs
        # the validation part is held out too: fits see a strict part of train
        assert fitted < train_pairs
        assert len(fitted) == result.study["valid_train_ratings"]


def test_fixed_params_are_kept_and_not_searched(train: Ratings) -> None:
    result = tune("bias", train, metric="rmse", trials=3, fixed_params={"epochs": 3})
    assert "epochs" not in result.trials.columns
    assert result.best_params["epochs"] == 3
    assert set(result.study["space"]) == {"reg_user", "reg_item"}


def test_to_dict_is_plain(train: Ratings) -> None:
    import json

    data = tune("bias", train, metric="rmse", trials=2).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert len(data["trials"]) == 2 and data["study"]["metric"] == "rmse"


# -- search spaces -----------------------------------------------------------------------------------
def _values(param: Any) -> list[Any]:
    if isinstance(param, Choice):
        return list(param.values)
    return [param.low, param.high]


def _accepted(name: str, params: dict[str, Any]) -> bool:
    cls = MODELS[name]
    try:
        cls(**{**cls.default_params(), **params})._check_params()
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(set(SPACES) & set(MODELS)))
def test_table_entries_name_real_hyperparameters_with_valid_values(name: str) -> None:
    takes = set(MODELS[name].param_names())
    assert set(SPACES[name]) <= takes, f"{name}: {sorted(set(SPACES[name]) - takes)} not hyperparameters"
    assert not set(SPACES[name]) & NEUTRAL
    for param, spec in SPACES[name].items():
        for value in _values(spec):
            assert _accepted(name, {param: value}), f"{name}: {param}={value!r} refused by the model"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_has_a_valid_generic_space(name: str) -> None:
    assert search_space(name), f"{name}: nothing to tune"
    space = generic_space(name)  # may be empty for a model whose numbers all default to 0 (a table covers it)
    assert not set(space) & NEUTRAL
    defaults = MODELS[name].default_params()
    for param, spec in space.items():
        assert isinstance(spec, FloatRange | IntRange)
        assert spec.low <= defaults[param] <= spec.high
        for value in _values(spec):
            assert _accepted(name, {param: value}), f"{name}: {param}={value!r} refused by the model"


def test_generic_space_hand_computed() -> None:
    space = generic_space("bias")  # reg_user 15.0, reg_item 10.0, epochs 10
    assert space["reg_user"] == FloatRange(1.5, 150.0, log=True)
    assert space["reg_item"] == FloatRange(1.0, 100.0, log=True)
    assert space["epochs"] == IntRange(2, 40, log=True)
    # a fraction stays inside the model's own bounds: valid_fraction 0.1 cannot reach 1.0
    regressor = generic_space("embedding-regressor")["valid_fraction"]
    assert regressor.low == pytest.approx(0.01) and 0.1 < regressor.high < 1.0
    assert "random_state" not in generic_space("biased-mf-als")


def test_generic_space_runs_a_search(train: Ratings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(SPACES, "bias")
    result = tune("bias", train, metric="rmse", trials=3)
    assert set(result.study["space"]) == {"reg_user", "reg_item", "epochs"}
    assert result.study["space"]["epochs"] == "int 2..40 log"


def test_parse_space() -> None:
    space = parse_space("biased-mf-sgd", ["reg=1e-3:10:log", "factors=16:256:log", "epochs=5:20",
                                          "optimizer=adam,sgd", "learning-rate=0.01:0.1"])
    assert space == {"reg": FloatRange(1e-3, 10.0, log=True), "factors": IntRange(16, 256, log=True),
                     "epochs": IntRange(5, 20), "optimizer": Choice(("adam", "sgd")),
                     "learning_rate": FloatRange(0.01, 0.1)}
    assert parse_space("bias", ["epochs=3,5"]) == {"epochs": Choice((3, 5))}
    for bad, message in [("reg", "name=LOW:HIGH"), ("reg=a:b", "bounds must be numbers"),
                         ("reg=1:2:cube", "LOW:HIGH"), ("nope=1:2", "no hyperparameter 'nope'")]:
        with pytest.raises(ConfigError, match=message):
            parse_space("biased-mf-sgd", [bad])


def test_nan_trials_are_recorded_as_failed(train: Ratings, monkeypatch: pytest.MonkeyPatch) -> None:
    import movierec.tune as tune_module

    real = tune_module.evaluate
    calls = iter(range(100))

    def flaky(*args: Any, **kwargs: Any) -> Any:
        report = real(*args, **kwargs)
        if next(calls) % 2 == 0:
            report.metrics["rmse"] = math.nan
        return report

    monkeypatch.setattr(tune_module, "evaluate", flaky)
    result = tune("bias", train, metric="rmse", trials=4)
    assert result.trials["state"].tolist() == ["FAIL", "COMPLETE", "FAIL", "COMPLETE"]
    assert result.best_value == result.trials["value"].min()
    assert result.study["completed"] == 2


def test_catalog_reaches_every_fit_and_diversity_can_be_tuned(
        dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    catalogs: list[Any] = []

    class CatalogSpy(BiasRecommender):
        name = "catalog-spy"
        uses_catalog = True

        def _fit(self, train: Ratings, valid: Ratings | None, callback: Any) -> None:
            catalogs.append(self.catalog_)
            super()._fit(train, valid, callback)

    monkeypatch.setitem(registry.MODELS, "catalog-spy", CatalogSpy)
    train = make_split(dataset, "user-ratio:0.75:42").train
    result = tune("catalog-spy", train, metric="diversity@5", trials=3, catalog=dataset.catalog)
    assert catalogs == [dataset.catalog] * 3
    assert 0.0 <= result.best_value <= 1.0 and result.study["direction"] == "maximize"
    with pytest.raises(ConfigError, match="catalog-spy learns from movie features: pass catalog="):
        tune("catalog-spy", train, metric="rmse", trials=1)


def test_first_trial_is_the_defaults_so_tuning_never_loses(train: Ratings) -> None:
    defaults = BiasRecommender.default_params()  # reg_user 15, reg_item 10, epochs 10: all in the table
    result = tune("bias", train, metric="rmse", trials=4)
    first = result.trials.iloc[0]
    assert {n: first[n] for n in ("reg_user", "reg_item", "epochs")} == defaults
    assert result.best_value <= first["value"]
    # only the in-space defaults are pinned; with the search off they are sampled like the rest
    narrow = tune("bias", train, metric="rmse", trials=1, space={"reg_user": FloatRange(20.0, 30.0),
                                                                 "epochs": IntRange(2, 20)})
    assert narrow.trials.iloc[0]["epochs"] == 10 and 20.0 <= narrow.trials.iloc[0]["reg_user"] <= 30.0
    sampled = tune("bias", train, metric="rmse", trials=1, try_defaults=False)
    assert sampled.trials.iloc[0]["reg_user"] != 15.0


def test_space_membership() -> None:
    assert 0.5 in FloatRange(0.0, 4.0, step=0.5) and 0.3 not in FloatRange(0.0, 4.0, step=0.5)
    assert 5.0 not in FloatRange(0.0, 4.0) and True not in FloatRange(0.0, 4.0)
    assert 3 in IntRange(1, 3) and 3.0 not in IntRange(1, 3) and 0 not in IntRange(1, 3)
    assert "bm25" in Choice(("cosine", "bm25")) and 1 not in Choice((True, False))
