"""Reproduces how popularity's, item-knn's and EASE's defaults were chosen (validation grids), and
prints their test figures at those defaults on the BENCHMARKS.md top-N splits.

    python benchmarks/selection/ranking_items.py --select    # the validation grids behind the defaults
    python benchmarks/selection/ranking_items.py             # test figures, ml100k-strat75, mlsmall-strat80
    python benchmarks/selection/ranking_items.py --models ease --splits ml100k-strat75

Selection never looks at a test part: every candidate is fitted on 80% of each user's ratings in
ml100k-strat75's TRAINING part (`user_ratio_split(train, 0.8, seed)`, seeds 0 and 1) and scored on the
other 20% by the same protocol (NDCG@10, full ranking); the mean over the two seeds picks the defaults
(``--seeds 0,1,2,3`` adds carve-outs, as used to settle EASE's session gap among 20, 30, 45, 60 s).
Test figures then fit each model with its defaults on the whole training part. One BLAS thread (set
before numpy loads), as the anchors were measured. Archives come from $MOVIEREC_MIRROR.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from movierec.data.download import load_dataset  # noqa: E402
from movierec.data.split import make_split, user_ratio_split  # noqa: E402
from movierec.eval.protocol import evaluate  # noqa: E402
from movierec.models.registry import create_model  # noqa: E402

SPLITS = {"ml100k-strat75": ("ml-100k", "user-ratio:0.75:42"),
          "mlsmall-strat80": ("ml-latest-small", "user-ratio:0.8:42")}
MODELS = ["popularity", "item-knn", "ease"]
KEYS = ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10")

# The validation grids (each row: the hyperparameters that differ from the model's defaults).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "popularity": [{}, {"min_rating": 3.0}, {"weighting": "rating"}],
    "item-knn": (
        [{"similarity": "cosine", "neighbors": n, "shrink": s} for n in (20, 50, 100, 200)
         for s in (0.0, 10.0, 50.0)]
        + [{"neighbors": n, "bm25_k1": k1, "bm25_b": b} for n in (50, 100, 200)
           for k1, b in ((100.0, 0.8), (1.2, 0.75), (10.0, 0.5))]
        + [{"neighbors": 200, "bm25_k1": k1, "bm25_b": b}
           for k1, b in ((1.2, 0.9), (1.2, 1.0), (1.2, 0.5), (0.5, 0.75), (3.0, 0.75), (0.25, 0.5),
                         (0.5, 0.25), (0.5, 0.0), (0.5, 0.5))]
        + [{"neighbors": n, "bm25_k1": 0.5, "bm25_b": 0.5} for n in (100, 400, 800, 1600)]
        + [{"neighbors": 200, "shrink": s} for s in (10.0, 50.0)]
        + [{"weighting": "binary"}, {"weighting": "centered"}, {"min_rating": 2.0}]
    ),
    "ease": (
        # no sessions: Steck's EASE, then the EDLAE dropout penalty
        [{"reg": r, "dropout": 0.0, "session_weight": 0.0}
         for r in (200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 1000.0)]
        + [{"reg": r, "dropout": p, "session_weight": 0.0}
           for r in (50.0, 100.0, 200.0, 400.0) for p in (0.1, 0.25, 0.33, 0.5)]
        + [{"reg": r, "dropout": p, "session_weight": 0.0}
           for r, p in ((300.0, 0.67), (200.0, 0.7), (200.0, 0.8), (100.0, 0.8), (300.0, 0.5), (500.0, 0.2),
                        (150.0, 0.75), (100.0, 0.75), (150.0, 0.8), (50.0, 0.85), (150.0, 0.7),
                        (250.0, 0.75), (100.0, 0.85), (100.0, 0.9), (50.0, 0.9), (200.0, 0.9), (20.0, 0.9),
                        (100.0, 0.93), (50.0, 0.95), (200.0, 0.85))]
        # sessions
        + [{"reg": r, "dropout": 0.0, "session_gap": g, "session_weight": w}
           for r, g, w in ((600.0, 60.0, 1.0), (800.0, 60.0, 3.0), (1500.0, 60.0, 10.0), (500.0, 60.0, 3.0),
                           (1200.0, 60.0, 3.0), (1000.0, 60.0, 5.0), (800.0, 120.0, 3.0), (800.0, 300.0, 3.0),
                           (800.0, 30.0, 3.0), (800.0, 60.0, 2.0), (800.0, 10.0, 3.0), (800.0, 30.0, 2.0))]
        + [{"reg": r, "dropout": p, "session_gap": g, "session_weight": w}
           for r, p, g, w in ((200.0, 0.5, 30.0, 2.0), (100.0, 0.8, 30.0, 2.0), (300.0, 0.5, 30.0, 2.0),
                              (100.0, 0.67, 30.0, 2.0), (200.0, 0.5, 30.0, 3.0), (400.0, 0.33, 30.0, 2.0),
                              (200.0, 0.5, 60.0, 2.0), (200.0, 0.5, 30.0, 1.0), (200.0, 0.5, 45.0, 2.0),
                              (200.0, 0.5, 20.0, 2.0))]
        + [{"weighting": "rating"}, {"weighting": "centered"}, {"min_rating": 2.0}]
    ),
}


def _data(name: str) -> Any:
    return load_dataset(name, mirror=os.environ.get("MOVIEREC_MIRROR"))


def _row(model: Any, split: Any) -> dict[str, float]:
    start = time.perf_counter()
    model.fit(split.train)
    fit_s = time.perf_counter() - start
    metrics = evaluate(model, split, k=10).metrics
    return {**{key: metrics[key] for key in KEYS}, "fit_s": fit_s}


def select(models: list[str], seeds: list[int]) -> None:
    dataset, spec = SPLITS["ml100k-strat75"]
    train = make_split(_data(dataset), spec).train
    carve_outs = [user_ratio_split(train, 0.8, seed) for seed in seeds]
    for name in models:
        print(f"\n{name}: validation NDCG@10 (mean of {len(seeds)} carve-outs of ml100k-strat75 train)")
        for params in GRIDS[name]:
            scores = [_row(create_model(name, **params), part)["ndcg@10"] for part in carve_outs]
            print(f"  {sum(scores) / len(scores):.4f}  {params}", flush=True)


def measure(models: list[str], splits: list[str]) -> None:
    print(f"{'split':16} {'model':11} " + " ".join(f"{k:>12}" for k in KEYS) + f" {'fit s':>7}")
    for split_name in splits:
        dataset, spec = SPLITS[split_name]
        split = make_split(_data(dataset), spec)
        for name in models:
            row = _row(create_model(name), split)
            print(f"{split_name:16} {name:11} " + " ".join(f"{row[k]:12.4f}" for k in KEYS)
                  + f" {row['fit_s']:7.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--splits", default=",".join(SPLITS))
    parser.add_argument("--select", action="store_true", help="run the validation grids instead")
    parser.add_argument("--seeds", default="0,1", help="carve-out seeds for --select")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    if args.select:
        select(models, [int(x) for x in args.seeds.split(",")])
    else:
        measure(models, [s for s in args.splits.split(",") if s])


if __name__ == "__main__":
    main()
