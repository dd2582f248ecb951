"""Each model's fit-memory estimate against the peak it really takes, and the estimate at 32M scale.

For every registered model (or those named), a fresh child process loads ml-latest-small, resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), fits the model with default hyperparameters on
all ratings and reports the peak RSS above the RSS before the fit: what `estimate_fit_bytes` tries to
predict. The table also shows each estimate for an ml-32m-sized set (200,000 users, 87,000 movies,
32 million ratings), the sizes the `--max-memory` check refuses or lets through.

    MOVIEREC_MIRROR=/work/shared/data/movielens python benchmarks/memory.py
    python benchmarks/memory.py --models ease,ials,bpr --dataset ml-100k
    python benchmarks/memory.py --models ials,biased-mf-als --synth 20000,8000,4000000

Linux only (``/proc``). Peak RSS counts every page the fit touches, including the allocator's
slack and torch's own pools; estimates aim within about 2x of it, leaning high.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _proc import reset_peak, status_kib  # beside this script

SCALE_32M = (200_000, 87_000, 32_000_000)


def _status(field: str) -> int:
    """A /proc/self/status figure (VmRSS, VmHWM) in bytes."""
    kib = status_kib(field)
    if kib is None:
        raise RuntimeError(f"no {field} in /proc/self/status")
    return kib * 1024


def _data(dataset_name: str, synth: str | None, data_dir: str):
    if synth:
        from movierec.data.synth import synthesize

        users, items, ratings = (int(x) for x in synth.split(","))
        return synthesize(users, items, ratings, seed=0)
    from movierec.data.download import load_dataset

    return load_dataset(dataset_name, data_dir=data_dir)


def child(name: str, dataset_name: str, synth: str | None, data_dir: str) -> None:
    from movierec.models.registry import create_model

    dataset = _data(dataset_name, synth, data_dir)
    ratings = dataset.ratings
    model = create_model(name)
    sizes = (ratings.n_users, ratings.n_items, len(ratings))
    estimate = model.estimate_fit_bytes(*sizes)
    ratings.csr  # noqa: B018 - built before the mark: the caller's data, not the fit's
    if not reset_peak():  # VmHWM back to the current RSS
        raise OSError("cannot reset the peak RSS (/proc/self/clear_refs)")
    before = _status("VmRSS")
    start = time.perf_counter()
    model.fit(ratings, catalog=dataset.catalog, max_memory=1 << 62)
    seconds = time.perf_counter() - start
    measured = _status("VmHWM") - before
    print(json.dumps({"model": name, "sizes": sizes, "estimate": estimate, "measured": measured,
                      "seconds": seconds, "at_32m": model.estimate_fit_bytes(*SCALE_32M)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated names (default: every registered model)")
    parser.add_argument("--dataset", default="ml-latest-small")
    parser.add_argument("--synth", help="USERS,ITEMS,RATINGS: a synthetic set instead (seed 0)")
    parser.add_argument("--data-dir", help="cache folder (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per model")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="movierec-memory-")
    if args.child:
        child(args.child, args.dataset, args.synth, data_dir)
        return

    from movierec.models.core.memory import format_bytes
    from movierec.models.registry import MODELS

    if not args.synth:
        _data(args.dataset, None, data_dir)  # fetch + cache once, outside the children
    names = args.models.split(",") if args.models else list(MODELS)
    label = f"synthetic {args.synth}" if args.synth else args.dataset
    print(f"{label}: fit on all ratings, default hyperparameters; peak RSS above the RSS "
          f"before the fit (one child process per model)")
    header = f"{'model':<20} {'estimate':>10} {'measured':>10} {'est/meas':>8} {'fit s':>7}   " \
             f"{'estimate at 32M (200k users, 87k movies)':>40}"
    print(header)
    print("-" * len(header))
    for name in names:
        command = [sys.executable, __file__, "--child", name, "--dataset", args.dataset,
                   "--data-dir", data_dir, *(["--synth", args.synth] if args.synth else [])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                                  env=os.environ.copy())
        except subprocess.TimeoutExpired:
            print(f"{name:<20} timed out after {args.timeout:.0f} s")
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"{name:<20} failed: {tail}")
            continue
        row = json.loads(lines[-1])
        ratio = row["estimate"] / max(row["measured"], 1)
        print(f"{name:<20} {format_bytes(row['estimate']):>10} {format_bytes(row['measured']):>10} "
              f"{ratio:>8.2f} {row['seconds']:>7.1f}   {format_bytes(row['at_32m']):>40}",
              flush=True)


if __name__ == "__main__":
    main()
