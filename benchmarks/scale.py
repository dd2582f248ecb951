"""How cost grows with the number of ratings: time and peak RSS of each phase of the whole pipeline on
synthetic MovieLens-shaped data, from 1M to 32M ratings, and iALS per iteration against `implicit`.

    python benchmarks/scale.py                          # 1M 4M 16M 32M on the CPU, plot to runs/scale.png
    python benchmarks/scale.py --sizes 1M 4M            # smaller
    python benchmarks/scale.py --device cuda            # the same on a GPU
    python benchmarks/scale.py --implicit               # + implicit's ALS per iteration at the largest size

Phases, each timed and its own peak RSS measured (the kernel's high-water mark is reset between
phases through /proc/self/clear_refs, so a phase's peak is its own, on top of what is already held):

    synth        generate the data set and write it as the user's own ratings.parquet + movies.csv
                 (set-up, not part of the pipeline)
    load         `load_dataset(ratings.parquet)`, as `movierec train FILE` reads a user's file
    split        user-ratio:0.8:42 (BENCHMARKS.md's recipe)
    ials-fit     iALS, 64 factors, 10 iterations
    evaluate     full-ranking evaluation at K=10 of every test user
    recommend-all  top-10 unseen movies of every user to a Parquet file, exact (`--ann off`: iALS's
                 two-pass ranker, which stops scoring a user once no further movie can reach the list)
    recommend-all-ann  the same as `movierec recommend-all` runs it by default (``--ann auto``): from
                 20,000 movies up through a faiss index built and calibrated first (timed with it),
                 unless the exact ranker scores at most an eighth of the movies (iALS here: it stays
                 exact); below that, exact again. "ann match" is the share of its (user, movie) rows
                 that the exact file has too (ties at the 10th place may swap either way)
    als-epoch    biased-mf-als, 1 epoch (64 factors)
    neural-epoch dot-bias-sigmoid (the classic preset), 1 epoch

"pipeline" is load + split + ials-fit + evaluate + recommend-all, the issue's end-to-end figure, and
"outside fit" its share spent outside the iALS fit; "with ann" is the same pipeline with
recommend-all-ann in place of recommend-all: what the CLI's defaults cost. Each size runs in a fresh
process; the peak of the pipeline is that process's high-water mark over those phases.

The shapes follow MovieLens 32M (200k users, 87k movies at 32M ratings): users = ratings / 160,
movies = ratings / 370.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import reset_peak, status_kib  # beside this script

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"100k": 100_000, "1M": 1_000_000, "4M": 4_000_000, "16M": 16_000_000, "32M": 32_000_000}
PIPELINE = ("load", "split", "ials-fit", "evaluate", "recommend-all")
PHASES = ("synth", *PIPELINE, "recommend-all-ann", "als-epoch", "neural-epoch")
WITH_ANN = ("load", "split", "ials-fit", "evaluate", "recommend-all-ann")


def shape(n_ratings: int) -> tuple[int, int]:
    """(users, movies) of a MovieLens-32M-shaped data set with ``n_ratings`` ratings."""
    return max(n_ratings // 160, 100), max(n_ratings // 370, 200)


def _rss_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process in MB, from /proc; ru_maxrss where absent."""
    kib = status_kib(field)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if kib is None else kib) / 1024


def _child(size: str, device: str, work: Path, with_implicit: bool) -> dict:
    """Every phase at one size, in this process; returns {phase: {"seconds", "peak_mb"}, ...}."""
    import numpy as np
    import torch

    from movierec.data.download import load_dataset
    from movierec.data.split import make_split
    from movierec.data.synth import synthesize
    from movierec.eval.protocol import evaluate
    from movierec.export import recommend_all
    from movierec.models import create_model

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    results: dict[str, dict] = {}
    state: dict = {}
    process_peak = 0.0

    def phase(name: str, run) -> None:
        nonlocal process_peak
        reset_peak()
        start = time.perf_counter()
        run()
        sync()
        seconds = time.perf_counter() - start
        peak = _rss_mb("VmHWM")
        process_peak = max(process_peak, peak) if name in PIPELINE else process_peak
        results[name] = {"seconds": round(seconds, 3), "peak_mb": round(peak, 1)}
        print(f"  {size:>4} {name:<14} {seconds:8.2f} s {peak:9.0f} MB", file=sys.stderr, flush=True)

    n = SIZES[size]
    users, items = shape(n)

    def synth() -> None:
        from movierec.cli import _write_own_files

        dataset = synthesize(users, items, n, seed=0)
        _write_own_files(dataset, work)
        state["shape"] = (dataset.ratings.n_users, len(dataset.catalog), len(dataset.ratings))

    phase("synth", synth)
    import gc

    gc.collect()
    phase("load", lambda: state.update(data=load_dataset(str(work / "ratings.parquet"))))
    phase("split", lambda: state.update(split=make_split(state.pop("data"), "user-ratio:0.8:42")))
    state["model"] = create_model("ials", factors=64, epochs=10, device=device)
    phase("ials-fit", lambda: state["model"].fit(state["split"].train))
    phase("evaluate", lambda: state.update(report=evaluate(state["model"], state["split"], k=10)))
    phase("recommend-all", lambda: state.update(
        export=recommend_all(state["model"], work / "top10.parquet", 10)))
    pipeline_peak = process_peak

    def with_ann() -> None:
        from movierec.retrieval import attach

        attach(state["model"], ann="auto")
        state.update(export_ann=recommend_all(state["model"], work / "top10-ann.parquet", 10))
        state["model"].retriever = None

    phase("recommend-all-ann", with_ann)
    ann_match = _match(work / "top10-ann.parquet", work / "top10.parquet")
    metrics = state["report"].metrics
    per_iteration = float(np.mean([r["seconds"] for r in state.pop("model").history_]))
    gc.collect()
    als = create_model("biased-mf-als", factors=64, epochs=1, device=device)
    phase("als-epoch", lambda: als.fit(state["split"].train))
    neural = create_model("dot-bias-sigmoid", epochs=1, device=device)
    phase("neural-epoch", lambda: neural.fit(state["split"].train))
    out = {"size": size, "ratings": n, "users": users, "movies": items, "device": device,
           "phases": results, "pipeline_peak_mb": round(pipeline_peak, 1),
           "ials_s_per_iteration": round(per_iteration, 4), "ann_match": round(ann_match, 4),
           "ndcg@10": round(metrics["ndcg@10"], 4), "recall@10": round(metrics["recall@10"], 4)}
    if with_implicit:
        out["implicit_s_per_iteration"] = _implicit_per_iteration(state["split"].train)
        out["movierec_cpu_s_per_iteration"] = _movierec_per_iteration(state["split"].train)
    return out


def _match(path: Path, exact_path: Path) -> float:
    """Share of the (user, movie) rows of the Parquet file ``path`` that ``exact_path`` has too."""
    import pandas as pd

    got = pd.read_parquet(path, columns=["user", "item"])
    want = pd.read_parquet(exact_path, columns=["user", "item"])
    return len(got.merge(want, on=["user", "item"])) / max(len(got), 1)


def _movierec_per_iteration(train) -> float:
    """movierec's iALS seconds per iteration on the CPU at 64 factors and implicit's settings
    (3 CG steps, no session rows), the mean over 3 iterations."""
    import numpy as np

    from movierec.models import create_model

    model = create_model("ials", factors=64, epochs=3, cg_steps=3, session_weight=0.0,
                         device="cpu").fit(train)
    return round(float(np.mean([r["seconds"] for r in model.history_])), 3)


def _implicit_per_iteration(train) -> float | None:
    """implicit's CPU ALS seconds per iteration on the same binary matrix, 64 factors, 3 CG steps,
    both cores; None without the bench extra."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        print("  implicit not installed (pip install -e '.[bench]'): ratio skipped", file=sys.stderr)
        return None
    import numpy as np

    from movierec.models.core.interactions import interaction_matrix

    matrix = interaction_matrix(train.csr)
    model = AlternatingLeastSquares(factors=64, iterations=3, use_cg=True, calculate_training_loss=False,
                                    random_state=0)
    model.cg_steps = 3
    seconds: list[float] = []
    model.fit(matrix, show_progress=False, callback=lambda it, elapsed, loss: seconds.append(elapsed))
    return round(float(np.mean(seconds)), 3)


def _run(size: str, device: str, with_implicit: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="movierec-scale-") as work:
        command = [sys.executable, __file__, "--child", size, "--device", device, "--work", work]
        if with_implicit:
            command.append("--implicit")
        env = {**os.environ, "MOVIEREC_DATA": str(Path(work) / "home")}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        sys.stderr.write(done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{size} failed (exit {done.returncode})")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> str:
    head = f"{'ratings':>8} {'users':>8} {'movies':>7} " + " ".join(f"{p:>14}" for p in PHASES)
    lines = [head]
    for row in rows:
        lines.append(f"{row['size']:>8} {row['users']:>8,} {row['movies']:>7,} " + " ".join(
            f"{row['phases'][p]['seconds']:>7.1f}s {row['phases'][p]['peak_mb'] / 1024:>4.1f}G"
            for p in PHASES))
    lines.append("")
    lines.append(f"{'ratings':>8} {'pipeline':>9} {'peak':>7} {'outside fit':>11} {'with ann':>9} "
                 f"{'outside fit':>11} {'ann match':>9} {'iALS s/it':>9} {'NDCG@10':>8} {'recall@10':>9}")
    for row in rows:
        fit = row["phases"]["ials-fit"]["seconds"]
        total = sum(row["phases"][p]["seconds"] for p in PIPELINE)
        total_ann = sum(row["phases"][p]["seconds"] for p in WITH_ANN)
        lines.append(f"{row['size']:>8} {total:>8.1f}s {row['pipeline_peak_mb'] / 1024:>6.2f}G "
                     f"{1 - fit / total:>11.0%} {total_ann:>8.1f}s {1 - fit / total_ann:>11.0%} "
                     f"{row['ann_match']:>9.1%} {row['ials_s_per_iteration']:>9.3f} "
                     f"{row['ndcg@10']:>8.4f} {row['recall@10']:>9.4f}")
    for row in rows:
        if row.get("implicit_s_per_iteration"):
            ratio = row["movierec_cpu_s_per_iteration"] / row["implicit_s_per_iteration"]
            lines.append(f"\niALS per iteration at {row['size']} (64 factors, 3 CG steps, CPU): movierec "
                         f"{row['movierec_cpu_s_per_iteration']:.2f} s, implicit "
                         f"{row['implicit_s_per_iteration']:.2f} s, ratio {ratio:.2f} "
                         "(below 1: movierec faster)")
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratings = [row["ratings"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for p in PHASES:
        left.loglog(ratings, [row["phases"][p]["seconds"] for row in rows], marker="o", label=p)
        right.loglog(ratings, [row["phases"][p]["peak_mb"] for row in rows], marker="o", label=p)
    # a slope-1 guide through the first ials-fit point: near-linear phases run parallel to it
    first = rows[0]["phases"]["ials-fit"]["seconds"]
    left.loglog(ratings, [first * r / ratings[0] for r in ratings], "k:", label="linear")
    left.set(xlabel="ratings", ylabel="seconds", title=f"time per phase ({rows[0]['device']})")
    right.set(xlabel="ratings", ylabel="peak RSS (MB)", title="peak memory per phase")
    left.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1M", "4M", "16M", "32M"], choices=list(SIZES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the models' device)")
    parser.add_argument("--implicit", action="store_true",
                        help="also time implicit's ALS against movierec's at the largest size")
    parser.add_argument("--plot", type=Path, default=ROOT / "runs" / "scale.png")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.device, args.work, args.implicit)))
        return
    rows = [_run(size, args.device, args.implicit and size == args.sizes[-1]) for size in args.sizes]
    print(_table(rows))
    _plot(rows, args.plot)
    print(f"\nplot: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
