"""Ranking every known user of an inner-product model: float64 scores against the float32 pass proven
in float64 (`movierec.models.core.dot_topk`), in one process on the same fitted model, as a ratio.

    python benchmarks/two_pass.py                     # 8M synthetic ratings (50k users, 21.6k movies)
    python benchmarks/two_pass.py --ratings 32000000  # the MovieLens-32M shape (200k x 86k)
    python benchmarks/two_pass.py --users 20000       # rank only the first 20k users (quicker)

The model is iALS (64 factors, 2 iterations: the ranking's cost does not depend on how well it fits)
on the MovieLens-32M-shaped synthetic set of `benchmarks/scale.py`. Both paths rank the same users,
top-10 unseen movies, with ``--workers`` threads as `movierec evaluate` and `recommend-all` do; the
script checks that they return the same lists and prints seconds per path, the ratio, and how many
users the float32 pass could not prove (ranked again from float64 rows).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=8_000_000)
    parser.add_argument("--users", type=int, default=0, help="rank only this many users (0: all)")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from movierec.data.synth import synthesize
    from movierec.models.core import dot_topk
    from movierec.models.registry import create_model

    n_users, n_items = max(args.ratings // 160, 100), max(args.ratings // 370, 200)
    train = synthesize(n_users, n_items, args.ratings, seed=42).ratings
    model = create_model("ials", factors=args.factors, epochs=2, random_state=0).fit(train)
    users = np.arange(len(model.users_) if args.users <= 0 else min(args.users, len(model.users_)))
    print(f"{len(train):,} ratings, ranking {len(users):,} users x {len(model.items_):,} movies, "
          f"top-{args.k}, {args.workers} workers, {args.factors} factors")

    redone: list[int] = []
    score_users = model._score_users

    def counting(user_index):  # float64 rows: every user on the float64 path, the redone ones after
        redone.append(len(user_index))
        return score_users(user_index)

    model._score_users = counting  # the two-pass ranker, built on first use, takes this one
    results, seconds = {}, {}
    for name, min_items in (("float64", 10**12), ("two-pass", 0)):
        dot_topk.MIN_ITEMS = min_items
        best = float("inf")
        for _ in range(args.repeats):
            redone.clear()
            start = time.perf_counter()
            results[name] = model.recommend_indices(users, args.k, workers=args.workers)
            best = min(best, time.perf_counter() - start)
        seconds[name] = best
    again = sum(redone)
    same = bool(np.array_equal(results["float64"][0], results["two-pass"][0]))
    gap = float(np.max(np.abs(results["float64"][1] - results["two-pass"][1]), initial=0.0))
    print(f"float64   {seconds['float64']:8.2f} s")
    print(f"two-pass  {seconds['two-pass']:8.2f} s   ratio {seconds['two-pass'] / seconds['float64']:.2f}")
    print(f"same lists: {same}; largest score difference {gap:.1e}; users ranked again from "
          f"float64 rows: {again:,} of {len(users):,}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
