"""Reproduces how the blend's and ltr's defaults were chosen: validation NDCG@10 of every candidate
member, blend and ltr row on five carve-outs of ml100k-strat75's training part.

    python benchmarks/selection/blend_ltr.py

Selection uses only the training part of ml100k-strat75: carve-outs
``user_ratio_split(train, 0.8, seed)`` for seeds 0-4 (each user's training ratings split 80/20),
scored with the BENCHMARKS.md protocol (`movierec.eval.protocol.evaluate`, k=10). Each candidate
member is fitted once per carve-out at its registry defaults or the listed variants (the GF-CF and
session rows also chose GF-CF's and iALS's own defaults); a blend is scored from the members' per-user
z-scores exactly as `movierec.models.blend.Blend` combines them; the `ltr` rows are fitted end to end.
Validation NDCG@10 is lower than test NDCG@10 (a carve-out holds about 15% of a user's ratings as
relevant, the test 25%), so compare validation figures with each other only.

docs/experiments.md records the rounds this grid served, their figures, and the one test measurement
of each chosen configuration; benchmarks/target.py prints the test figures of the defaults.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from movierec.data.download import load_dataset  # noqa: E402
from movierec.data.split import make_split, user_ratio_split  # noqa: E402
from movierec.eval.protocol import evaluate  # noqa: E402
from movierec.models.combine.rows import zscore_rows  # noqa: E402
from movierec.models.registry import create_model  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)
# Candidate members: label -> (registry name, hyperparameters). "sN": session_weight N (sessions cut
# at 30 s gaps); rows without it have sessions off, as every member had before they existed.
_OFF = {"session_weight": 0.0}
MEMBERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ease": ("ease", {}),  # EASE's own session term (weight 2) is on at its defaults
    "ials": ("ials", _OFF),
    "gf-cf": ("gf-cf", _OFF),  # factors 64, ideal_weight 0.3
    "gf-cf linear": ("gf-cf", {"ideal_weight": 0.0, **_OFF}),
    "gf-cf 64/1.0": ("gf-cf", {"factors": 64, "ideal_weight": 1.0, **_OFF}),
    "gf-cf 128/0.3": ("gf-cf", {"factors": 128, "ideal_weight": 0.3, **_OFF}),
    "gf-cf 128/1.0": ("gf-cf", {"factors": 128, "ideal_weight": 1.0, **_OFF}),
    "gf-cf 256/0.3": ("gf-cf", {"factors": 256, "ideal_weight": 0.3, **_OFF}),
    "item-knn": ("item-knn", {}),
    **{f"ials s{w:g}": ("ials", {"session_weight": w}) for w in (0.1, 0.2, 0.3, 0.4)},
    **{f"gf-cf s{w:g}": ("gf-cf", {"session_weight": w}) for w in (0.15, 0.3, 0.6)},
    **{f"gf-cf 64/1.0 s{w:g}": ("gf-cf", {"ideal_weight": 1.0, "session_weight": w})
       for w in (0.15, 0.3, 0.6)},
}
# Blends: member label -> weight.
BLENDS: list[dict[str, float]] = [
    {"ease": 0.8, "ials": 0.2}, {"ease": 0.6, "ials": 0.4}, {"ease": 0.5, "ials": 0.5},
    {"ease": 0.4, "ials": 0.6},
    {"ease": 0.8, "gf-cf 64/1.0": 0.2}, {"ease": 0.6, "gf-cf 64/1.0": 0.4},
    {"ease": 0.8, "item-knn": 0.2},
    {"ease": 0.5, "ials": 0.3, "gf-cf 64/1.0": 0.2}, {"ease": 0.4, "ials": 0.4, "gf-cf 64/1.0": 0.2},
    {"ease": 0.3, "ials": 0.4, "gf-cf 64/1.0": 0.3}, {"ease": 0.3, "ials": 0.5, "gf-cf 64/1.0": 0.2},
    {"ease": 0.4, "ials": 0.4, "gf-cf": 0.2}, {"ease": 0.3, "ials": 0.4, "gf-cf": 0.3},
    {"ease": 0.4, "ials": 0.4, "gf-cf 128/0.3": 0.2},
    {"ease": 0.4, "ials": 0.3, "gf-cf": 0.2, "item-knn": 0.1},
    # sessions in iALS and GF-CF (later): every pairing of their session weights, seven weight rows
    *({"ease": e, ials: i, gf: g}
      for ials in ("ials", "ials s0.2", "ials s0.3", "ials s0.4")
      for gf in ("gf-cf 64/1.0", "gf-cf 64/1.0 s0.15", "gf-cf 64/1.0 s0.3", "gf-cf 64/1.0 s0.6")
      for e, i, g in ((0.4, 0.4, 0.2), (0.3, 0.4, 0.3), (0.3, 0.5, 0.2), (0.5, 0.3, 0.2),
                      (0.4, 0.3, 0.3), (0.2, 0.4, 0.4), (0.3, 0.3, 0.4))),
]
BLENDS = [dict(items) for items in dict.fromkeys(tuple(b.items()) for b in BLENDS)]  # drop repeats
# The learned blend (`ltr`, third round), fitted end to end per carve-out: its defaults and the rows
# around them. reg 12 is where the first grid (an averaged loss at 1e-3) ran.
LTR_ROWS: list[dict[str, Any]] = [
    {}, {"reg": 12.0}, {"reg": 360.0}, {"reg": 1200.0}, {"reg": 12.0, "carve_outs": 5},
    {"reg": 12.0, "candidates": 100}, {"reg": 12.0, "holdout": 0.25}, {"reg": 12.0, "time_width": 7.0},
    # liked levels (fourth round): without them (the third round's model), one level
    {"liked_ratings": ""}, {"liked_ratings": "4"},
]


def _split() -> Any:
    dataset = load_dataset("ml-100k", mirror=os.environ.get("MOVIEREC_MIRROR"))
    return make_split(dataset, "user-ratio:0.75:42")


def _ndcg(model: Any, split: Any, scores: np.ndarray | None = None) -> float:
    """NDCG@10 of ``model`` on ``split``; with ``scores`` (n_users, n_items), of those scores
    instead (the model then only supplies vocabularies and seen movies)."""
    if scores is None:
        return float(evaluate(model, split, k=10).metrics["ndcg@10"])
    model._score_users = lambda users: scores[np.asarray(users)]  # instance attribute, this call only
    try:
        return float(evaluate(model, split, k=10).metrics["ndcg@10"])
    finally:
        del model._score_users


def select() -> None:
    train = _split().train
    carve_outs = [user_ratio_split(train, 0.8, seed) for seed in SEEDS]
    rows: dict[str, list[float]] = {}
    for part in carve_outs:
        zscores, holder = {}, None
        for label, (name, params) in MEMBERS.items():
            model = create_model(name, **params).fit(part.train)
            scores = model._score_users(np.arange(len(model.users_)))
            rows.setdefault(label, []).append(_ndcg(model, part, scores))
            zscores[label] = zscore_rows(scores)
            holder = model
        for weights in BLENDS:
            blended = sum(w * zscores[label] for label, w in weights.items())
            label = " + ".join(f"{w:g} {m}" for m, w in weights.items())
            rows.setdefault(label, []).append(_ndcg(holder, part, blended))
        # the registered model at its defaults, fitted end to end (must match its grid row)
        rows.setdefault("blend (registered, defaults)", []).append(_ndcg(create_model("blend").fit(
            part.train), part))
        for params in LTR_ROWS:
            shown = (f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:g}" for k, v in params.items())
            label = f"ltr {' '.join(shown) or '(defaults)'}"
            rows.setdefault(label, []).append(_ndcg(create_model("ltr", **params).fit(part.train), part))
    print(f"validation NDCG@10, carve-outs of ml100k-strat75 train, seeds {SEEDS}")
    for label, values in rows.items():
        print(f"  {np.mean(values):.4f}  ({' '.join(f'{v:.4f}' for v in values)})  {label}", flush=True)


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter).parse_args()
    select()


if __name__ == "__main__":
    main()
