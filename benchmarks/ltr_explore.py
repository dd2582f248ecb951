"""Validation-only exploration of extensions to the `ltr` model's linear listwise correction.

    python benchmarks/ltr_explore.py cache      # fit everything once per carve-out, cache under /tmp
    python benchmarks/ltr_explore.py variants   # score every variant from the cache (seconds each)
    python benchmarks/ltr_explore.py variants 7 # one group: 1 activity interactions, 2 rating-value
                                                # features, 3 carve-outs and list weights, 4-7 liked
                                                # levels (4 one level, 5 re-scored members, 6 levels
                                                # 3 / 4 / 5, 7 levels 4 and 5 around the defaults)

The "ltr defaults" row reproduces the model before liked levels (liked_ratings="") exactly; the
model's current default is the "r4 z + r5 z" row.

Only the training part of ml100k-strat75 is used: outer carve-outs ``user_ratio_split(train, 0.8,
seed)`` for seeds 0-4 (benchmarks/target.py), and inside each the `ltr` model's own nested
carve-outs (``default_rng(random_state).integers``, holdout 0.2). Per carve-out the blend is fitted
once; its member z-scores, the model's extra features and candidate new features are cached, so a
variant is only a listwise fit and one scoring of the outer carve-out.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import copy  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from movierec.data.download import load_dataset  # noqa: E402
from movierec.data.split import make_split, user_ratio_split  # noqa: E402
from movierec.eval.protocol import evaluate  # noqa: E402
from movierec.models.blend import Blend  # noqa: E402
from movierec.models.hybrid import zscore_rows  # noqa: E402
from movierec.models.ltr import LearnedBlend, TimeItemFeatures  # noqa: E402
from movierec.models.registry import create_model  # noqa: E402
from movierec.models.topk import top_k  # noqa: E402

torch.set_num_threads(1)
SEEDS = (0, 1, 2, 3, 4)
N_INNER = 5
CACHE = Path("/tmp/ltr3_cache")


def _split() -> Any:
    dataset = load_dataset("ml-100k", mirror=os.environ.get("MOVIEREC_MIRROR"))
    return make_split(dataset, "user-ratio:0.75:42")


def _user_stats(train: Any) -> dict[str, np.ndarray]:
    users = train.user_index.astype(np.int64)
    n = np.bincount(users, minlength=train.n_users).astype(np.float64)
    r = train.rating.astype(np.float64)
    mean = np.bincount(users, r, train.n_users) / np.maximum(n, 1)
    sq = np.bincount(users, r * r, train.n_users) / np.maximum(n, 1)
    return {"logn": np.log1p(n), "rmean": mean, "rsd": np.sqrt(np.maximum(sq - mean * mean, 0.0))}


def _blocks(model: LearnedBlend, train: Any) -> tuple[list[Blend], Any, dict[str, np.ndarray]]:
    """The fitted blends of one carve-out's train part: the model's, one on each user's ratings at
    or above their mean ("hi"), one with min_rating 4 ("r4")."""
    blend = model._new_blend().fit(train)
    stats = _user_stats(train)
    hi_rows = train.rating >= stats["rmean"][train.user_index] - 1e-9
    hi = model._new_blend().fit(train.take(hi_rows, reindex=False))
    r4 = Blend(members=model.members, weights=model.weights, min_rating=4.0,
               random_state=model.random_state).fit(train)
    features = TimeItemFeatures.from_ratings(train, model.time_width)
    r3, r5 = (Blend(members=model.members, weights=model.weights, min_rating=t,
                    random_state=model.random_state).fit(train) for t in (3.0, 5.0))
    return [blend, hi, r4, r3, r5], features, stats


def _parts(model: LearnedBlend, blends: list[Blend], features: Any, block: np.ndarray
           ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(offset, the model's 8 feature blocks, the extra blocks) for users ``block``."""
    offset, z = model._member_z(blends[0], [m._score_users(block) for m in blends[0].members_])
    hi_off, hi_z = model._member_z(blends[1], [m._score_users(block) for m in blends[1].members_])
    r4_off, r4_z = model._member_z(blends[2], [m._score_users(block) for m in blends[2].members_])
    views = []
    for member in blends[0].members_:  # the fitted members, scoring from liked ratings only
        view = copy.copy(member)
        view.min_rating = 4.0
        if member.name == "ials":
            seen = member.seen_
            rows = [view._fold_in(seen[u].indices, seen[u].data) for u in block]
            views.append(zscore_rows(np.stack(rows)))
        else:
            views.append(zscore_rows(view._score_users(block)))
    _r3_off, r3_z = model._member_z(blends[3], [m._score_users(block) for m in blends[3].members_])
    _r5_off, r5_z = model._member_z(blends[4], [m._score_users(block) for m in blends[4].members_])
    extra = [*hi_z, hi_off, *r4_z, r4_off, *views, *r3_z, *r5_z]
    return offset, z + features.dense(block), extra


EXTRA_NAMES = ("hi_ease", "hi_ials", "hi_gfcf", "hi_off", "r4_ease", "r4_ials", "r4_gfcf", "r4_off",
               "v_ease", "v_ials", "v_gfcf", "r3_ease", "r3_ials", "r3_gfcf", "r5_ease", "r5_ials",
               "r5_gfcf")


def _inner(model: LearnedBlend, train: Any, holdout: Any) -> dict[str, Any]:
    blends, features, stats = _blocks(model, train)
    length = min(int(model.candidates), train.n_items)
    users = train.users.indices(holdout.user_ids, missing="mask")
    items = train.items.indices(holdout.item_ids, missing="mask")
    known = (users >= 0) & (items >= 0)
    relevant = sp.csr_matrix((np.ones(int(known.sum()), dtype=bool), (users[known], items[known])),
                             shape=(train.n_users, train.n_items))
    out: dict[str, list] = {"x": [], "e": [], "y": [], "o": [], "top": []}
    for start in range(0, train.n_users, 512):
        block = np.arange(start, min(start + 512, train.n_users))
        offset, parts, extra = _parts(model, blends, features, block)
        top, _ = top_k(offset, length, exclude=blends[0].seen_[block])
        padded = top < 0
        top = np.where(padded, 0, top)
        out["x"].append(np.stack([np.take_along_axis(p, top, axis=1) for p in parts], axis=2))
        out["e"].append(np.stack([np.take_along_axis(p, top, axis=1) for p in extra], axis=2))
        out["y"].append(np.take_along_axis(relevant[block].toarray(), top, axis=1) & ~padded)
        out["o"].append(np.where(padded, -1e30, np.take_along_axis(offset, top, axis=1)))
        out["top"].append(top)
    rec = {k: np.concatenate(v) for k, v in out.items()}
    rec["y"] = rec["y"].astype(np.float64)
    rec.update(stats)
    rec["mean_rating"] = features.mean_rating
    return rec


def _final(model: LearnedBlend, train: Any) -> dict[str, Any]:
    blends, features, stats = _blocks(model, train)
    block = np.arange(train.n_users)
    offset, parts, extra = _parts(model, blends, features, block)
    rec = {"o": offset, "x": np.stack(parts).astype(np.float32), "e": np.stack(extra).astype(np.float32)}
    rec.update(stats)
    rec["mean_rating"] = features.mean_rating
    return rec


def cache() -> None:
    CACHE.mkdir(exist_ok=True)
    train = _split().train
    model = LearnedBlend()
    inner_seeds = np.random.default_rng(model.random_state).integers(0, 2**31 - 1, size=N_INNER)
    assert (inner_seeds[:3] == np.random.default_rng(0).integers(0, 2**31 - 1, size=3)).all()
    for seed in SEEDS:
        start = time.perf_counter()
        part = user_ratio_split(train, 0.8, seed)
        inner = []
        for s in inner_seeds:
            ip = user_ratio_split(part.train, 1.0 - model.holdout, int(s))
            inner.append(_inner(model, ip.train, ip.test))
        final = _final(model, part.train)
        with open(CACHE / f"seed{seed}.pkl", "wb") as fh:
            pickle.dump({"inner": inner, "final": final}, fh, protocol=5)
        print(f"seed {seed}: cached in {time.perf_counter() - start:.1f} s", flush=True)


# -- variants ----------------------------------------------------------------------------------
def fit_weighted(x: np.ndarray, y: np.ndarray, o: np.ndarray, reg: float, w: np.ndarray | None
                 ) -> np.ndarray:
    keep = y.sum(axis=1) > 0
    theta = torch.zeros(x.shape[2], dtype=torch.float64, requires_grad=True)
    xt = torch.from_numpy(np.ascontiguousarray(x[keep]))
    yt = torch.from_numpy(np.ascontiguousarray(y[keep]))
    if w is not None:
        yt = yt * torch.from_numpy(np.ascontiguousarray(w[keep]))[:, None]
    base = torch.from_numpy(np.ascontiguousarray(o[keep]))
    opt = torch.optim.LBFGS([theta], max_iter=300, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(torch.log_softmax(base + xt @ theta, dim=1) * yt).sum() + reg * (theta * theta).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().numpy().copy()


def _std_user(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / (sd if sd > 1e-12 else 1.0)


# A feature function maps (rec, x_std) -> list of extra raw features, each (U, L) for an inner record
# or (U, I) for the final one; ``x_std`` is the 8 base features standardised (list axis last).
FeatFn = Callable[[dict[str, Any], list[np.ndarray], bool], list[np.ndarray]]


def _take_user(v: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.broadcast_to(v[:, None], shape)


def _take_item(rec: dict[str, Any], v: np.ndarray, final: bool) -> np.ndarray:
    return np.broadcast_to(v[None, :], rec["o"].shape) if final else v[rec["top"]]


def run_variant(data: list[dict[str, Any]], feat: FeatFn | None = None, reg: float = 100.0,
                n_inner: int = 3, weight: str | None = None, base_cols: list[int] | None = None
                ) -> list[float]:
    split = _split()
    train = split.train
    out = []
    for seed, d in zip(SEEDS, data, strict=True):
        part = user_ratio_split(train, 0.8, seed)
        cols = list(range(8)) if base_cols is None else base_cols
        inner = d["inner"][:n_inner]
        x_all = np.concatenate([r["x"] for r in inner])
        flat = x_all.reshape(-1, 8)
        mu0, sd0 = flat.mean(axis=0), flat.std(axis=0)
        sd0 = np.where(sd0 > 1e-12, sd0, np.inf)
        feats, labels, offs, weights = [], [], [], []
        for r in inner:
            xs = [(r["x"][:, :, j] - mu0[j]) / sd0[j] for j in range(8)]
            extra = feat(r, xs, False) if feat else []
            feats.append(np.stack([xs[j] for j in cols] + extra, axis=2))
            labels.append(r["y"])
            offs.append(r["o"])
            npos = r["y"].sum(axis=1)
            if weight == "user":
                weights.append(1.0 / np.maximum(npos, 1))
            elif weight == "sqrt":
                weights.append(1.0 / np.sqrt(np.maximum(npos, 1)))
        x = np.concatenate(feats)
        flat = x.reshape(-1, x.shape[2])
        mu, sd = flat.mean(axis=0), flat.std(axis=0)
        sd = np.where(sd > 1e-12, sd, np.inf)
        theta = fit_weighted((x - mu) / sd, np.concatenate(labels), np.concatenate(offs), reg,
                             np.concatenate(weights) if weights else None)
        f = d["final"]
        xs = [(f["x"][j].astype(np.float64) - mu0[j]) / sd0[j] for j in range(8)]
        extra = feat(f, xs, True) if feat else []
        total = np.array(f["o"], dtype=np.float64)
        for t, m, s, p in zip(theta, mu, sd, [xs[j] for j in cols] + extra, strict=True):
            if t and np.isfinite(s):
                total += (t / s) * (p - m)
        holder = create_model("popularity").fit(part.train)
        holder._score_users = lambda users, total=total: total[np.asarray(users)]
        out.append(float(evaluate(holder, part, k=10).metrics["ndcg@10"]))
    return out


def activity(cols: list[int]) -> FeatFn:
    """Each base feature in ``cols`` times the user's standardised log(1 + n_u)."""
    def fn(rec: dict[str, Any], xs: list[np.ndarray], final: bool) -> list[np.ndarray]:
        a = _take_user(_std_user(rec["logn"]), xs[0].shape)
        return [xs[j] * a for j in cols]
    return fn


def combine(*fns: FeatFn) -> FeatFn:
    def fn(rec: dict[str, Any], xs: list[np.ndarray], final: bool) -> list[np.ndarray]:
        return [p for f in fns for p in f(rec, xs, final)]
    return fn


def extras(names: list[str]) -> FeatFn:
    def fn(rec: dict[str, Any], xs: list[np.ndarray], final: bool) -> list[np.ndarray]:
        idx = [EXTRA_NAMES.index(n) for n in names]
        if final:
            return [rec["e"][i].astype(np.float64) for i in idx]
        return [rec["e"][:, :, i] for i in idx]
    return fn


def act_extra(names: list[str]) -> FeatFn:
    """Extra features (raw) times the user's standardised log(1 + n_u)."""
    def fn(rec: dict[str, Any], xs: list[np.ndarray], final: bool) -> list[np.ndarray]:
        a = _take_user(_std_user(rec["logn"]), xs[0].shape)
        return [p * a for p in extras(names)(rec, xs, final)]
    return fn


def user_rating(kind: str) -> FeatFn:
    """The movie's mean rating times the user's rating mean or deviation (standardised over users)."""
    def fn(rec: dict[str, Any], xs: list[np.ndarray], final: bool) -> list[np.ndarray]:
        mr = xs[4]  # standardised mean_rating
        out = []
        if "mean" in kind:
            out.append(mr * _take_user(_std_user(rec["rmean"]), mr.shape))
        if "sd" in kind:
            out.append(mr * _take_user(_std_user(rec["rsd"]), mr.shape))
        if "pop" in kind:
            out.append(xs[3] * _take_user(_std_user(rec["rmean"]), mr.shape))
        return out
    return fn


def load() -> list[dict[str, Any]]:
    data = []
    for seed in SEEDS:
        with open(CACHE / f"seed{seed}.pkl", "rb") as fh:
            data.append(pickle.load(fh))
    return data


def report(label: str, values: list[float], base: list[float] | None) -> None:
    mean = float(np.mean(values))
    if base is None:
        extra = ""
    else:
        diff = np.array(values) - np.array(base)
        extra = f"  d={mean - np.mean(base):+.4f} up {int((diff > 0).sum())}/5"
    print(f"{mean:.4f}  ({' '.join(f'{v:.4f}' for v in values)}){extra}  {label}", flush=True)


def variants(which: str) -> None:
    data = load()
    base = run_variant(data)
    report("ltr defaults (reproduction)", base, None)
    rows: dict[str, dict[str, Any]] = {}
    if which in ("all", "1"):
        rows.update({
            "act x all 8": {"feat": activity(list(range(8)))},
            "act x members(0-2)": {"feat": activity([0, 1, 2])},
            "act x pop,mean": {"feat": activity([3, 4])},
            "act x members,pop,mean": {"feat": activity([0, 1, 2, 3, 4])},
            "act x time(5-7)": {"feat": activity([5, 6, 7])},
            "act x all 8, reg 300": {"feat": activity(list(range(8))), "reg": 300.0},
            "act x all 8, reg 30": {"feat": activity(list(range(8))), "reg": 30.0},
        })
    if which in ("all", "2"):
        rows.update({
            "mr x rmean": {"feat": user_rating("mean")},
            "mr x rmean, rsd": {"feat": user_rating("mean sd")},
            "mr,pop x rmean": {"feat": user_rating("mean pop")},
            "hi z (3)": {"feat": extras(["hi_ease", "hi_ials", "hi_gfcf"])},
            "hi off": {"feat": extras(["hi_off"])},
            "r4 z (3)": {"feat": extras(["r4_ease", "r4_ials", "r4_gfcf"])},
            "r4 off": {"feat": extras(["r4_off"])},
            "hi z + r4 z": {"feat": extras(["hi_ease", "hi_ials", "hi_gfcf", "r4_ease", "r4_ials",
                                            "r4_gfcf"])},
        })
    if which in ("all", "3"):
        rows.update({
            "carve_outs 5": {"n_inner": 5},
            "carve_outs 4": {"n_inner": 4},
            "weight per user (1/npos)": {"weight": "user"},
            "weight 1/sqrt(npos)": {"weight": "sqrt"},
            "reg 30": {"reg": 30.0},
        })
    if which in ("all", "4"):
        r4 = ["r4_ease", "r4_ials", "r4_gfcf"]
        rows.update({
            "r4 z (3)": {"feat": extras(r4)},
            "r4 ease": {"feat": extras(["r4_ease"])},
            "r4 ials": {"feat": extras(["r4_ials"])},
            "r4 gfcf": {"feat": extras(["r4_gfcf"])},
            "r4 ease, ials": {"feat": extras(["r4_ease", "r4_ials"])},
            "hi ease": {"feat": extras(["hi_ease"])},
            "r4 z, reg 30": {"feat": extras(r4), "reg": 30.0},
            "r4 z, reg 300": {"feat": extras(r4), "reg": 300.0},
            "r4 z, reg 1000": {"feat": extras(r4), "reg": 1000.0},
            "r4 z, carve_outs 5": {"feat": extras(r4), "n_inner": 5},
            "r4 z, carve_outs 4": {"feat": extras(r4), "n_inner": 4},
            "r4 z + r4 off": {"feat": extras([*r4, "r4_off"])},
            "r4 z + hi off": {"feat": extras([*r4, "hi_off"])},
            "r4 z + act x pop,mean": {"feat": combine(extras(r4), activity([3, 4]))},
            "r4 z, weight sqrt": {"feat": extras(r4), "weight": "sqrt"},
            "r4 z + act x r4 z": {"feat": combine(extras(r4), act_extra(r4))},
        })
    if which in ("all", "5"):
        v = ["v_ease", "v_ials", "v_gfcf"]
        rows.update({
            "view z (3)": {"feat": extras(v)},
            "view ease": {"feat": extras(["v_ease"])},
            "view ials": {"feat": extras(["v_ials"])},
            "view gfcf": {"feat": extras(["v_gfcf"])},
            "view ease, gfcf": {"feat": extras(["v_ease", "v_gfcf"])},
            "view z, reg 300": {"feat": extras(v), "reg": 300.0},
            "view z, reg 30": {"feat": extras(v), "reg": 30.0},
            "view z, carve_outs 5": {"feat": extras(v), "n_inner": 5},
            "view z + r4 z": {"feat": extras([*v, "r4_ease", "r4_ials", "r4_gfcf"])},
        })
    if which in ("all", "6"):
        r3, r4, r5 = (["r3_ease", "r3_ials", "r3_gfcf"], ["r4_ease", "r4_ials", "r4_gfcf"],
                      ["r5_ease", "r5_ials", "r5_gfcf"])
        rows.update({
            "r3 z (3)": {"feat": extras(r3)},
            "r4 z (3)": {"feat": extras(r4)},
            "r5 z (3)": {"feat": extras(r5)},
            "r4 z + r5 z": {"feat": extras([*r4, *r5])},
            "r3 z + r4 z": {"feat": extras([*r3, *r4])},
            "r4 z, reg 200": {"feat": extras(r4), "reg": 200.0},
            "r4 z, reg 50": {"feat": extras(r4), "reg": 50.0},
        })
    if which in ("all", "7"):
        r3, r4, r5 = (["r3_ease", "r3_ials", "r3_gfcf"], ["r4_ease", "r4_ials", "r4_gfcf"],
                      ["r5_ease", "r5_ials", "r5_gfcf"])
        rows.update({
            "r4 z + r5 z": {"feat": extras([*r4, *r5])},
            "r3 z + r4 z + r5 z": {"feat": extras([*r3, *r4, *r5])},
            "r4 z + r5 z, reg 50": {"feat": extras([*r4, *r5]), "reg": 50.0},
            "r4 z + r5 z, reg 200": {"feat": extras([*r4, *r5]), "reg": 200.0},
            "r4 z + r5 z, reg 400": {"feat": extras([*r4, *r5]), "reg": 400.0},
            "r4 z + r5 z, carve_outs 5": {"feat": extras([*r4, *r5]), "n_inner": 5},
            "r4 z + r5 z, carve_outs 2": {"feat": extras([*r4, *r5]), "n_inner": 2},
            "r4 ease + r5 ease": {"feat": extras(["r4_ease", "r5_ease"])},
            "r4 z + r5 ease": {"feat": extras([*r4, "r5_ease"])},
            "r4 z + r5 z + act x pop,mean": {"feat": combine(extras([*r4, *r5]), activity([3, 4]))},
            "r4 z + r5 z, weight sqrt": {"feat": extras([*r4, *r5]), "weight": "sqrt"},
        })
    for label, kwargs in rows.items():
        start = time.perf_counter()
        values = run_variant(data, **kwargs)
        report(f"{label}  [{time.perf_counter() - start:.0f} s]", values, base)


if __name__ == "__main__":
    if sys.argv[1] == "cache":
        cache()
    else:
        variants(sys.argv[2] if len(sys.argv) > 2 else "all")
