"""Every model by name, and where it lives: the one list the CLI, the service, the artifacts, the
benchmarks and the tests use.

Each entry names the module and class of a model (``"ranking.ease:EASE"``, under `movierec.models`);
a class is imported the first time it is asked for, so listing names or loading one model never
imports the others (or torch, for a model that needs none). The table is grouped by what a user looks
for: predicting stars, ranking what someone will watch, the classic network designs of the MovieLens
projects, and models built on other models or on movie content.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

from movierec.errors import ConfigError
from movierec.models.core.recommender import Recommender

__all__ = ["MODELS", "create_model", "get_model_class", "parse_params"]

_WHERE: dict[str, str] = {
    # rating prediction: the stars someone would give
    "bias": "rating.bias:BiasRecommender",
    "biased-mf-als": "rating.als:BiasedMFALS",
    "biased-mf-sgd": "rating.mf:BiasedMFSGD",
    "svdpp": "rating.svdpp:SVDpp",
    "bayesian-mf": "rating.bayesian:BayesianMF",
    "item-knn-baseline": "rating.knn_baseline:ItemKNNBaseline",
    # ranking: which movies someone will watch
    "popularity": "ranking.popularity:Popularity",
    "item-knn": "ranking.item_knn:ItemKNN",
    "ease": "ranking.ease:EASE",
    "gf-cf": "ranking.gfcf:GFCF",
    "ials": "ranking.ials:ImplicitALS",
    "bpr": "ranking.bpr:BPR",
    "mult-vae": "ranking.mult_vae:MultVAE",
    # the classic MovieLens network designs
    "dot-bias-sigmoid": "classic.dot_bias_sigmoid:DotBiasSigmoid",
    "embedding-mlp": "classic.embedding_mlp:EmbeddingMLP",
    "embedding-regressor": "classic.embedding_mlp:EmbeddingRegressor",
    "rating-classifier": "classic.rating_classifier:RatingClassifier",
    "mean-normalized-mf": "classic.mean_normalized_mf:MeanNormalizedMF",
    # combiners: built on other models, or on movie content
    "content": "combine.content:ContentRecommender",
    "hybrid": "combine.hybrid:HybridRecommender",
    "blend": "combine.blend:Blend",
    "ltr": "combine.ltr:LearnedBlend",
}


class _Registry(MutableMapping[str, type[Recommender]]):
    """Name -> model class, importing each class on first use. Tests and plugins may add a class
    (``MODELS[name] = cls``) or replace one for a while (``monkeypatch.setitem``)."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = dict(where)
        self._classes: dict[str, type[Recommender]] = {}

    def __getitem__(self, name: str) -> type[Recommender]:
        cls = self._classes.get(name)
        if cls is None:
            module, _, attribute = self._where[name].partition(":")  # KeyError: unknown name
            cls = getattr(importlib.import_module(f"movierec.models.{module}"), attribute)
            if cls.name != name:
                raise RuntimeError(f"registry entry {name!r} points at {cls.__name__}, named {cls.name!r}")
            self._classes[name] = cls
        return cls

    def __setitem__(self, name: str, cls: type[Recommender]) -> None:
        self._classes[name] = cls
        self._where.setdefault(name, "")

    def __delitem__(self, name: str) -> None:
        if name not in self._where:
            raise KeyError(name)
        self._classes.pop(name, None)
        del self._where[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, name: object) -> bool:
        return name in self._where


#: Every registered model: name -> class (imported on first use).
MODELS: MutableMapping[str, type[Recommender]] = _Registry(_WHERE)


def get_model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``.

    Raises:
        ConfigError: naming the known models if ``name`` is not one.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}"
        ) from None


def _convert(name: str, text: str, default: Any) -> Any:
    """Read a ``--param`` value with the type of the hyperparameter's default."""
    try:
        if isinstance(default, bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if default is None:
            for kind in (int, float):
                try:
                    return kind(text)
                except ValueError:
                    pass
        return text
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise ConfigError(f"{name} must be {kind}, got {text!r}") from None


def parse_params(model: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ``["reg_user=20", "epochs=5"]`` into typed hyperparameters of ``model``.

    Raises:
        ConfigError: on a malformed pair or a name the model does not take.
    """
    cls = get_model_class(model)
    defaults = cls.default_params()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--param must look like name=value, got {pair!r}")
        if key not in defaults:
            raise ConfigError(
                f"model {model} has no hyperparameter {key!r}; it takes "
                f"{', '.join(defaults) or 'none'}"
            )
        params[key] = _convert(key, value, defaults[key])
    return params


def create_model(name: str, **params: Any) -> Recommender:
    """A new, unfitted model ``name`` with the given hyperparameters.

    Raises:
        ConfigError: unknown model or hyperparameter name.
    """
    cls = get_model_class(name)
    unknown = set(params) - set(cls.param_names())
    if unknown:
        raise ConfigError(
            f"model {name} has no hyperparameter {sorted(unknown)[0]!r}; it takes "
            f"{', '.join(cls.param_names()) or 'none'}"
        )
    return cls(**params)
