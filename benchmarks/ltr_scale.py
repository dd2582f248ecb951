"""ltr's cost on ml-latest-small (issue 13's target: under 60 s fit and 1.5 GB peak RSS on 2 cores, NDCG@10
within 0.005 of the 0.3846 that README records for the model before its members were capped).

    python benchmarks/ltr_scale.py                                    # the defaults, 2 threads
    python benchmarks/ltr_scale.py -p max_items=20000 -p max_items=3000   # one run per setting

Each setting runs in its own subprocess (so its peak RSS is its own), on mlsmall-strat80 (ml-latest-small,
user-ratio:0.8:42), with OMP/MKL/OpenBLAS and torch limited to ``--threads``. Printed per run: fit wall
seconds, fit CPU seconds (user + system, all threads: what the fit costs on a busy machine), evaluation
seconds, peak RSS (after loading the data, after the fit, and at the end: fit and evaluation
together) and NDCG@10 by movierec's protocol.
``-p max_items=20000`` covers ml-latest-small's whole catalog: the members are not capped, as before
issue 13. Set MOVIEREC_MIRROR / MOVIEREC_DATA as for the CLI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(setting: str) -> dict:
    import torch

    from movierec.data.download import load_dataset
    from movierec.data.split import make_split
    from movierec.eval.protocol import evaluate
    from movierec.models.registry import create_model, parse_params

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    split = make_split(load_dataset("ml-latest-small"), "user-ratio:0.8:42")
    params = parse_params("ltr", [part for part in setting.split(",") if part])
    model = create_model("ltr", **params)
    start_mb = _peak_mb()
    wall, cpu = time.perf_counter(), _cpu_seconds()
    model.fit(split.train)
    fit_s, fit_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    fit_mb = _peak_mb()
    wall = time.perf_counter()
    report = evaluate(model, split, k=10)
    return {"setting": setting or "(defaults)", "fit_s": fit_s, "fit_cpu_s": fit_cpu,
            "eval_s": time.perf_counter() - wall, "start_mb": start_mb, "fit_peak_mb": fit_mb,
            "peak_mb": _peak_mb(),
            "ndcg@10": report.metrics["ndcg@10"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--params", action="append", default=None,
                        help="comma-separated name=value ltr hyperparameters; one run per -p")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child)))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "OPENBLAS_NUM_THREADS": str(args.threads)}
    print(f"{'setting':<28} {'fit s':>7} {'fit cpu s':>9} {'eval s':>7} {'data MB':>8} {'fit MB':>7} "
          f"{'peak MB':>8} {'NDCG@10':>8}")
    for setting in args.params or [""]:
        out = subprocess.run([sys.executable, __file__, "--child", setting], env=env, check=True,
                             capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"{row['setting']:<28} {row['fit_s']:>7.1f} {row['fit_cpu_s']:>9.1f} {row['eval_s']:>7.1f} "
              f"{row['start_mb']:>8.0f} {row['fit_peak_mb']:>7.0f} {row['peak_mb']:>8.0f} "
              f"{row['ndcg@10']:>8.4f}", flush=True)
    print(f"threads: {args.threads}; targets: fit < 60 s, peak < 1500 MB, NDCG@10 >= 0.3796 (0.3846 - 0.005)")


if __name__ == "__main__":
    main()
