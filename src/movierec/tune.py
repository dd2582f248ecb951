"""Hyperparameter search for any registered model: optuna's seeded TPE sampler on a validation split
carved out of the training data only.

    result = tune("ease", split.train, metric="ndcg@10", trials=30)
    model = create_model("ease", **result.best_params).fit(split.train)

Every trial fits the model on the carve-out's train part and scores it with `evaluate` on the
carve-out's held-out part (``valid_spec``, any `make_split` spec that needs no canonical folds), so the
test part of the caller's split is never seen: pass it ``split.train``, not the whole dataset.

The objective is any figure of the `evaluate` report: ``rmse``, ``mae``, ``argmax_rmse`` are
minimised; ``accuracy`` and the top-N figures (``ndcg@10``, ``precision@5``, ``map@10``, ``recall@20``,
``coverage@10``, ...) are maximised. A bare ranking name (``ndcg``) means ``@10``.

Search spaces: `SPACES` holds sensible ranges for the models we know; any other model gets a generic
space derived from its defaults (`generic_space`), so every model is tunable. A caller's ``space``
replaces either; ``fixed_params`` pins hyperparameters (they are removed from the space).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from movierec.data.dataset import Catalog, Dataset, Ratings
from movierec.data.split import make_split
from movierec.errors import ConfigError
from movierec.eval.protocol import RANKING_KEYS, evaluate
from movierec.models.core.checks import check_int
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.registry import MODELS, create_model, get_model_class

__all__ = [
    "NEUTRAL",
    "SPACES",
    "Choice",
    "FloatRange",
    "IntRange",
    "TuneResult",
    "generic_space",
    "metric_direction",
    "parse_space",
    "registered_spaces",
    "search_space",
    "tune",
]


# -- search-space entries ----------------------------------------------------------------------------
@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high], sampled uniformly or on a log scale (then low > 0), optionally stepped."""

    low: float
    high: float
    log: bool = False
    step: float | None = None

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or math.isclose((value - self.low) / self.step,
                                                 round((value - self.low) / self.step))

    def __str__(self) -> str:
        step = f" step {self.step:g}" if self.step else ""
        return f"float {self.low:g}..{self.high:g}{' log' if self.log else ''}{step}"


@dataclass(frozen=True)
class IntRange:
    """An int in [low, high] (both included), uniformly or on a log scale (then low >= 1)."""

    low: int
    high: int
    log: bool = False

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def __contains__(self, value: Any) -> bool:
        return (not isinstance(value, bool) and isinstance(value, int | np.integer)
                and self.low <= value <= self.high)

    def __str__(self) -> str:
        return f"int {self.low}..{self.high}{' log' if self.log else ''}"


@dataclass(frozen=True)
class Choice:
    """One of a few values (str, int, float, bool or None)."""

    values: tuple[Any, ...]

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def __contains__(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


Param = FloatRange | IntRange | Choice

# Ranges that make sense for each model (hyperparameter names as in the model's constructor). Entries
# for models not registered yet use the names their authors were asked to use; tests check that every
# entry of a registered model names one of its hyperparameters.
_NEURAL_COMMON: dict[str, Param] = {
    "factors": IntRange(8, 128, log=True),
    "dropout": FloatRange(0.0, 0.5),
    "epochs": IntRange(3, 30),
    "learning_rate": FloatRange(3e-4, 3e-2, log=True),
    "reg": FloatRange(1e-6, 1e-1, log=True),
    "weight_decay": FloatRange(1e-6, 1e-1, log=True),
}
_HIDDEN = Choice(("32", "64,32", "128,64", "256,128,64"))

SPACES: dict[str, dict[str, Param]] = {
    # rating models
    "bias": {"reg_user": FloatRange(0.1, 100.0, log=True), "reg_item": FloatRange(0.1, 100.0, log=True),
             "epochs": IntRange(2, 30)},
    "biased-mf-als": {"factors": IntRange(8, 256, log=True), "epochs": IntRange(5, 30),
                      "reg": FloatRange(0.01, 1.0, log=True), "bias_reg": FloatRange(0.1, 30.0, log=True)},
    "biased-mf-sgd": {"factors": IntRange(8, 256, log=True), "epochs": IntRange(5, 50),
                      "learning_rate": FloatRange(1e-3, 0.5, log=True),
                      "reg": FloatRange(1e-3, 1.0, log=True), "init_std": FloatRange(0.01, 0.3, log=True),
                      "optimizer": Choice(("adagrad", "adam", "adamw", "sgd")),
                      "lr_schedule": Choice(("constant", "cosine"))},
    "svdpp": {"factors": IntRange(8, 256, log=True), "epochs": IntRange(5, 50),
              "learning_rate": FloatRange(1e-3, 0.5, log=True), "reg": FloatRange(1e-3, 1.0, log=True),
              "implicit_reg": FloatRange(1e-3, 1.0, log=True), "init_std": FloatRange(0.01, 0.3, log=True),
              "lr_schedule": Choice(("constant", "cosine"))},
    "item-knn-baseline": {"k": IntRange(5, 200, log=True), "min_k": IntRange(1, 10),
                          "shrinkage": FloatRange(0.0, 300.0), "reg_user": FloatRange(1.0, 50.0, log=True),
                          "reg_item": FloatRange(1.0, 50.0, log=True)},
    "bayesian-mf": {"factors": IntRange(4, 64, log=True),
                    "implicit": Choice(("both", "user", "item", "none")),
                    "init_std": FloatRange(0.01, 1.0, log=True)},
    "embedding-mlp": {**_NEURAL_COMMON, "hidden": _HIDDEN},
    "rating-classifier": {**_NEURAL_COMMON, "hidden": _HIDDEN},
    # early-stopped: epochs is only a ceiling, patience decides
    "embedding-regressor": {**{k: v for k, v in _NEURAL_COMMON.items() if k != "epochs"}, "hidden": _HIDDEN,
                            "patience": IntRange(1, 5)},
    "dot-bias-sigmoid": {"factors": IntRange(8, 128, log=True), "epochs": IntRange(2, 20),
                         "learning_rate": FloatRange(1e-4, 1e-2, log=True),
                         "reg": FloatRange(1e-8, 1e-2, log=True)},
    "mean-normalized-mf": {"factors": IntRange(4, 64, log=True), "reg": FloatRange(0.1, 100.0, log=True),
                           "epochs": IntRange(50, 400, log=True),
                           "learning_rate": FloatRange(0.01, 0.5, log=True)},
    # ranking models
    "popularity": {"min_rating": FloatRange(0.0, 4.0, step=0.5)},
    "item-knn": {"neighbors": IntRange(10, 500, log=True), "shrink": FloatRange(0.0, 100.0),
                 "similarity": Choice(("cosine", "bm25"))},
    "ials": {"factors": IntRange(16, 256, log=True), "reg": FloatRange(1e-3, 10.0, log=True),
             "alpha": FloatRange(0.1, 100.0, log=True), "epochs": IntRange(5, 30)},
    "ease": {"reg": FloatRange(10.0, 5000.0, log=True)},
    "bpr": {"factors": IntRange(16, 256, log=True), "learning_rate": FloatRange(1e-3, 0.3, log=True),
            "reg": FloatRange(1e-5, 1e-1, log=True), "epochs": IntRange(5, 100, log=True)},
    "mult-vae": {"latent": IntRange(32, 400, log=True), "dropout": FloatRange(0.0, 0.8),
                 "beta": FloatRange(0.05, 1.0), "epochs": IntRange(10, 200, log=True)},
    "gf-cf": {"factors": IntRange(16, 512, log=True), "ideal_weight": FloatRange(0.0, 3.0)},
    # the default members' weights around the validation plateau (benchmarks/selection/blend_ltr.py)
    "blend": {"weights": Choice(("0.4,0.4,0.2", "0.3,0.5,0.2", "0.5,0.3,0.2", "0.3,0.4,0.3",
                                 "0.5,0.5,0.0", "0.6,0.2,0.2"))},
}
# content and hybrid: no table entry; the generic space covers whatever they take.

#: hyperparameters that decide where or how fast a model runs, or its seed: never searched.
NEUTRAL = frozenset({"device", "threads", "max_items", "random_state", "batch_size_eval"})


def _accepts(cls: type[Recommender], name: str, value: Any) -> bool:
    """Whether the model's own validation accepts ``name=value`` (with defaults elsewhere)."""
    try:
        cls(**{**cls.default_params(), name: value})._check_params()
    except (ConfigError, TypeError, ValueError):
        return False
    return True


def _bounded(cls: type[Recommender], name: str, default: float, target: float, integer: bool) -> float:
    """The bound nearest ``target`` (moving geometrically from it toward ``default``) that the model
    accepts: a generic range must not step outside a model's valid values (a dropout below 1, ...)."""
    value = target
    for _ in range(30):
        candidate = round(value) if integer else value
        if _accepts(cls, name, candidate):
            return candidate
        value = math.sqrt(value * default) if value > 0 and default > 0 else (value + default) / 2
    return default


def generic_space(model_name: str) -> dict[str, Param]:
    """A search space derived from a model's default hyperparameters.

    Positive floats: log scale over [default/10, default*10]; positive ints: log scale over
    [default/4, default*4] (at least 1); both narrowed to what the model's ``_check_params``
    accepts. Neutral parameters (`NEUTRAL`), strings, bools, None and zero or negative defaults are
    left at their defaults.

    Raises:
        ConfigError: unknown model.
    """
    cls = get_model_class(model_name)
    space: dict[str, Param] = {}
    for name, default in cls.default_params().items():
        if name in NEUTRAL or isinstance(default, bool) or not isinstance(default, int | float):
            continue
        if default <= 0:
            continue
        if isinstance(default, int):
            low = int(_bounded(cls, name, default, max(1, default // 4), True))
            high = int(_bounded(cls, name, default, default * 4, True))
            if high > low:
                space[name] = IntRange(low, high, log=True)
        else:
            low = float(_bounded(cls, name, default, default / 10, False))
            high = float(_bounded(cls, name, default, default * 10, False))
            if high > low:
                space[name] = FloatRange(low, high, log=low > 0)
    return space


def search_space(model_name: str, fixed_params: Mapping[str, Any] | None = None) -> dict[str, Param]:
    """The default search space of a model: its `SPACES` entry (restricted to hyperparameters it
    takes) or, without one, `generic_space`; minus anything in ``fixed_params``.

    Raises:
        ConfigError: unknown model.
    """
    cls = get_model_class(model_name)
    names = set(cls.param_names())
    if model_name in SPACES:
        space = {k: v for k, v in SPACES[model_name].items() if k in names}
    else:
        space = generic_space(model_name)
    return {k: v for k, v in space.items() if k not in (fixed_params or {})}


def parse_space(model_name: str, specs: list[str]) -> dict[str, Param]:
    """Turn CLI text into a space: ``reg=1e-3:10:log`` (float range, ``log`` optional),
    ``factors=16:256:int`` or ``factors=16:256:int:log`` (int range), ``similarity=cosine,bm25`` (a choice;
    values take the type of the hyperparameter's default).

    Raises:
        ConfigError: on a malformed entry or a name the model does not take.
    """
    from movierec.models.registry import parse_params

    cls = get_model_class(model_name)
    defaults = cls.default_params()
    space: dict[str, Param] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not text:
            raise ConfigError(f"--space must look like name=LOW:HIGH[:int][:log] or name=A,B,C, got {spec!r}")
        if name not in defaults:
            raise ConfigError(f"model {model_name} has no hyperparameter {name!r}; it takes "
                              f"{', '.join(defaults) or 'none'}")
        if ":" in text:
            parts = text.split(":")
            flags = set(parts[2:])
            if len(parts) < 2 or not flags <= {"int", "log"}:
                raise ConfigError(f"--space range must look like LOW:HIGH[:int][:log], got {spec!r}")
            try:
                low, high = float(parts[0]), float(parts[1])
            except ValueError:
                raise ConfigError(f"--space bounds must be numbers, got {spec!r}") from None
            if "int" in flags or (isinstance(defaults[name], int) and not isinstance(defaults[name], bool)):
                space[name] = IntRange(int(low), int(high), log="log" in flags)
            else:
                space[name] = FloatRange(low, high, log="log" in flags)
        else:
            values = [parse_params(model_name, [f"{name}={v}"])[name] for v in text.split(",")]
            space[name] = Choice(tuple(values))
    return space


def _check_space(model_name: str, space: Mapping[str, Any]) -> dict[str, Param]:
    names = get_model_class(model_name).param_names()
    checked: dict[str, Param] = {}
    for name, param in space.items():
        if name not in names:
            raise ConfigError(f"model {model_name} has no hyperparameter {name!r}; it takes "
                              f"{', '.join(names) or 'none'}")
        if isinstance(param, list | tuple):
            param = Choice(tuple(param))
        if not isinstance(param, FloatRange | IntRange | Choice):
            raise ConfigError(f"space[{name!r}] must be a FloatRange, IntRange, Choice or a list of values, "
                              f"got {param!r}")
        if isinstance(param, FloatRange | IntRange) and (
                not param.low <= param.high or (param.log and param.low <= 0)):
            raise ConfigError(f"space[{name!r}] must have low <= high (low > 0 on a log scale), got {param}")
        if isinstance(param, Choice) and not param.values:
            raise ConfigError(f"space[{name!r}] must offer at least one value, got {param}")
        checked[name] = param
    return checked


# -- the objective -----------------------------------------------------------------------------------
_MINIMISED = ("rmse", "mae", "argmax_rmse")
_RATING_ONLY = ("rmse", "mae", "argmax_rmse", "accuracy")
_TOPN = (*RANKING_KEYS, "coverage", "novelty", "diversity")


def metric_direction(metric: str) -> tuple[str, str, int | None]:
    """Normalise a metric name: (report key, "minimize" or "maximize", K or None for rating metrics).

    >>> metric_direction("ndcg")
    ('ndcg@10', 'maximize', 10)

    Raises:
        ConfigError: naming the metric if it is not a figure of the `evaluate` report.
    """
    text = str(metric).strip().lower()
    if text in _RATING_ONLY:
        return text, "minimize" if text in _MINIMISED else "maximize", None
    name, at, k_text = text.partition("@")
    if name in _TOPN:
        k = 10
        if at:
            k = int(k_text) if k_text.isdigit() else 0
        if k >= 1:
            return f"{name}@{k}", "maximize", k
    raise ConfigError(
        f"metric must be one of {', '.join(_RATING_ONLY)} or NAME@K with NAME in {', '.join(_TOPN)}, "
        f"got {metric!r}"
    )


def _train_only_dataset(train: Ratings) -> Dataset:
    """``train`` dressed as a `Dataset` so `make_split` can carve it (the catalog is ids only)."""
    ids = train.items.ids
    movies = pd.DataFrame({"item": ids, "title": [""] * len(ids), "year": [None] * len(ids),
                           "genres": [[] for _ in range(len(ids))]})
    return Dataset(name="train", ratings=train, catalog=Catalog(movies))


@dataclass
class TuneResult:
    """What `tune` found.

    Attributes:
        best_params: every hyperparameter to pass to `create_model` (fixed ones and the best trial's).
        best_value: the metric of the best trial on the validation carve-out.
        trials: one row per trial in the order run: ``number``, ``value`` (NaN if it failed),
            ``state``, ``seconds``, then one column per searched hyperparameter.
        study: summary: model, metric, direction, valid_spec, counts, best trial, seed, the space (as
            text), fixed params, carve-out sizes, total seconds.
    """

    best_params: dict[str, Any]
    best_value: float
    trials: pd.DataFrame
    study: dict[str, Any] = field(default_factory=dict)

    def best_model(self) -> Recommender:
        """A new, unfitted model with `best_params` (fit it on the whole training data)."""
        return create_model(self.study["model"], **self.best_params)

    def leaderboard(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` best completed trials, best first (ties: earlier trial first)."""
        done = self.trials[self.trials["state"] == "COMPLETE"]
        ascending = self.study.get("direction") == "minimize"
        return done.sort_values(["value", "number"], ascending=[ascending, True], kind="stable").head(n)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (numpy scalars converted; NaN values as None)."""
        def plain(value: Any) -> Any:
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                return None
            return value

        records = [{k: plain(v) for k, v in row.items()} for row in self.trials.to_dict("records")]
        return {"best_params": {k: plain(v) for k, v in self.best_params.items()},
                "best_value": plain(self.best_value), "study": self.study, "trials": records}


def tune(
    model_name: str,
    train: Ratings,
    *,
    metric: str = "ndcg@10",
    trials: int = 30,
    valid_spec: str = "user-ratio:0.8:0",
    space: Mapping[str, Any] | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    random_state: int = 0,
    catalog: Catalog | None = None,
    callback: Callback | None = None,
    try_defaults: bool = True,
) -> TuneResult:
    """Search hyperparameters of ``model_name`` on a validation carve-out of ``train``.

    Args:
        model_name: a registry name.
        train: the training ratings ONLY (the test part of a split must not be passed); the carve-out
            ``valid_spec`` is made from it, trials fit on its train part and are scored on the rest.
        metric: a figure of the `evaluate` report (see `metric_direction`); the direction follows.
        trials: number of trials (>= 1).
        valid_spec: a `make_split` spec for the carve-out (``user-ratio:0.8:0``, ``random:0.9:1``,
            ``temporal:0.9``, ``leave-last:1``, ``kfold:5:1:0``; not the ml-100k folds).
        space: name -> `FloatRange` / `IntRange` / `Choice` (or a list of values); default
            `search_space(model_name)`.
        fixed_params: hyperparameters held fixed (removed from the space).
        random_state: seeds the TPE sampler; the same seed, data and model give the same trials.
        catalog: movies, passed to ``fit`` and to `evaluate` (needed for ``diversity@K`` and by models
            that use the catalog).
        callback: ``callback("trial", info)`` after each trial, info holding ``number`` (from 0),
            ``trials``, ``value`` (NaN if the trial failed), ``params``, ``best_value``,
            ``best_params``, ``seconds``.
        try_defaults: make the first trial the model's defaults (those inside the space; the rest
            sampled), so the result is never worse on the carve-out than not tuning at all.

    Raises:
        ConfigError: unknown model, metric, hyperparameter or split spec; ``trials`` not an int >= 1;
            a metric the model cannot produce (``rmse`` of a ranking model); no catalog for a model or
            metric that needs one; an empty space; no trial completed.
        DataError: a carve-out that leaves a part empty.
    """
    import optuna

    cls = get_model_class(model_name)
    key, direction, k = metric_direction(metric)
    check_int("trials", trials)
    check_int("random_state", random_state, low=0)
    if k is None and not cls.predicts_ratings:
        raise ConfigError(f"metric {key} needs predicted ratings; {model_name} ranks without them: "
                          f"use a top-N metric such as ndcg@10")
    if key in ("accuracy", "argmax_rmse") and not hasattr(cls, "predict_argmax"):
        raise ConfigError(f"metric {key} needs a classifier over rating levels; {model_name} is not one")
    if cls.uses_catalog and catalog is None:
        raise ConfigError(f"{model_name} learns from movie features: pass catalog=")
    if key.startswith("diversity@") and catalog is None:
        raise ConfigError(f"metric {key} needs the catalog (genres): pass catalog=")
    fixed = dict(fixed_params or {})
    create_model(model_name, **fixed)  # unknown names fail here, before any work
    chosen = search_space(model_name) if space is None else _check_space(model_name, space)
    chosen = {name: param for name, param in chosen.items() if name not in fixed}
    if not chosen:
        raise ConfigError(f"nothing to tune for {model_name}: the search space is empty "
                          f"(pass space= naming some of {', '.join(cls.param_names())})")
    if not isinstance(valid_spec, str):
        raise ConfigError(f"valid_spec must be a split spec string, got {valid_spec!r}")
    if valid_spec.strip() in ("u1", "u2", "u3", "u4", "u5", "ua", "ub"):
        raise ConfigError(f"valid_spec must carve the training data (random, user-ratio, temporal, "
                          f"leave-last, kfold), not a canonical ml-100k fold, got {valid_spec!r}")
    carve = make_split(_train_only_dataset(train), valid_spec)

    def objective(trial: Any) -> float:
        params = {name: param.suggest(trial, name) for name, param in chosen.items()}
        model = create_model(model_name, **fixed, **params)
        started = time.perf_counter()
        model.fit(carve.train, catalog=catalog)
        report = evaluate(model, carve, k=k or 10, catalog=catalog, ranking=k is not None)
        trial.set_user_attr("seconds", time.perf_counter() - started)
        value = float(report.metrics.get(key, math.nan))
        return value  # NaN marks the trial failed (optuna records it and goes on)

    def progress(study: Any, frozen: Any) -> None:
        if callback is None:
            return
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        value = frozen.value if frozen.value is not None else math.nan
        callback("trial", {
            "number": frozen.number, "trials": trials, "value": value, "params": dict(frozen.params),
            "best_value": study.best_value if completed else math.nan,
            "best_params": {**fixed, **study.best_params} if completed else {},
            "seconds": frozen.user_attrs.get("seconds", math.nan),
        })

    # optuna logs the study and every trial at INFO to stderr; library code must stay quiet, so
    # lower its verbosity for the duration and put it back.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    try:
        sampler = optuna.samplers.TPESampler(seed=random_state)
        study = optuna.create_study(direction=direction, sampler=sampler)
        if try_defaults:
            defaults = cls.default_params()
            start = {n: defaults[n] for n, p in chosen.items() if defaults[n] in p}
            if start:
                study.enqueue_trial(start)
        study.optimize(objective, n_trials=int(trials), callbacks=[progress], catch=())
    finally:
        optuna.logging.set_verbosity(verbosity)
    total_s = time.perf_counter() - started

    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "value": t.value if t.value is not None else math.nan,
                     "state": t.state.name, "seconds": t.user_attrs.get("seconds", math.nan),
                     **{name: t.params.get(name) for name in chosen}})
    frame = pd.DataFrame(rows, columns=["number", "value", "state", "seconds", *chosen])
    completed = frame[frame["state"] == "COMPLETE"]
    if completed.empty:
        raise ConfigError(f"no trial of {model_name} completed: {key} was undefined in all {trials} "
                          f"(NaN); try another metric or space")
    best = study.best_trial
    summary = {
        "model": model_name, "metric": key, "direction": direction, "valid_spec": carve.recipe,
        "trials": len(frame), "completed": len(completed), "best_trial": best.number,
        "random_state": random_state, "sampler": "TPE",
        "space": {name: str(param) for name, param in chosen.items()},
        "fixed_params": fixed, "valid_train_ratings": len(carve.train),
        "valid_test_ratings": len(carve.test), "seconds": total_s,
    }
    return TuneResult(best_params={**fixed, **best.params}, best_value=float(best.value),
                      trials=frame, study=summary)


def registered_spaces() -> dict[str, dict[str, str]]:
    """The default space of every registered model, as text (for ``movierec tune --help`` or docs)."""
    return {name: {k: str(v) for k, v in search_space(name).items()} for name in sorted(MODELS)}

