"""`evaluate(model, split) -> Report`: the BENCHMARKS.md protocol, full ranking, no sampled negatives.

Rating prediction: RMSE and MAE over every test row, predictions clipped to the scale; pairs the model
cannot score get its documented fallback and are counted (``fallbacks``). A model over rating levels
(with ``predict_argmax``) also gets ``argmax_rmse`` and ``accuracy`` of its most likely level.

Top-N at K: for every user with at least one test rating, candidates are all items in training minus the
user's training items; relevant items are all the user's test items (any rating, including items never
seen in training, which can only count against recall); a user unknown to the model scores 0. Coverage
is distinct recommended items / items in training; novelty is the mean self-information -log2(p_i) of
recommended items (p_i: share of training users who rated i); diversity is the mean pairwise genre
distance within a list (needs a catalog).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec import metrics
from movierec.data.dataset import Catalog
from movierec.data.split import Split
from movierec.models.core.checks import check_k
from movierec.models.core.recommender import Recommender

__all__ = ["Report", "evaluate"]

RANKING_KEYS = ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")


@dataclass
class Report:
    """The result of `evaluate`.

    Attributes:
        metrics: summary figures by name (``rmse``, ``mae``, ``ndcg@10``, ``coverage@10``, ...).
        per_user: one row per evaluated user: ``user`` (raw id), ``n_test``, ranking metrics.
        timings: seconds spent by phase.
        info: model, split recipe, K, counts (users evaluated, users the model could not serve,
            fallback predictions).
    """

    metrics: dict[str, float]
    per_user: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "timings": self.timings, "info": self.info}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)


def _rating_metrics(model: Recommender, split: Split) -> tuple[dict[str, float], dict[str, Any]]:
    test = split.test
    users, items = test.user_ids, test.item_ids
    predictions = model.predict(users, items)
    truth = test.rating.astype(np.float64)
    fallbacks = int((~model.known_pairs(users, items)).sum())
    summary = {"rmse": metrics.rmse(truth, predictions), "mae": metrics.mae(truth, predictions)}
    predict_argmax = getattr(model, "predict_argmax", None)
    if predict_argmax is not None:
        # Classifiers over rating levels: the most likely level, scored as a rating and as a class.
        levels = np.asarray(predict_argmax(users, items), dtype=np.float64)
        summary["argmax_rmse"] = metrics.rmse(truth, levels)
        summary["accuracy"] = float(np.mean(levels == truth))
    return summary, {"fallbacks": fallbacks}


def _ranking(
    model: Recommender, split: Split, k: int, catalog: Catalog | None, workers: int,
    ranker: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict[str, float], pd.DataFrame, dict[str, Any]]:
    test = split.test
    n_items = len(model.items_)
    # Evaluated users: everyone with a test rating, in ascending raw id. A test vocabulary may
    # hold users without rows (a split built with reindex=False); they are not evaluated.
    counts = test.user_counts
    has_test = counts > 0
    eval_users = test.users.ids[has_test]
    n_test = counts[has_test]
    row_of_user = np.cumsum(has_test) - 1
    model_user = model.users_.indices(eval_users, missing="mask")
    served = model_user >= 0

    # Relevant items in an item space extended past the model's catalog: test-only movies get
    # columns n_items.. so they count as relevant but can never be hit.
    test_item_in_model = model.items_.indices(test.items.ids, missing="mask")
    unseen = test_item_in_model < 0
    extra_columns = np.cumsum(unseen) - 1 + n_items
    column_of_test_item = np.where(unseen, extra_columns, test_item_in_model)
    relevant = sp.csr_matrix(
        (
            np.ones(len(test), dtype=np.float32),
            (row_of_user[test.user_index], column_of_test_item[test.item_index]),
        ),
        shape=(len(eval_users), n_items + int(unseen.sum())),
    )

    # Candidates are the movies of the training data: a model whose catalog reaches further (content
    # models know movies nobody rated) must not be scored on movies the protocol does not rank.
    in_train = np.zeros(n_items, dtype=bool)
    train_items = model.items_.indices(split.train.items.ids[split.train.item_counts > 0],
                                       missing="mask")
    in_train[train_items[train_items >= 0]] = True
    width = min(k, n_items)
    topk = np.full((len(eval_users), k), -1, dtype=np.int64)
    if served.any():
        items, _ = (ranker or model.recommend_indices)(
            model_user[served], width, exclude_seen=True,
            candidates=None if in_train.all() else in_train, workers=workers)
        topk[served, :width] = items

    hits = metrics.hits_matrix(topk, relevant)
    per_user_values = metrics.ranking_metrics(topk, relevant)
    per_user = pd.DataFrame({"user": eval_users, "n_test": n_test})
    summary: dict[str, float] = {}
    for key in RANKING_KEYS:
        per_user[key] = per_user_values[key]
        summary[f"{key}@{k}"] = float(np.mean(per_user_values[key]))

    popularity = np.asarray((model.seen_ != 0).sum(axis=0)).ravel() / max(1, len(model.users_))
    served_topk = topk[served]
    summary[f"coverage@{k}"] = metrics.coverage(served_topk, int(in_train.sum()))
    summary[f"novelty@{k}"] = metrics.novelty(served_topk, popularity) if len(served_topk) else 0.0
    if catalog is not None and len(catalog.genres):
        features = catalog.genre_matrix(model.items_)
        diversity = metrics.intra_list_diversity(served_topk, features)
        summary[f"diversity@{k}"] = float(np.nanmean(diversity)) if np.isfinite(
            diversity).any() else float("nan")
    info = {
        "users_evaluated": len(eval_users),
        "users_unserved": int((~served).sum()),
        "test_items_unseen_in_train": int(unseen.sum()),
        "hits": int(hits.sum()),
    }
    return summary, per_user, info


def evaluate(
    model: Recommender,
    split: Split,
    *,
    k: int = 10,
    catalog: Catalog | None = None,
    ranking: bool = True,
    workers: int | None = None,
    ranker: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> Report:
    """Evaluate a model fitted on ``split.train`` against ``split.test``.

    Args:
        model: fitted on ``split.train`` (its vocabularies define the training catalog).
        split: the split.
        k: list length for top-N metrics.
        catalog: movies, for genre diversity.
        ranking: compute top-N metrics (rating metrics are computed when the model predicts
            ratings).
        workers: blocks of users ranked at once on threads of their own (see
            `Recommender.recommend_indices`); None: one per core, at most 4. Metrics do not depend
            on it.
        ranker: what ranks the users, in place of ``model.recommend_indices`` (same arguments and
            result), e.g. spread over the ranks of a distributed run
            (`movierec.distributed.sharded.rank_across`).

    Raises:
        NotFittedError: if the model is not fitted. ConfigError: k < 1.
    """
    check_k(k)
    model._require_fitted()
    summary: dict[str, float] = {}
    timings: dict[str, float] = {}
    info: dict[str, Any] = {"model": model.name, "split": split.recipe, "k": k,
                            "train_ratings": len(split.train), "test_ratings": len(split.test)}
    counts = split.test.user_counts
    per_user = pd.DataFrame({"user": split.test.users.ids[counts > 0], "n_test": counts[counts > 0]})
    if model.predicts_ratings:
        start = time.perf_counter()
        rating_summary, rating_info = _rating_metrics(model, split)
        timings["predict_s"] = time.perf_counter() - start
        summary.update(rating_summary)
        info.update(rating_info)
    if ranking:
        start = time.perf_counter()
        if workers is None:
            workers = min(os.cpu_count() or 1, 4)
        ranking_summary, per_user, ranking_info = _ranking(model, split, k, catalog, workers,
                                                           ranker)
        timings["rank_s"] = time.perf_counter() - start
        summary.update(ranking_summary)
        info.update(ranking_info)
    return Report(metrics=summary, per_user=per_user, timings=timings, info=info)
