"""Train/test splits: pure, seeded, reproducing the BENCHMARKS.md recipes row for row.

Every split works on the rows of a `Ratings` in file order. Train and test come back as `Ratings`
whose vocabularies hold only their own ids (a model trained on ``train`` knows nothing of ``test``),
rows kept in file order.

Specs (the strings the CLI takes): ``u1``..``u5``, ``ua``, ``ub`` (ml-100k canonical folds),
``random:FRAC:SEED``, ``user-ratio:FRAC:SEED``, ``temporal:FRAC``, ``leave-last:N``,
``kfold:K:FOLD:SEED`` (fold numbered from 1).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from movierec._arrays import stable_argsort
from movierec.data.dataset import Dataset, Ratings
from movierec.data.movielens import FOLD_NAMES
from movierec.errors import ConfigError, DataError

__all__ = [
    "Split",
    "canonical_split",
    "kfold_splits",
    "leave_last_split",
    "make_split",
    "pairs_check",
    "random_split",
    "temporal_split",
    "user_ratio_split",
]


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split and the recipe that made it (a spec string such as ``random:0.9:42``)."""

    train: Ratings
    test: Ratings
    recipe: str

    def __repr__(self) -> str:
        return f"Split({self.recipe}, train={len(self.train):,}, test={len(self.test):,})"


def pairs_check(ratings: Ratings) -> str:
    """The BENCHMARKS.md check of a split part: SHA-256 of the sorted ``user,item`` lines, 16 hex.

    Pairs sort by raw id (numerically for integer ids).
    """
    users, items = ratings.user_ids, ratings.item_ids
    order = np.lexsort((items, users))
    text = "".join(f"{u},{i}\n" for u, i in zip(users[order], items[order], strict=True))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_frac(frac: float) -> float:
    frac = float(frac)
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"frac must be a fraction strictly between 0 and 1, got {frac}")
    return frac


def _from_test_mask(ratings: Ratings, test: np.ndarray, recipe: str) -> Split:
    if not test.any() or test.all():
        raise DataError(f"split {recipe} leaves train or test empty ({len(ratings)} ratings)")
    return Split(train=ratings.take(~test), test=ratings.take(test), recipe=recipe)


def random_split(ratings: Ratings, frac: float = 0.9, seed: int = 42) -> Split:
    """``perm = default_rng(seed).permutation(n)``; rows ``perm[:floor(n*frac)]`` are train."""
    frac = _check_frac(frac)
    n = len(ratings)
    perm = np.random.default_rng(seed).permutation(n)
    test = np.ones(n, dtype=bool)
    test[perm[: math.floor(n * frac)]] = False
    return _from_test_mask(ratings, test, f"random:{frac:g}:{seed}")


def _rows_by_user(ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Row positions grouped by user index (ascending = ascending raw id), file order within a user.

    Returns (order, starts): user u's rows are ``order[starts[u]:starts[u+1]]``.
    """
    order = stable_argsort(ratings.user_index)
    starts = np.concatenate([[0], np.cumsum(ratings.user_counts)])
    return order, starts


def user_ratio_split(ratings: Ratings, frac: float = 0.75, seed: int = 42) -> Split:
    """Per user (ascending raw id, one shared ``default_rng(seed)``): the user's rows in file order
    are reordered by ``rng.permutation(n_u)``; the first ``ceil(n_u*frac)`` are train.
    """
    frac = _check_frac(frac)
    rng = np.random.default_rng(seed)
    order, starts = _rows_by_user(ratings)
    test = np.zeros(len(ratings), dtype=bool)
    # One generator call per user is what the recipe is: the draws must come in this order.
    for user in range(ratings.n_users):
        rows = order[starts[user] : starts[user + 1]]
        n_u = len(rows)
        if n_u == 0:
            continue
        shuffled = rows[rng.permutation(n_u)]
        test[shuffled[math.ceil(n_u * frac) :]] = True
    del order  # 8 bytes a rating, not to be held while train and test are copied out
    return _from_test_mask(ratings, test, f"user-ratio:{frac:g}:{seed}")


def _time_order(ratings: Ratings) -> np.ndarray:
    if ratings.timestamp is None:
        raise DataError("this split needs timestamps, and these ratings have none")
    return stable_argsort(ratings.timestamp)


def temporal_split(ratings: Ratings, frac: float = 0.8) -> Split:
    """Global time cut: the earliest ``floor(n*frac)`` ratings (ties in file order) are train."""
    frac = _check_frac(frac)
    order = _time_order(ratings)
    test = np.zeros(len(ratings), dtype=bool)
    test[order[math.floor(len(ratings) * frac) :]] = True
    return _from_test_mask(ratings, test, f"temporal:{frac:g}")


def leave_last_split(ratings: Ratings, n: int = 1) -> Split:
    """Per user, the latest ``n`` ratings (ties: later in the file is later) are test.

    Users with ``n`` or fewer ratings stay wholly in train, so every test user has history.
    """
    if int(n) != n or n < 1:
        raise ConfigError(f"n must be an int >= 1, got {n}")
    n = int(n)
    by_time = _time_order(ratings)
    # Stable sort by user over time order: each user's rows oldest -> newest.
    order = by_time[stable_argsort(ratings.user_index[by_time])]
    counts = ratings.user_counts
    ends = np.cumsum(counts)
    position = np.arange(len(order)) - np.repeat(ends - counts, counts)
    rank_from_end = np.repeat(counts, counts) - position  # 1 = the user's latest rating
    eligible = np.repeat(counts > n, counts)
    test = np.zeros(len(ratings), dtype=bool)
    test[order[(rank_from_end <= n) & eligible]] = True
    return _from_test_mask(ratings, test, f"leave-last:{n}")


def kfold_splits(ratings: Ratings, k: int = 5, seed: int = 42) -> list[Split]:
    """K folds over a ``default_rng(seed)`` permutation of the rows, ``numpy.array_split`` sizes."""
    if int(k) != k or k < 2:
        raise ConfigError(f"k must be an int >= 2, got {k}")
    perm = np.random.default_rng(seed).permutation(len(ratings))
    splits = []
    for fold, rows in enumerate(np.array_split(perm, int(k)), start=1):
        test = np.zeros(len(ratings), dtype=bool)
        test[rows] = True
        splits.append(_from_test_mask(ratings, test, f"kfold:{k}:{fold}:{seed}"))
    return splits


def canonical_split(dataset: Dataset, fold: str) -> Split:
    """One of ml-100k's shipped folds (``u1``..``u5``, ``ua``, ``ub``).

    Raises:
        ConfigError: if the dataset has no such fold.
    """
    if fold not in dataset.folds:
        have = ", ".join(dataset.folds) or "none"
        raise ConfigError(
            f"dataset {dataset.name} has no canonical fold {fold!r} (it has: {have}); "
            "canonical folds ship with ml-100k"
        )
    return _from_test_mask(dataset.ratings, dataset.folds[fold], fold)


def _number(text: str, kind: type, what: str, spec: str) -> float | int:
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(f"split {spec!r}: {what} must be a {kind.__name__}, got {text!r}") from None


SPEC_HELP = (
    "u1..u5, ua, ub, random:FRAC:SEED, user-ratio:FRAC:SEED, temporal:FRAC, leave-last:N, "
    "kfold:K:FOLD:SEED"
)


def make_split(dataset: Dataset, spec: str) -> Split:
    """The split a spec string names (see the module docstring).

    Raises:
        ConfigError: on a malformed spec or one the dataset cannot serve.
    """
    spec = spec.strip()
    if spec in FOLD_NAMES:
        return canonical_split(dataset, spec)
    kind, *args = spec.split(":")
    ratings = dataset.ratings
    defaults = {"random": ["0.9", "42"], "user-ratio": ["0.75", "42"], "temporal": ["0.8"],
                "leave-last": ["1"], "kfold": ["5", "1", "42"]}
    if kind not in defaults or len(args) > len(defaults[kind]):
        raise ConfigError(f"unknown split {spec!r}; expected one of {SPEC_HELP}")
    args = args + defaults[kind][len(args) :]
    if kind == "random":
        return random_split(ratings, _number(args[0], float, "FRAC", spec),
                            _number(args[1], int, "SEED", spec))
    if kind == "user-ratio":
        return user_ratio_split(ratings, _number(args[0], float, "FRAC", spec),
                                _number(args[1], int, "SEED", spec))
    if kind == "temporal":
        return temporal_split(ratings, _number(args[0], float, "FRAC", spec))
    if kind == "leave-last":
        return leave_last_split(ratings, _number(args[0], int, "N", spec))
    k = int(_number(args[0], int, "K", spec))
    fold = int(_number(args[1], int, "FOLD", spec))
    if not 1 <= fold <= k:
        raise ConfigError(f"split {spec!r}: FOLD must be between 1 and {k}, got {fold}")
    return kfold_splits(ratings, k, int(_number(args[2], int, "SEED", spec)))[fold - 1]
