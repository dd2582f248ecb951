"""Reproduces how Mult-VAE's defaults were chosen (validation NDCG@10 on a carve-out), and prints its
test figures on the named splits (BENCHMARKS.md), with fit time, one torch thread.

    python benchmarks/selection/vae.py --valid      # ml100k-strat75 TRAIN carve-out: user-ratio:0.8:0
    python benchmarks/selection/vae.py              # test: ml100k-strat75 and mlsmall-strat80
    python benchmarks/selection/vae.py --valid --param epochs=30 --param hidden=200   # a variant

Validation never touches a test part: the model is fitted on the carve-out's train part and scored on
its held-out part, both cut from the benchmark split's train. Archives come from $MOVIEREC_MIRROR.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from movierec.data.download import load_dataset
from movierec.data.split import make_split, user_ratio_split
from movierec.eval.protocol import evaluate
from movierec.models.ranking.mult_vae import MultVAE
from movierec.models.registry import parse_params

SPLITS = {"ml100k-strat75": ("ml-100k", "user-ratio:0.75:42"),
          "mlsmall-strat80": ("ml-latest-small", "user-ratio:0.8:42")}
KEYS = ("ndcg@10", "precision@10", "recall@10", "map@10", "coverage@10")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid", action="store_true", help="score the validation carve-out")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=list(SPLITS))
    parser.add_argument("--param", action="append", default=[], help="name=value")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = parse_params("mult-vae", args.param) | {"device": "cpu"}
    for name in (["ml100k-strat75"] if args.valid else args.splits):
        archive, spec = SPLITS[name]
        split = make_split(load_dataset(archive), spec)
        if args.valid:
            split = user_ratio_split(split.train, 0.8, 0)
        start = time.perf_counter()
        model = MultVAE(**params).fit(split.train)
        fit_s = time.perf_counter() - start
        report = evaluate(model, split, k=10)
        # fold-in latency: a training user's ratings, as a new user (best of 20)
        mine = split.train.user_index == 0
        items, ratings = split.train.item_index[mine], split.train.rating[mine]
        times = []
        for _ in range(20):
            start = time.perf_counter()
            model._fold_in(items, ratings)
            times.append(time.perf_counter() - start)
        row = {"split": name + (" valid" if args.valid else ""), "params": args.param,
               **{k: round(report.metrics[k], 4) for k in KEYS}, "fit_s": round(fit_s, 2),
               "fold_in_ms": round(1000 * float(np.min(times)), 3)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
