"""Seconds for `top_k` and the evaluation metrics on random data of a chosen size (best of N runs).

    .venv/bin/python benchmarks/metrics.py --users 10000 --items 10000 --k 10

Scores are uniform float32 (ties essentially absent: the common case); each user gets ~20 relevant
items, ~100 excluded (already rated) items, and each item 1-3 of 20 genres for intra-list diversity.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from movierec.metrics import coverage, intra_list_diversity, novelty, ranking_metrics
from movierec.models.core.topk import top_k


def random_rows(rng: np.random.Generator, n_rows: int, n_cols: int, per_row: int) -> sp.csr_matrix:
    """(n_rows, n_cols) 0/1 CSR with about ``per_row`` random columns per row (repeats merged)."""
    rows = np.repeat(np.arange(n_rows), per_row)
    cols = rng.integers(0, n_cols, size=rows.size)
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), (n_rows, n_cols))
    matrix.data[:] = 1.0
    return matrix


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--relevant", type=int, default=20, help="relevant items per user")
    parser.add_argument("--excluded", type=int, default=100, help="excluded items per user")
    parser.add_argument("--genres", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ties", action="store_true", help="also time top_k's worst case: scores with 3 distinct values"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    scores = rng.random((args.users, args.items), dtype=np.float32)
    relevant = random_rows(rng, args.users, args.items, args.relevant)
    exclude = random_rows(rng, args.users, args.items, args.excluded)
    genres = sp.csr_matrix((rng.random((args.items, args.genres)) < 2 / args.genres).astype(np.float32))
    popularity = rng.random(args.items) ** 4  # skewed, like real item popularity

    t_topk_plain = best_of(args.repeats, lambda: top_k(scores, args.k))
    t_topk = best_of(args.repeats, lambda: top_k(scores, args.k, exclude=exclude))
    topk, _ = top_k(scores, args.k, exclude=exclude)

    # For scale: the selection primitive top_k avoids on the common path.
    t_argpartition = best_of(args.repeats, lambda: np.argpartition(-scores, args.k - 1, axis=1))

    t_ranking = best_of(args.repeats, lambda: ranking_metrics(topk, relevant))
    t_beyond = best_of(
        args.repeats,
        lambda: (
            coverage(topk, args.items),
            novelty(topk, popularity),
            intra_list_diversity(topk, genres),
        ),
    )
    t_ild = best_of(args.repeats, lambda: intra_list_diversity(topk, genres))
    metrics = {name: values.mean() for name, values in ranking_metrics(topk, relevant).items()}

    print(
        f"{args.users} users x {args.items} items float32, k={args.k}, "
        f"~{relevant.nnz / args.users:.1f} relevant and ~{exclude.nnz / args.users:.1f} excluded "
        f"per user, best of {args.repeats}"
    )
    print(f"top_k, no exclusions        {t_topk_plain:8.3f} s")
    print(f"top_k with exclude          {t_topk:8.3f} s")
    print(f"np.argpartition(-scores)    {t_argpartition:8.3f} s   (for scale: no masking, ties or sort)")
    print(f"ranking_metrics             {t_ranking:8.3f} s")
    print(f"coverage+novelty+ILD        {t_beyond:8.3f} s   (ILD alone {t_ild:.3f} s)")
    print(f"all metrics                 {t_ranking + t_beyond:8.3f} s")
    if args.ties:
        tied = rng.integers(0, 3, size=scores.shape).astype(np.float32)
        t_tied = best_of(args.repeats, lambda: top_k(tied, args.k, exclude=exclude))
        print(f"top_k with exclude, tied    {t_tied:8.3f} s   (3 distinct values: heavy ties)")
    print("sanity (random scores): " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
