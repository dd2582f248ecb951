"""Reproduces how the content and hybrid models' defaults were chosen (validation carve-outs), then
prints their test figures and a cold-start check on movies whose ratings are all withheld from training.

    python benchmarks/selection/content.py                   # ml100k-strat75 and mlsmall-strat80
    python benchmarks/selection/content.py --collaborative ials,ease   # the hybrid over those
    python benchmarks/selection/content.py --collaborative biased-mf-als,item-knn-baseline --no-tune

1. Tuning (never on test): the training part of each split is split again, user-ratio(0.8, 7); the
   content model's knobs are chosen one at a time (weighting, year weight, decade smoothing, tag weight,
   min_tag_movies) by NDCG@10 there, then the hybrid's user_shrink x item_shrink grid.
2. Test figures: NDCG@10, P@10, coverage@10 and fit seconds (one thread) for content, each
   collaborative model alone and the hybrid over it, by `movierec.eval.protocol.evaluate`.
3. Cold start: 10% of the training movies with at least 5 ratings (seeded choice) lose all their
   training ratings, so only the catalog knows them. For every user who had rated one of them, the
   models rank the withheld ("new") movies among themselves; NDCG@10 and AUC (chance: 0.5) of the
   user's own new movies. A collaborative model knows nothing of them (chance level by construction).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from movierec.data.dataset import Ratings  # noqa: E402
from movierec.data.download import load_dataset  # noqa: E402
from movierec.data.split import Split, make_split, user_ratio_split  # noqa: E402
from movierec.eval.protocol import evaluate  # noqa: E402
from movierec.models.combine.content import ContentRecommender  # noqa: E402
from movierec.models.combine.hybrid import HybridRecommender  # noqa: E402
from movierec.models.registry import create_model  # noqa: E402

SPLITS = {"ml100k-strat75": ("ml-100k", "user-ratio:0.75:42"),
          "mlsmall-strat80": ("ml-latest-small", "user-ratio:0.8:42")}
GRID = {
    "weighting": ["binary", "rating", "centered", "deviation"],
    "year_weight": [0.0, 0.25, 0.5, 1.0],
    "year_smoothing": [0.0, 0.25, 0.5],
    "tag_weight": [0.0, 0.5, 1.0, 2.0],
    "min_tag_movies": [1, 2, 3, 5],
}
SHRINKS = [0.0, 5.0, 20.0, 100.0, 1000.0]


def ndcg(model, split: Split, catalog) -> float:  # type: ignore[no-untyped-def]
    return evaluate(model, split, k=10, catalog=catalog).metrics["ndcg@10"]


def tune_content(split: Split, catalog) -> dict:  # type: ignore[no-untyped-def,type-arg]
    params: dict = ContentRecommender.default_params()  # type: ignore[type-arg]
    for name, values in GRID.items():
        scores = {}
        for value in values:
            model = ContentRecommender(**(params | {name: value})).fit(split.train, catalog=catalog)
            scores[value] = ndcg(model, split, catalog)
        params[name] = max(scores, key=lambda v: (scores[v], v == params[name]))
        print(f"    {name}: " + ", ".join(f"{v}={s:.4f}" for v, s in scores.items()), flush=True)
    return params


def tune_hybrid(split: Split, catalog, collaborative: str, content: dict) -> dict:  # type: ignore[no-untyped-def,type-arg]
    knobs = {k: content[k] for k in ("genre_weight", "tag_weight", "year_weight", "weighting")}
    model = HybridRecommender(collaborative, **knobs).fit(split.train, catalog=catalog)
    best, table = None, []
    for user_shrink in SHRINKS:
        for item_shrink in SHRINKS:
            # the shrinkages only enter the blend weights: set them and recompute, no refit needed
            model.user_shrink, model.item_shrink = user_shrink, item_shrink
            model._prepare()
            score = ndcg(model, split, catalog)
            table.append((user_shrink, item_shrink, score))
            if best is None or score > best[2]:
                best = (user_shrink, item_shrink, score)
    print("    shrink grid (user, item, ndcg): " + "; ".join(f"{u:g},{i:g}:{s:.4f}" for u, i, s in table))
    return {"collaborative": collaborative, "user_shrink": best[0], "item_shrink": best[1], **knobs}


def timed_fit(model, train: Ratings, catalog):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    kwargs = {"catalog": catalog} if model.uses_catalog else {}
    model.fit(train, **kwargs)
    return model, time.perf_counter() - start


def test_figures(name: str, model, split: Split, catalog) -> dict:  # type: ignore[no-untyped-def,type-arg]
    model, fit_s = timed_fit(model, split.train, catalog)
    m = evaluate(model, split, k=10, catalog=catalog).metrics
    row = {"model": name, "ndcg@10": m["ndcg@10"], "precision@10": m["precision@10"],
           "coverage@10": m["coverage@10"], "fit_s": fit_s}
    print(f"    {name:40s} NDCG@10 {row['ndcg@10']:.4f}  P@10 {row['precision@10']:.4f}  "
          f"coverage {row['coverage@10']:.3f}  fit {fit_s:.2f}s", flush=True)
    return row


def cold_start(models: dict, train: Ratings, catalog, seed: int = 0) -> list[dict]:  # type: ignore[type-arg]
    counts = train.item_counts
    eligible = np.flatnonzero(counts >= 5)
    rng = np.random.default_rng(seed)
    new = np.sort(rng.choice(eligible, size=len(eligible) // 10, replace=False))
    is_new = np.isin(train.item_index, new)
    kept = train.take(~is_new)
    held = train.take(is_new, reindex=False)  # the withheld ratings: who rated which new movie
    rows = []
    new_ids = train.items.ids[new]
    for name, model in models.items():
        kwargs = {"catalog": catalog} if model.uses_catalog else {}
        model.fit(kept, **kwargs)
        columns = model.items_.indices(new_ids, missing="mask")
        users = np.unique(held.user_index)
        user_ids = held.users.ids[users]
        known = model.users_.indices(user_ids, missing="mask")
        ndcgs, aucs = [], []
        ok = known >= 0
        score_rows = model._score_users(known[ok]) if ok.any() else np.zeros((0, 0))
        for position, user in enumerate(users[ok]):
            truth = np.isin(new, held.item_index[held.user_index == user])
            # a model that does not know the new movies gives them all the same (lowest) score
            scores = np.where(columns >= 0, score_rows[position][np.maximum(columns, 0)], 0.0)
            order = np.lexsort((np.arange(len(new)), -scores))
            hits = truth[order][:10]
            ideal = np.sum(1 / np.log2(np.arange(2, min(10, truth.sum()) + 2)))
            ndcgs.append(np.sum(hits / np.log2(np.arange(2, len(hits) + 2))) / ideal)
            ranks = rankdata(scores) - 1  # ties share their mean rank: a blind model scores 0.5
            pos, neg = truth.sum(), (~truth).sum()
            aucs.append((ranks[truth].sum() - pos * (pos - 1) / 2) / (pos * neg) if neg else 1.0)
        row = {"model": name, "new_movies": len(new), "users": int(ok.sum()),
               "known_new_movies": int((columns >= 0).sum()),
               "ndcg@10": float(np.mean(ndcgs)), "auc": float(np.mean(aucs))}
        print(f"    {name:40s} new movies known {row['known_new_movies']}/{len(new)}  "
              f"NDCG@10 {row['ndcg@10']:.4f}  AUC {row['auc']:.3f}  ({row['users']} users)", flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--collaborative", default="biased-mf-als,item-knn-baseline")
    parser.add_argument("--no-tune", action="store_true", help="use the models' defaults")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    results: dict = {}  # type: ignore[type-arg]
    for split_name in args.splits.split(","):
        dataset_name, spec = SPLITS[split_name]
        dataset = load_dataset(dataset_name)
        split = make_split(dataset, spec)
        catalog = dataset.catalog
        print(f"== {split_name}: {split}", flush=True)
        cfs = args.collaborative.split(",")
        content_params = ContentRecommender.default_params()
        hybrid_params = {cf: {"collaborative": cf} for cf in cfs}
        if not args.no_tune:
            valid = user_ratio_split(split.train, 0.8, 7)
            print("  tuning content on the validation carve-out", flush=True)
            content_params = tune_content(valid, catalog)
            print(f"  content: {content_params}")
            for cf in cfs:
                print(f"  tuning hybrid over {cf}", flush=True)
                hybrid_params[cf] = tune_hybrid(valid, catalog, cf, content_params)
                print(f"  hybrid: {hybrid_params[cf]}")
        print("  test figures", flush=True)
        rows = [test_figures("content (defaults)", ContentRecommender(), split, catalog)]
        if content_params != ContentRecommender.default_params():
            rows.append(test_figures("content (tuned)", ContentRecommender(**content_params), split, catalog))
        for cf in cfs:
            rows.append(test_figures(cf, create_model(cf), split, catalog))
            rows.append(test_figures(f"hybrid over {cf} (defaults)", HybridRecommender(cf), split, catalog))
            if not args.no_tune:
                rows.append(test_figures(f"hybrid over {cf} (tuned)", HybridRecommender(**hybrid_params[cf]),
                                         split, catalog))
        print("  cold start: 10% of movies withheld from training", flush=True)
        models = {"content": ContentRecommender(**content_params)}
        for cf in cfs:
            models[cf] = create_model(cf)
            models[f"hybrid over {cf}"] = HybridRecommender(**hybrid_params[cf])
        cold = cold_start(models, split.train, catalog)
        results[split_name] = {"content_params": content_params, "hybrid_params": hybrid_params,
                               "test": rows, "cold_start": cold}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
