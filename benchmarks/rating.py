"""README's rating table: ml-100k u1..u5 mean RMSE and fit seconds of every rating model beside Surprise.

README records bayesian-mf 0.884 (fit 10 s), biased-mf-als 0.913 (0.6 s); Surprise SVD 0.940, SVD++
0.919 in the same run. Also MAE, peak memory, and the same on ml-latest-small random:0.9:42.

    python benchmarks/rating.py          # all rating models + Surprise, ml100k-u1..u5 and mlsmall-rand90
    python benchmarks/rating.py --models bias,biased-mf-als --splits ml100k
    python benchmarks/rating.py --no-surprise --threads 2

Each system runs in its own subprocess (one thread by default, as the anchors were measured), so its
peak memory is its own. Figures: RMSE, MAE (predictions clipped to the scale), fit seconds, peak RSS;
on ml-100k the mean and spread over u1..u5. Then ratios in the same run: each model's RMSE and fit
time against Surprise's, and the issue's targets checked. For dot-bias-sigmoid the validation binary
cross-entropy on the 10% part is printed too (the Keras recipe's figure).

Needs the bench extra for Surprise: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {
    "ml100k": [("ml-100k", f"u{i}") for i in range(1, 6)],
    "mlsmall": [("ml-latest-small", "random:0.9:42")],
}
SURPRISE = ["surprise:SVD", "surprise:SVDpp", "surprise:KNNBaseline", "surprise:BaselineOnly"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bce(predictions: np.ndarray, truth: np.ndarray, low: float, high: float) -> float:
    p = np.clip((predictions - low) / (high - low), 1e-7, 1 - 1e-7)
    t = (truth - low) / (high - low)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def _surprise_model(name: str):  # -> a surprise.AlgoBase (the package has no type hints)
    import surprise

    if name == "KNNBaseline":
        return surprise.KNNBaseline(sim_options={"name": "pearson_baseline", "user_based": False},
                                    verbose=False)
    if name == "SVD":
        return surprise.SVD(random_state=0)
    if name == "SVDpp":
        return surprise.SVDpp(random_state=0)
    return surprise.BaselineOnly(verbose=False)


def _run_system(system: str, split_names: list[str], data_dir: str) -> list[dict]:
    """Fit and score one system on the named splits (runs inside the child process)."""
    from movierec.data.download import load_dataset
    from movierec.data.split import make_split

    rows = []
    for dataset_name, spec in [pair for key in split_names for pair in SPLITS[key]]:
        dataset = load_dataset(dataset_name, data_dir=data_dir)
        split = make_split(dataset, spec)
        low, high = split.train.scale
        truth = split.test.rating.astype(np.float64)
        if system.startswith("surprise:"):
            import pandas as pd
            import surprise

            frame = split.train.to_frame()[["user", "item", "rating"]]
            reader = surprise.Reader(rating_scale=(low, high))
            trainset = surprise.Dataset.load_from_df(frame, reader).build_full_trainset()
            model = _surprise_model(system.split(":", 1)[1])
            start = time.perf_counter()
            model.fit(trainset)
            fit_s = time.perf_counter() - start
            test = pd.DataFrame({"u": split.test.user_ids, "i": split.test.item_ids})
            start = time.perf_counter()
            predictions = np.array([model.predict(u, i).est for u, i in zip(test["u"], test["i"],
                                                                            strict=True)])
            predict_s = time.perf_counter() - start
        else:
            from movierec.models.registry import create_model

            model = create_model(system)
            start = time.perf_counter()
            model.fit(split.train)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            predictions = model.predict(split.test.user_ids, split.test.item_ids)
            predict_s = time.perf_counter() - start
        predictions = np.clip(predictions, low, high)
        rows.append({
            "system": system, "dataset": dataset_name, "split": spec,
            "rmse": float(np.sqrt(np.mean((predictions - truth) ** 2))),
            "mae": float(np.mean(np.abs(predictions - truth))),
            "bce": _bce(predictions, truth, low, high),
            "fit_s": fit_s, "predict_s": predict_s,
        })
    return rows


def _child(system: str, splits: str, data_dir: str) -> None:
    base = _peak_mb()
    rows = _run_system(system, splits.split(","), data_dir)
    for row in rows:
        row["peak_mb"] = _peak_mb()
        row["base_mb"] = base
    print(json.dumps(rows))


def _measure(system: str, splits: list[str], data_dir: str, threads: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MOVIEREC_BENCH_THREADS": str(threads)}
    result = subprocess.run([sys.executable, __file__, "--child", system, ",".join(splits), data_dir],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        print(f"  {system} failed: {result.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return []
    return json.loads(result.stdout.strip().splitlines()[-1])


def _summary(rows: list[dict], dataset: str) -> dict | None:
    chosen = [r for r in rows if r["dataset"] == dataset]
    if not chosen:
        return None
    rmse = np.array([r["rmse"] for r in chosen])
    return {"rmse": rmse.mean(), "rmse_sd": rmse.std(ddof=1) if len(rmse) > 1 else 0.0,
            "mae": np.mean([r["mae"] for r in chosen]), "fit_s": np.mean([r["fit_s"] for r in chosen]),
            "bce": np.mean([r["bce"] for r in chosen]), "peak_mb": max(r["peak_mb"] for r in chosen),
            "folds": len(chosen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--models", default=None, help="comma-separated registry names (default: all "
                        "rating models)")
    parser.add_argument("--splits", default="ml100k,mlsmall", help="ml100k and/or mlsmall")
    parser.add_argument("--no-surprise", action="store_true", help="skip the Surprise runs")
    parser.add_argument("--threads", type=int, default=1, help="threads per system (anchors: 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write every row to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("MOVIEREC_BENCH_THREADS", "1")))
        _child(*args.child)
        return

    from movierec.data.download import load_dataset
    from movierec.models.registry import MODELS

    os.environ.setdefault("MOVIEREC_MIRROR", str(ROOT.parent / "shared" / "data" / "movielens"))
    data_dir = os.environ.get("MOVIEREC_BENCH_DATA", "/tmp/movierec-bench-data")
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for key in splits:
        for dataset_name, _ in SPLITS[key][:1]:
            load_dataset(dataset_name, data_dir=data_dir)  # fetch + cache once, outside the timings
    ours = ([m.strip() for m in args.models.split(",")] if args.models else
            [name for name, cls in sorted(MODELS.items()) if cls.predicts_ratings])
    systems = ours + ([] if args.no_surprise else SURPRISE)
    rows: list[dict] = []
    for system in systems:
        started = time.perf_counter()
        measured = _measure(system, splits, data_dir, args.threads)
        rows += measured
        print(f"  ran {system} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))

    print(f"\nthreads per system: {args.threads}")
    header = f"{'system':<24}{'dataset':<17}{'RMSE':>8}{'± sd':>7}{'MAE':>8}{'fit s':>9}{'peak MB':>9}"
    print(header)
    print("-" * len(header))
    summaries: dict[tuple[str, str], dict] = {}
    for dataset in ("ml-100k", "ml-latest-small"):
        for system in systems:
            s = _summary([r for r in rows if r["system"] == system], dataset)
            if s is None:
                continue
            summaries[(system, dataset)] = s
            print(f"{system:<24}{dataset:<17}{s['rmse']:>8.4f}{s['rmse_sd']:>7.4f}{s['mae']:>8.4f}"
                  f"{s['fit_s']:>9.3f}{s['peak_mb']:>9.0f}")
    for dataset in ("ml-100k", "ml-latest-small"):
        peers = {k[0]: v for k, v in summaries.items() if k[1] == dataset and k[0] in SURPRISE}
        mine = {k[0]: v for k, v in summaries.items() if k[1] == dataset and k[0] not in SURPRISE}
        if not peers or not mine:
            continue
        best_peer = min(peers, key=lambda p: peers[p]["rmse"])
        svd = peers.get("surprise:SVD")
        print(f"\nratios on {dataset} (same run): RMSE vs best Surprise ({best_peer}, "
              f"{peers[best_peer]['rmse']:.4f}); fit time vs Surprise SVD "
              f"({svd['fit_s']:.3f} s)" if svd else "")
        for system, s in sorted(mine.items(), key=lambda kv: kv[1]["rmse"]):
            time_ratio = s["fit_s"] / svd["fit_s"] if svd else math.nan
            print(f"  {system:<22} RMSE x{s['rmse'] / peers[best_peer]['rmse']:.3f}   "
                  f"fit time x{time_ratio:.2f}")
    _targets(summaries)


def _targets(summaries: dict[tuple[str, str], dict]) -> None:
    print("\ntargets (BENCHMARKS.md):")
    ml100k = {k[0]: v for k, v in summaries.items() if k[1] == "ml-100k" and not k[0].startswith("surprise")}
    if ml100k:
        best = min(ml100k, key=lambda m: ml100k[m]["rmse"])
        rmse = ml100k[best]["rmse"]
        print(f"  ml-100k u1..u5 best mean RMSE <= 0.895: {best} {rmse:.4f} "
              f"{'MET' if rmse <= 0.895 else 'not met'}")
        svd = summaries.get(("surprise:SVD", "ml-100k"))
        for name in ("biased-mf-als", "biased-mf-sgd"):
            if name in ml100k and svd:
                s = ml100k[name]
                ok = s["rmse"] < 0.915 and s["fit_s"] < svd["fit_s"]
                print(f"  fast biased MF < 0.915 and faster than Surprise SVD: {name} {s['rmse']:.4f} "
                      f"in {s['fit_s']:.3f} s vs {svd['fit_s']:.3f} s {'MET' if ok else 'not met'}")
    dbs = summaries.get(("dot-bias-sigmoid", "ml-latest-small"))
    if dbs:
        ok = dbs["bce"] <= 0.598 and dbs["rmse"] <= 0.847 and dbs["fit_s"] <= 30.5 / 5
        print(f"  dot-bias-sigmoid mlsmall-rand90: val BCE {dbs['bce']:.4f} (<= 0.598), RMSE "
              f"{dbs['rmse']:.4f} (<= 0.847), fit {dbs['fit_s']:.2f} s (<= 6.1 s) "
              f"{'MET' if ok else 'not met'}")


if __name__ == "__main__":
    main()
