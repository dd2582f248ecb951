"""Scratch measurements for `BayesianMF`: RMSE and fit seconds on ml-100k u1..u5 and mlsmall-rand90.

Usage: python benchmarks/bayesian_scratch.py [--folds u1,u2] [--small] [--param name=value ...]

One torch thread per job, like the anchors in BENCHMARKS.md (and robust to a busy machine).

Defaults, measured on the shared 2-core box: u1..u5 0.8899, 0.8811, 0.8791, 0.8867, 0.8821 (mean
0.8838), 13-18 s fit per fold; ml-latest-small random:0.9:42 0.8242 in 19 s.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from movierec.data.download import load_dataset
from movierec.data.split import make_split
from movierec.models.bayesian import BayesianMF

MIRROR = "/work/shared/data/movielens"
DATA = "/tmp/mr-bayes"


def run(dataset: str, spec: str, params: dict, trace: bool) -> dict:
    data = load_dataset(dataset, mirror=MIRROR, data_dir=DATA)
    split = make_split(data, spec)
    model = BayesianMF(**params)
    history: list[dict] = []
    start = time.perf_counter()
    model.fit(split.train, split.test if trace else None,
              callback=(lambda event, info: history.append(info)) if trace else None)
    seconds = time.perf_counter() - start
    predicted = model.predict(split.test.user_ids, split.test.item_ids)
    error = predicted - split.test.rating
    known = model.known_pairs(split.test.user_ids, split.test.item_ids)
    result = {"dataset": dataset, "split": spec, "rmse": float(np.sqrt(np.mean(error**2))),
              "mae": float(np.mean(np.abs(error))), "fit_s": seconds, "fallback": int((~known).sum())}
    if trace:
        result["trace"] = [(h["epoch"], round(h["train_rmse"], 4), round(h["valid_rmse"], 4))
                           for h in history[:: max(1, len(history) // 20)]]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folds", default="u1,u2,u3,u4,u5")
    parser.add_argument("--small", action="store_true", help="also ml-latest-small random:0.9:42")
    parser.add_argument("--trace", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--param", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = {}
    for pair in args.param:
        key, _, value = pair.partition("=")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    results = [run("ml-100k", fold, params, args.trace) for fold in args.folds.split(",") if fold]
    for r in results:
        print(json.dumps(r))
    if results:
        print(json.dumps({"mean_rmse": float(np.mean([r["rmse"] for r in results])),
                          "mean_fit_s": float(np.mean([r["fit_s"] for r in results])),
                          "params": params}))
    if args.small:
        print(json.dumps(run("ml-latest-small", "random:0.9:42", params, args.trace)))


if __name__ == "__main__":
    main()
