"""iALS seconds per iteration, movierec's over the `implicit` package's (ratio), and fold-in ms.

README records a ratio of 0.31-0.38 (movierec faster) at 64 factors, one thread each.

    python benchmarks/ials_speed.py                 # ml100k-strat75 and mlsmall-strat80, 64 factors
    python benchmarks/ials_speed.py --repeats 9 --iterations 15

Both run in this one process on the same interactions (binary, the split's training part), one thread
each (BLAS and torch limited by threadpoolctl and torch.set_num_threads, the env vars set before any
import), at equal factors and CG steps (implicit's default, 3). An iteration is one pass over items and
users, timed by each system itself (movierec's per-epoch history, implicit's per-iteration callback),
so set-up (interaction matrix, transposes) is left out of both. Seconds per iteration: the mean over a
fit of ``--iterations`` iterations, the best of ``--repeats`` fits per system, the systems alternating
so that a busy machine penalises both alike.
Then the ratio movierec / implicit (below 1: movierec faster), and the fold-in time of a 20-rating user.

Needs the bench extra for implicit: pip install -e '.[bench]'.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"ml100k-strat75": ("ml-100k", "user-ratio:0.75:42"),
          "mlsmall-strat80": ("ml-latest-small", "user-ratio:0.8:42")}


def _movierec_fit(train, factors: int, iterations: int) -> float:
    """Mean seconds per iteration of one fit, from the model's own per-epoch timings."""
    from movierec.models.ranking.ials import ImplicitALS

    # session_weight 0: the same rows as implicit sees (the session pseudo-users are extra data)
    model = ImplicitALS(factors=factors, epochs=iterations, cg_steps=3, session_weight=0.0,
                        device="cpu").fit(train)
    return float(np.mean([record["seconds"] for record in model.history_]))


def _implicit_fit(matrix, factors: int, iterations: int) -> float:
    """Mean seconds per iteration of one fit, from implicit's per-iteration callback."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, iterations=iterations, num_threads=1,
                                    use_cg=True, calculate_training_loss=False, random_state=0)
    model.cg_steps = 3  # its default, an attribute rather than an argument in 0.7
    seconds: list[float] = []
    model.fit(matrix, show_progress=False, callback=lambda it, elapsed, loss: seconds.append(elapsed))
    return float(np.mean(seconds))


def _fold_in_ms(train, factors: int, repeats: int = 200) -> float:
    from movierec.models.ranking.ials import ImplicitALS

    model = ImplicitALS(factors=factors, device="cpu").fit(train)
    rng = np.random.default_rng(0)
    items = rng.choice(train.items.ids, 20, replace=False)
    pairs = list(zip(items.tolist(), rng.choice([3.0, 4.0, 5.0], 20).tolist(), strict=True))
    model.recommend_for_ratings(pairs, k=10)  # the cached item Gram matrix is built once
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        model.recommend_for_ratings(pairs, k=10)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--splits", default=",".join(SPLITS))
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)
    os.environ.setdefault("MOVIEREC_MIRROR", str(ROOT.parent / "shared" / "data" / "movielens"))
    from movierec.data.download import load_dataset
    from movierec.data.split import make_split

    print(f"{'split':<16} {'movierec s/it':>14} {'implicit s/it':>14} {'ratio':>7} {'fold-in ms':>11}")
    for name in args.splits.split(","):
        dataset, spec = SPLITS[name]
        train = make_split(load_dataset(dataset), spec).train
        matrix = train.csr.astype(np.float32)
        matrix.data[:] = 1.0
        _movierec_fit(train, args.factors, 1)  # warm-up: imports, allocator, BLAS
        _implicit_fit(matrix, args.factors, 1)
        ours, theirs = np.inf, np.inf
        for _ in range(args.repeats):
            ours = min(ours, _movierec_fit(train, args.factors, args.iterations))
            theirs = min(theirs, _implicit_fit(matrix, args.factors, args.iterations))
        print(f"{name:<16} {ours:>14.4f} {theirs:>14.4f} {ours / theirs:>7.2f} "
              f"{_fold_in_ms(train, args.factors):>11.2f}", flush=True)


if __name__ == "__main__":
    main()
