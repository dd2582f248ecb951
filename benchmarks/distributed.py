"""One process against two (torch.distributed, gloo on CPUs): seconds, peak RSS of every rank, and
the final metric, for iALS (NDCG@10) and a neural preset (mean-normalized-mf, RMSE) on synthetic
ratings; a GPU section (NCCL) runs where CUDA is present.

    python benchmarks/distributed.py                          # 4M synthetic ratings (70k users, 10k movies)
    python benchmarks/distributed.py --ratings 500000         # smaller, for a busy machine
    python benchmarks/distributed.py --dataset ml-latest-small \
        --models ials,mean-normalized-mf,biased-mf-als,mult-vae
    python benchmarks/distributed.py --threads 2              # torch threads per rank
    python benchmarks/distributed.py --models biased-mf-sgd --param epochs=1

Each run is `movierec evaluate DATA -m MODEL --json` (split random:0.9:42): one process as plain
`python -m movierec`, two as `torchrun --nproc-per-node 2 -m movierec ... --distributed`, every rank
started through this file's ``--as-rank`` entry, which writes the rank's peak resident memory
(``ru_maxrss``) when the command ends, and the training phase's own figures: the RSS when the fit
starts (after loading, splitting and, for iALS and biased-mf-als, sharing out the ratings, which
rank 0 then drops) and the peak over the fit alone (VmHWM, reset by ``/proc/self/clear_refs`` when
the fit starts; 0 where that cannot be written). Seconds: the fit (``fit_s``, rank 0's) and the whole
command (wall, with loading, splitting and the evaluation). Only rank 0 reads the ratings: every
rank trains on its shard (for iALS and biased-mf-als, blocks of users and of movies; for the
data-parallel models, the ratings of a block of users); for iALS and biased-mf-als every rank ranks its
block of users in the evaluation, for the others rank 0 evaluates alone (docs/distributed.md). Each
row is also printed as JSON, the metric with all its digits.

GPU section (only with CUDA): the same runs with NCCL, one rank per GPU; with one GPU it runs the
one-process baseline and a one-rank NCCL launch (two ranks need two GPUs: NCCL refuses two ranks
on one device).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _proc import reset_peak, status_kib  # beside this script

ROOT = Path(__file__).resolve().parents[1]
METRIC = {"ials": "ndcg@10", "mult-vae": "ndcg@10", "bpr": "ndcg@10"}  # the others: rmse


def _as_rank(folder: str, argv: list[str]) -> None:
    """Run `movierec ARGV` and record this process's peak RSS in FOLDER/rank<RANK>.json: over the
    whole run (``ru_maxrss``) and over the training phase alone (the peak is reset when the fit
    starts, after the data is loaded, split and, for the sharded models, shared out and dropped by
    rank 0; VmHWM read when it ends), with the RSS the fit started from."""
    rank = os.environ.get("RANK", "0")
    phase: dict[str, int] = {}

    def record() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        Path(folder, f"rank{rank}.json").write_text(json.dumps({"rank": int(rank), "peak_rss": peak,
                                                                **phase}))

    def measured(fit: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            if "fit_start_rss" in phase:  # a fit inside the measured one
                return fit(*args, **kwargs)
            phase["fit_start_rss"] = (status_kib("VmRSS") or 0) * 1024
            reset = reset_peak()
            try:
                return fit(*args, **kwargs)
            finally:
                phase["fit_peak_rss"] = (status_kib("VmHWM") or 0) * 1024 if reset else 0
        return run

    atexit.register(record)
    import movierec.distributed.sharded as sharded
    from movierec.cli import main
    from movierec.models.core.recommender import Recommender

    sharded.fit_sharded = measured(sharded.fit_sharded)  # type: ignore[method-assign]
    Recommender.fit = measured(Recommender.fit)  # type: ignore[method-assign]
    sys.argv = ["movierec", *argv]
    main()


def _run(procs: int, data: list[str], model: str, threads: int, env: dict[str, str],
         gpu: bool = False, params: list[str] | None = None) -> dict[str, object]:
    folder = tempfile.mkdtemp(prefix="movierec-dist-")
    args = ["--threads", str(threads), "evaluate", *data, "-m", model, "--json"]
    for param in params or []:
        args += ["-p", param]
    entry = [str(Path(__file__).resolve()), "--as-rank", folder, "--"]
    if procs == 1 and not gpu:
        command = [sys.executable, *entry, *args]
    else:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(procs)]
        command = [*torchrun, *entry, *args, "--distributed"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"{model} with {procs} process(es) failed: {tail}")
    report = json.loads(done.stdout[done.stdout.index("{"):])
    ranks = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("rank*.json"))]
    shutil.rmtree(folder, ignore_errors=True)
    metric = METRIC.get(model, "rmse")
    return {"model": model, "procs": procs, "fit_s": report["timings"]["fit_s"], "wall_s": wall,
            "peak_rss_mb": [round(r["peak_rss"] / 2**20) for r in ranks],
            "fit_start_mb": [round(r.get("fit_start_rss", 0) / 2**20) for r in ranks],
            "fit_peak_mb": [round(r.get("fit_peak_rss", 0) / 2**20) for r in ranks],
            "metric": metric, "value": report["metrics"][metric]}


def _print(rows: list[dict[str, object]]) -> None:
    print(f"{'model':20} {'procs':>5} {'fit s':>8} {'wall s':>8} {'peak RSS per rank (MB)':>24} "
          f"{'fit: start RSS (MB)':>20} {'fit: peak RSS (MB)':>20}  metric")
    for row in rows:
        rss, start, fit = (", ".join(map(str, row[key]))  # type: ignore[call-overload]
                           for key in ("peak_rss_mb", "fit_start_mb", "fit_peak_mb"))
        print(f"{row['model']:20} {row['procs']:>5} {row['fit_s']:>8.2f} {row['wall_s']:>8.1f} "
              f"{rss:>24} {start:>20} {fit:>20}  {row['metric']} {row['value']:.12f}")
        print(json.dumps(row))


def main() -> None:
    if "--as-rank" in sys.argv:
        at = sys.argv.index("--as-rank")
        rest = sys.argv[at + 2:]
        _as_rank(sys.argv[at + 1], rest[1:] if rest[:1] == ["--"] else rest)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=int, default=4_000_000)
    parser.add_argument("--dataset", help="a MovieLens name (from $MOVIEREC_MIRROR) instead of "
                        "synthetic ratings")
    parser.add_argument("--models", default="ials,mean-normalized-mf")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU section")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a hyperparameter for every model run (repeatable), e.g. epochs=1")
    options = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(options.threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    work = Path(tempfile.mkdtemp(prefix="movierec-dist-data-"))
    env.setdefault("MOVIEREC_DATA", str(work / "cache"))
    try:
        if options.dataset:
            data = [options.dataset]
            label = options.dataset
        else:
            users = max(100, int(options.ratings * 70_000 / 4_000_000))
            items = max(50, int(options.ratings * 10_000 / 4_000_000))
            subprocess.run([sys.executable, "-m", "movierec", "data", "synth", "--users", str(users),
                            "--items", str(items), "--ratings", str(options.ratings), "--seed", "0",
                            "--out", str(work), "--json"], check=True, env=env, capture_output=True)
            data = [str(work / "ratings.parquet"), "--movies", str(work / "movies.csv")]
            label = f"synthetic: {options.ratings:,} ratings, {users:,} users, {items:,} movies"
        models = [m.strip() for m in options.models.split(",") if m.strip()]
        given = f", params {' '.join(options.param)}" if options.param else ""
        print(f"CPU (gloo), {label}, {options.threads} torch thread(s) per rank, split "
              f"random:0.9:42{given}")
        rows = []
        cpu_env = {**env, "CUDA_VISIBLE_DEVICES": ""}  # both sides on CPUs, even on a GPU machine
        for model in models:
            for procs in (1, 2):
                rows.append(_run(procs, data, model, options.threads, cpu_env,
                                 params=options.param))
        _print(rows)

        import torch

        if options.no_gpu or not torch.cuda.is_available():
            print("GPU (NCCL): skipped (no CUDA here)" if not options.no_gpu else "")
            return
        gpus = torch.cuda.device_count()
        print(f"\nGPU (NCCL), {gpus} GPU(s) ({torch.cuda.get_device_name(0)}), {label}")
        rows = []
        for model in models:
            rows.append(_run(1, data, model, options.threads, env, params=options.param))
            rows.append(_run(min(2, gpus), data, model, options.threads, env, gpu=True,
                             params=options.param))
        _print(rows)
        if gpus < 2:
            print("(one GPU: the second row of each model is a one-rank NCCL launch; two ranks need "
                  "two GPUs)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
