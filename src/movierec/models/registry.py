"""Model names -> classes: the one map the CLI, the service, the benchmarks and the tests use."""

from __future__ import annotations

from typing import Any

from movierec.errors import ConfigError
from movierec.models.base import Recommender
from movierec.models.baseline import BiasRecommender, Popularity
from movierec.models.bayesian import BayesianMF
from movierec.models.blend import Blend
from movierec.models.content import ContentRecommender
from movierec.models.ease import EASE
from movierec.models.gfcf import GFCF
from movierec.models.hybrid import HybridRecommender
from movierec.models.implicit import BPR, ImplicitALS
from movierec.models.knn import ItemKNN, ItemKNNBaseline
from movierec.models.ltr import LearnedBlend
from movierec.models.mf import BiasedMFALS, BiasedMFSGD, SVDpp
from movierec.models.neural import (
    DotBiasSigmoid,
    EmbeddingMLP,
    EmbeddingRegressor,
    MeanNormalizedMF,
    RatingClassifier,
)
from movierec.models.vae import MultVAE

__all__ = ["MODELS", "create_model", "get_model_class", "parse_params"]

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in [
        BiasRecommender,
        BayesianMF,
        Blend,
        BPR,
        BiasedMFALS,
        BiasedMFSGD,
        ContentRecommender,
        DotBiasSigmoid,
        EASE,
        EmbeddingMLP,
        EmbeddingRegressor,
        GFCF,
        HybridRecommender,
        ImplicitALS,
        ItemKNN,
        ItemKNNBaseline,
        LearnedBlend,
        MeanNormalizedMF,
        MultVAE,
        Popularity,
        RatingClassifier,
        SVDpp,
    ]
}


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
