"""Fitting one model across the ranks of a group: which models are covered and how.

- ``ials`` and ``biased-mf-als``: the ratings sharded by user and by item (`movierec.distributed.solvers`).
- ``mult-vae``, ``mean-normalized-mf``, ``biased-mf-sgd``, ``svdpp``, the tower presets
  (``embedding-mlp``, ``embedding-regressor``, ``rating-classifier``), ``dot-bias-sigmoid`` and
  ``bpr``: data parallel, each rank holding the ratings of a block of users, gradients averaged over
  the ranks (`movierec.distributed.data_parallel`).

Every other model is refused with a `ConfigError` naming those covered, before any rank does work;
``bayesian-mf`` among them, as a Gibbs sampler has no gradient steps to split.
Rank 0 ends with the fitted model; the other ranks take part in the collectives and keep nothing.
"""

from __future__ import annotations

import scipy.sparse as sp
import torch.distributed as dist

from movierec.data.dataset import Catalog, Ratings
from movierec.distributed.data_parallel import GradientReplicas, share_ratings
from movierec.distributed.group import Group, guarded
from movierec.distributed.sharded import TrainSummary, fit_sharded, share_training_data
from movierec.errors import ConfigError
from movierec.models.core.recommender import Callback, Recommender
from movierec.models.core.train import training_replicas

__all__ = ["COVERED", "adopt_whole_ratings", "check_covered", "fit_data_parallel", "fit_distributed"]

SHARDED = ("ials", "biased-mf-als")
DATA_PARALLEL = ("mult-vae", "mean-normalized-mf", "biased-mf-sgd", "svdpp", "embedding-mlp",
                 "embedding-regressor", "rating-classifier", "dot-bias-sigmoid", "bpr")
COVERED = SHARDED + DATA_PARALLEL


def check_covered(model_name: str) -> None:
    """Raise `ConfigError` unless ``model_name`` trains across processes."""
    if model_name not in COVERED:
        raise ConfigError(f"--distributed does not cover model {model_name!r}; it covers "
                          f"{', '.join(COVERED)}")


def adopt_whole_ratings(model: Recommender, seen: sp.csr_matrix) -> None:
    """Rank 0's model after a data-parallel fit on its shard: every user's seen movies (``seen``, the
    whole training ratings' users x movies matrix), and what the model derives from them (Mult-VAE's
    interaction rows), rebuilt as loading its artifact rebuilds them, so the model is the one a
    single process would save."""
    model.seen_ = seen
    for cached in ("_facts", "retriever"):  # built for the shard's arrays, if anything built them
        model.__dict__.pop(cached, None)
    history = model.__dict__.get("history_")  # some models' _set_state clears it (a loaded model)
    model._set_state(model._state())
    if history is not None:
        model.history_ = history  # type: ignore[attr-defined]


def fit_data_parallel(model: Recommender, shard: Ratings, group: Group, *,
                      seen: sp.csr_matrix | None = None, valid: Ratings | None = None,
                      callback: Callback | None = None, catalog: Catalog | None = None) -> None:
    """Fit a data-parallel model on this rank's ``shard`` (`share_ratings`), every rank at once; on
    rank 0 the model then adopts ``seen``, the whole training ratings' users x movies matrix (a
    memory map will do). Returns once every rank has finished. ``valid``, ``callback`` and
    ``catalog`` serve rank 0 only."""
    main = group.is_main
    before = model.get_params()
    if "device" in before:  # every replica computes where its rank's collectives run
        model.device = str(group.device)  # type: ignore[attr-defined]
    try:
        with training_replicas(GradientReplicas(group)):
            guarded(group, f"training {model.name}", lambda: model.fit(
                shard, valid=valid if main else None, callback=callback if main else None,
                catalog=catalog if main else None))
    finally:
        if "device" in before:
            model.device = before["device"]  # type: ignore[attr-defined]
    if main:
        assert seen is not None
        adopt_whole_ratings(model, seen)
    guarded(group, "finishing training", dist.barrier)


def fit_distributed(model: Recommender, train: Ratings | None, group: Group, *, valid: Ratings | None = None,
                    callback: Callback | None = None, catalog: Catalog | None = None) -> Recommender:
    """Fit ``model`` on ``train`` across ``group``; every rank calls this with the same model and data.

    On rank 0 the model ends fitted, as `Recommender.fit` leaves it. Elsewhere a sharded model ends
    with the factors and its block's seen rows (enough to rank its users for `movierec.distributed.
    sharded.serve_ranking`) and a data-parallel one fitted on its shard (not to be used). Rank 0 alone
    reads ``train`` (the others pass None): it sends every rank its shard
    (`movierec.distributed.sharded` for the sharded models, `movierec.distributed.data_parallel.
    share_ratings` for the others). ``valid``, ``callback`` and ``catalog`` serve rank 0 only.

    Raises:
        ConfigError: a model that is not covered (see `COVERED`).
        DistributedError: another rank stopped or timed out (one line; the model is left unfitted).
    """
    check_covered(model.name)
    main = group.is_main
    if model.name in SHARDED:
        shards, seen = share_training_data(group, model, train if main else None)
        fit_sharded(model, shards, group, summary=TrainSummary.of(train) if main else None,
                    seen=seen, valid=valid if main else None, callback=callback if main else None,
                    catalog=catalog)
        guarded(group, "finishing training", dist.barrier)
    else:
        shard = share_ratings(group, train if main else None)
        fit_data_parallel(model, shard, group, seen=train.csr if train is not None and main else None,
                          valid=valid, callback=callback, catalog=catalog)
    return model
