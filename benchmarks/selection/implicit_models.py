"""Reproduces how ials's and bpr's defaults were chosen (validation grids), and prints their test
figures at those defaults (not named implicit.py: it would shadow the implicit package for scripts
run from this folder).

    python benchmarks/selection/implicit_models.py --tune  # validation grids (ml100k-strat75 train part)
    python benchmarks/selection/implicit_models.py         # test figures, ml100k-strat75, mlsmall-strat80

Test figures: each model at its default hyperparameters, fitted on the split's training part and scored
by `movierec.eval.protocol.evaluate` (k=10), one thread.

Tuning never sees a test part: ml100k-strat75's training part is split again by
``user_ratio_split(train, 0.8, 0)``, models fit on its 80% and are scored (NDCG@10) on its 20%.
The iALS grid is reg x alpha, then single changes around the best pair (factors, epochs, CG steps,
weighting); differences under 0.002 there were taken as ties and the cheaper setting kept (15 epochs:
0.2425, 25: 0.2431).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPLITS = {"ml100k-strat75": ("ml-100k", "user-ratio:0.75:42"),
          "mlsmall-strat80": ("ml-latest-small", "user-ratio:0.8:42")}
GRIDS = {
    "ials": [dict(reg=reg, alpha=alpha) for reg, alpha in itertools.product(
        (15.0, 30.0, 45.0, 60.0, 90.0), (1.0, 2.0, 4.0, 8.0, 16.0))]
    + [dict(reg=0.05, alpha=1.0), dict(reg=60.0, alpha=8.0, factors=32),
       dict(reg=60.0, alpha=8.0, factors=128), dict(reg=60.0, alpha=8.0, epochs=25),
       dict(reg=60.0, alpha=8.0, cg_steps=6), dict(reg=60.0, alpha=8.0, weighting="centered"),
       dict(reg=60.0, alpha=2.0, weighting="rating")],
    "bpr": [dict(learning_rate=0.05, reg=0.01, batch_size=256, epochs=30)]
    + [dict(learning_rate=lr, reg=reg, batch_size=1024, epochs=epochs)
       for lr, reg, epochs in itertools.product((0.02, 0.03, 0.05), (0.02, 0.03), (60, 100))]
    + [dict(learning_rate=0.05, reg=0.03, batch_size=4096, epochs=100)],
}


def _ndcg(model, split) -> float:
    from movierec.eval.protocol import evaluate

    return evaluate(model, split, k=10).metrics["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="run the validation grids instead")
    parser.add_argument("--models", default="ials,bpr")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MOVIEREC_MIRROR", str(ROOT.parent / "shared" / "data" / "movielens"))
    from movierec.data.download import load_dataset
    from movierec.data.split import make_split, user_ratio_split
    from movierec.eval.protocol import evaluate
    from movierec.models.registry import create_model

    models = args.models.split(",")
    if args.tune:
        train = make_split(load_dataset("ml-100k"), "user-ratio:0.75:42").train
        valid = user_ratio_split(train, 0.8, 0)
        for name in models:
            results = []
            for params in GRIDS[name]:
                start = time.perf_counter()
                model = create_model(name, **params).fit(valid.train)
                seconds = time.perf_counter() - start
                results.append((_ndcg(model, valid), params))
                print(f"{name:<5} {params}  valid NDCG@10 {results[-1][0]:.4f}  fit {seconds:.2f} s",
                      flush=True)
            best = max(results, key=lambda r: r[0])
            print(f"{name:<5} best {best[1]}  {best[0]:.4f}\n", flush=True)
        return

    print(f"{'split':<16} {'model':<5} {'NDCG@10':>8} {'P@10':>6} {'R@10':>6} {'MAP@10':>7} {'fit s':>6}")
    for split_name, (dataset, spec) in SPLITS.items():
        split = make_split(load_dataset(dataset), spec)
        for name in models:
            start = time.perf_counter()
            model = create_model(name).fit(split.train)
            seconds = time.perf_counter() - start
            m = evaluate(model, split, k=10).metrics
            print(f"{split_name:<16} {name:<5} {m['ndcg@10']:>8.3f} {m['precision@10']:>6.3f} "
                  f"{m['recall@10']:>6.3f} {m['map@10']:>7.3f} {seconds:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
