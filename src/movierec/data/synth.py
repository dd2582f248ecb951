"""MovieLens-shaped synthetic data at any scale, and writers for every official archive layout.

`synthesize` makes a `Dataset` that looks like MovieLens where it matters to recommenders and to the
code around them:

- users: long-tailed activity (a floor of ``min(20, n_ratings // n_users)`` ratings each, the rest
  lognormal), demographics like ml-100k's;
- movies: Zipf-like popularity, one primary genre (MovieLens genre shares) plus up to two more,
  invented titles such as ``"Silent River, The"`` (1987) with commas, quotes and accents in some;
- which movies a user rates: a mix of "mainstream" (global popularity) and three favourite genres,
  so implicit feedback carries taste, not only popularity;
- ratings: ``biases + user·movie factors + noise``, where factors are built from genre centroids
  (genres carry signal), quantised by quantile thresholds to the MovieLens rating histogram
  (mean about 3.5, 4 the most common);
- timestamps: per-user activity windows spread over 1996-2023, bursty within a user;
- rows shuffled, like ml-100k's ``u.data``.

`write_archive` writes a `Dataset` as a zip in the official layout of any registry variant, so the
parsers can be tested on every format without downloading anything.

Everything is vectorised numpy over users, movies and rows; 32M ratings take well under a minute.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from movierec.data.dataset import Catalog, Dataset, Ratings, Users, Vocabulary, split_title_year
from movierec.data.registry import Variant, get_variant
from movierec.errors import ConfigError

__all__ = ["GENRES", "GENRES_100K", "OCCUPATIONS_100K", "canonical_folds", "synthesize",
           "write_archive"]

#: The genres synthetic movies get (modern MovieLens names; ml-100k and ml-1m say "Children's").
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)
# Share of movies whose main genre this is, roughly MovieLens' (Drama and Comedy dominate).
_GENRE_SHARE = np.array([
    0.09, 0.04, 0.025, 0.025, 0.21, 0.04, 0.05, 0.27, 0.015, 0.005, 0.06, 0.01, 0.015, 0.04, 0.025,
    0.055, 0.01, 0.01,
])
_GENRE_SHARE /= _GENRE_SHARE.sum()

#: ml-100k's ``u.genre``, in flag order.
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)

#: ml-100k's ``u.occupation``.
OCCUPATIONS_100K = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)
# Users per occupation in ml-100k, used as sampling weights.
_OCCUPATION_WEIGHT = np.array(
    [79, 28, 7, 95, 67, 18, 32, 16, 7, 12, 51, 26, 9, 105, 66, 14, 12, 31, 196, 27, 45], float
)
# ml-100k occupation -> ml-1m users.dat occupation code (its README's list of 21).
_ML1M_OCCUPATION_CODE = {
    "other": 0, "educator": 1, "librarian": 1, "artist": 2, "entertainment": 2,
    "administrator": 3, "student": 4, "doctor": 6, "healthcare": 6, "executive": 7,
    "homemaker": 9, "lawyer": 11, "programmer": 12, "retired": 13, "marketing": 14,
    "salesman": 14, "scientist": 15, "engineer": 17, "technician": 17, "none": 19, "writer": 20,
}

# Rating histograms targeted by the quantiser: ml-latest-small (half stars) and ml-100k (stars).
_LEVELS = {
    "0.5-5": (
        np.arange(1, 11, dtype=np.float32) / 2,
        np.array([0.0136, 0.0279, 0.0178, 0.0749, 0.0550, 0.1988, 0.1303, 0.2660, 0.0848, 0.1310]),
    ),
    "1-5": (
        np.arange(1, 6, dtype=np.float32),
        np.array([0.0611, 0.1137, 0.2715, 0.3417, 0.2120]),
    ),
}

_FIRST_TIME = int(datetime(1996, 1, 29, tzinfo=UTC).timestamp())
_LAST_TIME = int(datetime(2023, 10, 12, tzinfo=UTC).timestamp())

_MIN_PER_USER = 20  # MovieLens keeps users with at least 20 ratings
_FAVOURITES = 3  # favourite genres per user
_ZIPF, _HEAD, _MIN_HEAD = 1.4, 30.0, 3.0  # weight (rank + head)^-_ZIPF: Zipf, flattened head
_MOST_PER_USER = 0.5  # no user rates more than half the movies, where the sizes allow
_ROUNDS = 3  # weighted redraw rounds for repeated pairs before the exact, popular-first fill
_CHUNK = 1 << 21  # rows per chunk where per-row temporaries would be large

# score = user bias + movie bias + factor term + noise; standard deviations in score units
_USER_BIAS, _ITEM_BIAS, _POPULAR_BONUS, _FACTOR_TERM, _NOISE = 0.4, 0.4, 0.15, 0.5, 0.8


# -- synthesis ---------------------------------------------------------------------------------


def synthesize(
    n_users: int,
    n_items: int,
    n_ratings: int,
    *,
    scale: str = "0.5-5",
    seed: int | np.random.Generator = 0,
    factors: int = 8,
    with_timestamps: bool = True,
    name: str = "synthetic",
) -> Dataset:
    """A MovieLens-shaped dataset of exactly ``n_ratings`` distinct (user, movie) ratings.

    Raw ids are ``1..n_users`` and ``1..n_items`` (int64); both vocabularies hold every id, so a
    user or movie may have no ratings when ``n_ratings`` is small. Every user gets at least
    ``min(20, n_ratings // n_users)`` ratings. Rows come shuffled.

    Args:
        n_users, n_items, n_ratings: sizes; ``n_ratings <= n_users * n_items``.
        scale: ``"0.5-5"`` (half stars, like ml-10m and later) or ``"1-5"`` (whole stars, like
            ml-100k and ml-1m).
        seed: an int or a Generator; the same int gives the same dataset. Ratings, timestamps and
            the catalog come from independent streams, so ``with_timestamps`` changes nothing else.
        factors: latent dimensions behind the ratings.
        with_timestamps: whether ratings carry Unix-second timestamps.
        name: the dataset's name.

    Returns:
        A `Dataset` with ratings, a catalog (item, title, year, genres, imdb_id "tt0000000",
        tmdb_id) and users (user, age, gender, occupation, zip); no canonical folds.

    Raises:
        ConfigError: if a size or ``factors`` is not an int >= 1, ``n_ratings`` exceeds
            ``n_users * n_items``, or ``scale`` is unknown.
    """
    n_users = _positive_int("n_users", n_users)
    n_items = _positive_int("n_items", n_items)
    n_ratings = _positive_int("n_ratings", n_ratings)
    factors = _positive_int("factors", factors)
    if n_ratings > n_users * n_items:
        raise ConfigError(
            f"n_ratings must be <= n_users * n_items = {n_users * n_items:,} (each pair rated at "
            f"most once), got {n_ratings:,}"
        )
    if scale not in _LEVELS:
        raise ConfigError(f"scale must be one of {', '.join(map(repr, _LEVELS))}, got {scale!r}")
    streams = np.random.default_rng(seed).spawn(8)
    r_items, r_counts, r_tastes, r_pairs, r_order, r_scores, r_times, r_people = streams

    movies = _Movies.draw(n_items, r_items)
    counts = _user_counts(n_users, n_items, n_ratings, r_counts)
    tastes = _Tastes.draw(n_users, movies, r_tastes)
    codes = _draw_pairs(counts, movies, tastes, r_pairs)
    r_order.shuffle(codes)
    user_index = (codes // n_items).astype(np.int32)
    codes -= user_index * np.int64(n_items)
    item_index = np.take(movies.by_rank.astype(np.int32), codes)
    del codes
    rating = _ratings(user_index, item_index, movies, tastes, factors, scale, r_scores)
    timestamp = _timestamps(user_index, n_users, r_times) if with_timestamps else None

    ratings = Ratings(
        users=Vocabulary(np.arange(1, n_users + 1, dtype=np.int64), "user"),
        items=Vocabulary(np.arange(1, n_items + 1, dtype=np.int64), "movie"),
        user_index=user_index,
        item_index=item_index,
        rating=rating,
        timestamp=timestamp,
        scale=(float(_LEVELS[scale][0][0]), 5.0),
    )
    return Dataset(
        name=name,
        ratings=ratings,
        catalog=Catalog(movies.frame),
        users=Users(_people(n_users, r_people)),
    )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class _Movies:
    """Movie-side draws: popularity, genres, the sampling segments and the catalog frame.

    Movies are ranked by popularity (0 = most popular); pairs are drawn in rank space and mapped
    to movie indices by ``by_rank`` at the end. Segments ``0..G-1`` hold the ranks of each genre's
    movies (by main genre), ascending; segment ``G`` holds every rank.
    """

    n: int
    primary: np.ndarray  # (n,) main genre index
    extra: np.ndarray  # (n, 2) further genre indices, where use_extra
    use_extra: np.ndarray  # (n, 2) bool
    genre_sizes: np.ndarray  # (G,) movies per main genre
    by_rank: np.ndarray  # (n,) movie index at each popularity rank
    seg_ranks: np.ndarray  # popularity ranks, segment after segment
    seg_len: np.ndarray  # (G + 1,)
    seg_start: np.ndarray  # (G + 1,)
    popularity: np.ndarray  # (n,) standardised log popularity
    frame: pd.DataFrame  # the catalog

    @classmethod
    def draw(cls, n_items: int, rng: np.random.Generator) -> _Movies:
        n_genres = len(GENRES)
        rank = rng.permutation(n_items)  # global popularity rank of each movie (0 = most popular)
        primary = np.searchsorted(np.cumsum(_GENRE_SHARE), rng.random(n_items), side="right")
        primary = np.minimum(primary, n_genres - 1)
        extra = np.searchsorted(np.cumsum(_GENRE_SHARE), rng.random((n_items, 2)), side="right")
        extra = np.minimum(extra, n_genres - 1)
        n_extra = np.searchsorted([0.4, 0.8], rng.random(n_items), side="right")  # 0, 1 or 2
        use = np.arange(2) < n_extra[:, None]
        use[:, 0] &= extra[:, 0] != primary
        use[:, 1] &= (extra[:, 1] != primary) & (extra[:, 1] != extra[:, 0])

        by_genre = np.lexsort((rank, primary))  # movies by (main genre, popularity)
        sizes = np.bincount(primary, minlength=n_genres)
        seg_ranks = np.concatenate([rank[by_genre], np.arange(n_items)]).astype(np.int64)
        seg_len = np.append(sizes, n_items)
        seg_start = np.concatenate([[0], np.cumsum(seg_len)[:-1]])

        popularity = -np.log(rank + _HEAD)
        popularity = (popularity - popularity.mean()) / (popularity.std() or 1.0)
        frame = _catalog_frame(n_items, primary, extra, use, rng)
        return cls(
            n=n_items, primary=primary, extra=extra, use_extra=use, genre_sizes=sizes,
            by_rank=np.argsort(rank), seg_ranks=seg_ranks, seg_len=seg_len, seg_start=seg_start,
            popularity=popularity, frame=frame,
        )

    def sample(self, segment: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One popularity rank per entry of ``segment``, by the segment's Zipf-like weights.

        Rank ``k`` in a segment of ``m`` movies has weight ``(k + h)^-_ZIPF`` with the head
        ``h = _HEAD * m / n`` (at least ``_MIN_HEAD``): a genre's ``k``-th movie is about the
        ``k * n / m``-th overall, so genre and global draws agree on what is popular.
        """
        # inverse of the continuous CDF of (k + head)^-a on [0, length), per segment then row
        power = 1.0 - _ZIPF
        head = np.maximum(_HEAD * self.seg_len / self.n, _MIN_HEAD)
        low = head**power
        width = (self.seg_len + head) ** power - low
        x = rng.random(len(segment), dtype=np.float32)
        x *= np.take(width.astype(np.float32), segment)
        x += np.take(low.astype(np.float32), segment)
        rank = (x ** np.float32(1 / power) - np.take(head.astype(np.float32), segment))
        rank = np.minimum(rank.astype(np.int64), np.take(self.seg_len - 1, segment))
        rank += np.take(self.seg_start, segment)
        return np.take(self.seg_ranks, rank)


class _Tastes:
    """User-side draws: three favourite genres and how mainstream each user is.

    A user's rows come from segment ``G`` (everything, by popularity) with probability
    ``weights[u, 0]`` and from favourite genre ``segments[u, k]`` with ``weights[u, k]``.
    """

    def __init__(self, segments: np.ndarray, weights: np.ndarray) -> None:
        self.segments = segments  # (n_users, 1 + _FAVOURITES) segment ids, mainstream first
        self.weights = weights  # (n_users, 1 + _FAVOURITES) probabilities

    @classmethod
    def draw(cls, n_users: int, movies: _Movies, rng: np.random.Generator) -> _Tastes:
        share = movies.genre_sizes / movies.genre_sizes.sum()  # only genres that have movies
        favourites = np.searchsorted(
            np.cumsum(share), rng.random((n_users, _FAVOURITES)) * 0.999999, side="right"
        )
        mainstream = rng.beta(2.0, 2.0, n_users)
        split = rng.dirichlet(np.ones(_FAVOURITES), n_users)
        weights = np.column_stack([mainstream, split * (1.0 - mainstream)[:, None]])
        weights /= weights.sum(axis=1, keepdims=True)
        segments = np.column_stack([np.full(n_users, len(GENRES)), favourites]).astype(np.int16)
        return cls(segments, weights)


def _user_counts(
    n_users: int, n_items: int, n_ratings: int, rng: np.random.Generator
) -> np.ndarray:
    """Ratings per user (int64): a floor each, the rest lognormal, capped.

    The cap is half the movies, or as many as ``n_ratings`` needs (at most ``n_items``).
    """
    floor = min(_MIN_PER_USER, n_ratings // n_users)
    cap = min(n_items, max(int(_MOST_PER_USER * n_items), -(-n_ratings // n_users)))
    weights = rng.lognormal(0.0, 1.2, n_users)
    room = np.full(n_users, cap - floor, dtype=np.int64)
    return floor + _allocate(n_ratings - floor * n_users, weights, room)


def _allocate(total: int, weights: np.ndarray, room: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``total``, each at most ``room``."""
    alloc = np.zeros(len(weights), dtype=np.int64)
    while total > 0:  # more than one round only when some users hit their room
        free = room - alloc
        w = np.where(free > 0, weights, 0.0)
        share = total * w / w.sum()
        whole = np.floor(share)
        add = np.minimum(whole.astype(np.int64), free)
        left = total - int(add.sum())
        open_ = np.flatnonzero(add < free)
        if left > 0 and len(open_):  # largest remainders get one more each
            k = min(left, len(open_))
            fraction = (share - whole)[open_]
            add[open_[np.argpartition(-fraction, k - 1)[:k]]] += 1
        alloc += add
        total -= int(add.sum())
    return alloc


def _draw_pairs(
    counts: np.ndarray, movies: _Movies, tastes: _Tastes, rng: np.random.Generator
) -> np.ndarray:
    """Distinct pair codes ``user * n_items + rank`` (int64), ``counts[u]`` for user ``u``.

    Draws each user's movies from their taste mix, drops repeated pairs and redraws the shortfall
    a few rounds; what is still missing (heavy users who used up their genres' popular movies)
    comes from the movies each such user has not rated, popular ones first, which always works.
    """
    n_items = movies.n
    users = np.arange(len(counts))
    have = _sorted_unique(_draw_codes(users, counts, movies, tastes, rng))
    short = counts - np.bincount(have // n_items, minlength=len(counts))
    for _ in range(_ROUNDS):
        who = np.flatnonzero(short)
        if not len(who):
            break
        new = _sorted_unique(_draw_codes(who, short[who], movies, tastes, rng))
        new = new[~_contains(have, new)]
        short -= np.bincount(new // n_items, minlength=len(counts))
        have = _merge(have, new)
    who = np.flatnonzero(short)
    if len(who):
        mine = have[_in_users(have, who, n_items)]
        have = _merge(have, _fill(mine, who, short[who], n_items, rng))
    return have


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sorted arrays as one sorted array (timsort merges the two runs in linear time)."""
    b.sort()
    return np.sort(np.concatenate([a, b]), kind="stable")


def _draw_codes(
    users: np.ndarray,
    need: np.ndarray,
    movies: _Movies,
    tastes: _Tastes,
    rng: np.random.Generator,
) -> np.ndarray:
    """``need[j]`` pair codes for each ``users[j]``, possibly repeating; in blocks of users."""
    parts = []
    ends = np.cumsum(need)
    start = 0
    while start < len(users):
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + _CHUNK)) + 1
        stop = min(max(stop, start + 1), len(users))
        block = users[start:stop]
        per_segment = rng.multinomial(need[start:stop], tastes.weights[block])
        flat = per_segment.ravel()
        segment = np.repeat(tastes.segments[block].ravel(), flat)
        row_user = np.repeat(np.repeat(block.astype(np.int64), per_segment.shape[1]), flat)
        parts.append(row_user * movies.n + movies.sample(segment, rng))
        start = stop
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _sorted_unique(codes: np.ndarray) -> np.ndarray:
    # np.unique hashes (numpy >= 2.3) and is ~15x slower than sorting at these sizes
    codes.sort()
    if len(codes) < 2:
        return codes
    keep = np.empty(len(codes), dtype=bool)
    keep[0] = True
    np.not_equal(codes[1:], codes[:-1], out=keep[1:])
    return codes[keep]


def _contains(sorted_codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_codes):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, values), len(sorted_codes) - 1)
    return sorted_codes[at] == values


def _in_users(sorted_codes: np.ndarray, users: np.ndarray, n_items: int) -> np.ndarray:
    """Positions of the codes belonging to ``users`` (sorted), as an index array."""
    starts = np.searchsorted(sorted_codes, users * n_items)
    ends = np.searchsorted(sorted_codes, (users + 1) * n_items)
    return _ranges(starts, ends - starts)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each pair, vectorised."""
    lengths = lengths.astype(np.int64)
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(int(lengths.sum()), dtype=np.int64)


def _fill(
    mine: np.ndarray, users: np.ndarray, need: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """``need[j]`` new codes for ``users[j]`` among the movies they have not rated.

    ``mine`` holds those users' current codes, sorted. Picks distinct positions ``q`` in the
    complement of each user's popularity ranks (skewed toward the front: popular movies first),
    then maps position to rank: with the user's ranks sorted as ``s_0 < s_1 < ...``, the
    complement's ``q``-th rank is ``q + #{i: s_i - i <= q}``.
    """
    slot = np.repeat(np.arange(len(users)), np.diff(np.searchsorted(
        mine, np.append(users * n_items, (users[-1] + 1) * n_items))))
    have = np.bincount(slot, minlength=len(users))
    first = np.cumsum(have) - have
    item = mine - users[slot] * n_items
    gaps = item - (np.arange(len(mine)) - first[slot])  # s_i - i, nondecreasing per user
    wide = n_items + 1
    gap_keys = slot * wide + gaps

    row = np.repeat(np.arange(len(users)), need)
    free = n_items - have
    # distinct sorted positions in [0, free): sorted draws from [0, free - need] plus their index
    draw = (rng.random(len(row)) ** 2 * (free - need + 1)[row]).astype(np.int64)
    draw = np.sort(row * wide + draw) - row * wide
    rank = draw + (np.arange(len(row)) - np.repeat(np.cumsum(need) - need, need))
    below = np.searchsorted(gap_keys, row * wide + rank, side="right") - first[row]
    return users[row] * n_items + rank + below


def _ratings(
    user_index: np.ndarray,
    item_index: np.ndarray,
    movies: _Movies,
    tastes: _Tastes,
    factors: int,
    scale: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Quantised ratings (float32) from biases, genre-built factors and noise."""
    n_users, n_genres = len(tastes.weights), len(GENRES)
    centroid = rng.standard_normal((n_genres, factors))
    # a movie sits near its main genre, pulled toward its other genres
    extra_sum = np.where(movies.use_extra[..., None], centroid[movies.extra], 0.0).sum(axis=1)
    n_extra = np.maximum(movies.use_extra.sum(axis=1), 1)[:, None]
    item_factor = (
        centroid[movies.primary] + 0.5 * extra_sum / n_extra
        + 0.7 * rng.standard_normal((movies.n, factors))
    )
    # a user sits near the centroids of their favourite genres
    favourite = tastes.segments[:, 1:].astype(np.int64)
    pull = tastes.weights[:, 1:] / tastes.weights[:, 1:].sum(axis=1, keepdims=True)
    user_factor = (pull[..., None] * centroid[favourite]).sum(axis=1)
    user_factor += 0.7 * rng.standard_normal((n_users, factors))
    item_factor = (item_factor / np.sqrt(factors)).astype(np.float32)
    user_factor = (user_factor / np.sqrt(factors)).astype(np.float32)
    user_bias = (_USER_BIAS * rng.standard_normal(n_users)).astype(np.float32)
    item_bias = (
        _ITEM_BIAS * rng.standard_normal(movies.n) + _POPULAR_BONUS * movies.popularity
    ).astype(np.float32)

    n = len(user_index)
    probe = slice(0, min(n, 1 << 18))  # rows are shuffled: the first ones are a fair sample
    dot = np.einsum("ij,ij->i", np.take(user_factor, user_index[probe], axis=0),
                    np.take(item_factor, item_index[probe], axis=0))
    spread = float(dot.std())
    factor_scale = np.float32(_FACTOR_TERM / spread if spread > 0 else 0.0)

    score = np.empty(n, dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        u, i = user_index[lo:hi], item_index[lo:hi]
        # np.take on rows is several times faster than fancy indexing for random rows
        part = np.einsum("ij,ij->i", np.take(user_factor, u, axis=0),
                         np.take(item_factor, i, axis=0))
        part *= factor_scale
        part += np.take(user_bias, u)
        part += np.take(item_bias, i)
        part += rng.standard_normal(hi - lo, dtype=np.float32) * np.float32(_NOISE)
        score[lo:hi] = part
    levels, shares = _LEVELS[scale]
    cuts = np.quantile(score[probe], np.cumsum(shares)[:-1]).astype(np.float32)
    level = np.zeros(n, dtype=np.uint8)
    for lo in range(0, n, _CHUNK):  # a few comparisons beat searchsorted on 10 cut points
        part = level[lo : lo + _CHUNK]
        for cut in cuts:
            part += score[lo : lo + _CHUNK] > cut
    return np.take(levels, level)


def _timestamps(user_index: np.ndarray, n_users: int, rng: np.random.Generator) -> np.ndarray:
    """Unix seconds (int64): each user active from a start time for a lognormal span, bursty."""
    span_total = _LAST_TIME - _FIRST_TIME
    start = _FIRST_TIME + (rng.beta(1.3, 1.0, n_users) * span_total).astype(np.int64)
    active = rng.lognormal(np.log(30 * 86400.0), 2.0, n_users)  # median a month, some years
    active = np.minimum(active, _LAST_TIME - start).astype(np.float32)
    out = np.empty(len(user_index), dtype=np.int64)
    for lo in range(0, len(user_index), _CHUNK):
        hi = min(lo + _CHUNK, len(user_index))
        u = user_index[lo:hi]
        along = rng.random(hi - lo, dtype=np.float32) ** 3  # most ratings early in the window
        out[lo:hi] = np.take(start, u) + (np.take(active, u) * along).astype(np.int64)
    return out


# -- catalog and people ------------------------------------------------------------------------

_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Dark", "Hidden", "Lost", "Crimson", "Burning", "Frozen",
    "Wild", "Endless", "Secret", "Quiet", "Savage", "Little", "Electric", "Midnight", "Bitter",
    "Final", "Iron", "Restless", "Distant", "Wicked", "Blue", "Hollow", "Sweet", "Deadly",
    "Forgotten", "Shining", "Empty", "Velvet", "Crooked", "Brave", "Strange", "Perfect",
)
_NOUNS = (
    "River", "Summer", "Kingdom", "Stranger", "Road", "Garden", "Storm", "Mirror", "Harbor",
    "Witness", "Promise", "Island", "Machine", "Country", "Shadow", "Letter", "Heart", "Horizon",
    "Station", "Dream", "Hunter", "Empire", "Season", "Voyage", "Signal", "Frontier", "Ghost",
    "Legacy", "Affair", "Circus", "Mountain", "Winter", "Detective", "Melody", "Valley", "Orchard",
)
_PLACES = (
    "Brooklyn", "Tangier", "the North", "Mars", "Paris", "Little Rock", "the Deep", "Tomorrow",
    "Hollywood", "the Moon", "Kyoto", "Oz", "Nowhere", "the West",
)
_NAMES = ("Jack", "Molly", "Frankie", "Rosa", "Billy", "Vera", "Sam", "Lou", "Mickey", "Nora")
_NICKNAMES = ("The Knife", "Lucky", "Red", "Doc", "Ace", "Slim", "Kid", "Legs")
_SURNAMES = ("Malone", "Kowalski", "Duval", "Okafor", "Sterling", "Brennan", "Moreau", "Quinn")
# accented titles exercise the latin-1 (ml-100k, ml-1m) and utf-8 encodings
_FOREIGN = (
    "Le Café Noir", "El Niño Perdido", "Die Brücke", "L'Été Dernier", "Señora Luna",
    "La Nuit Étoilée", "Søndag", "Il Ragazzo", "Amélie du Nord", "Götterdämmerung",
    "Noël à Paris", "Mañana",
)
_SEQUELS = ("2", "II", "III", "Part II", "Returns", "Reloaded")


def _catalog_frame(
    n_items: int,
    primary: np.ndarray,
    extra: np.ndarray,
    use_extra: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Movies 1..n_items: invented titles with years, genre lists, IMDb and TMDB ids."""
    year = np.clip(2023 - np.floor(rng.exponential(18.0, n_items)), 1915, 2023).astype(int)
    style = np.searchsorted(
        np.cumsum([0.30, 0.15, 0.13, 0.09, 0.07, 0.07, 0.05, 0.07, 0.04, 0.03]),
        rng.random(n_items), side="right",
    )
    pick = rng.integers(0, 1 << 30, (n_items, 4))

    def word(words: Sequence[str], k: int, j: int) -> str:
        return words[int(pick[j, k]) % len(words)]

    titles = []
    for j in range(n_items):
        adj, noun = word(_ADJECTIVES, 0, j), word(_NOUNS, 1, j)
        kind = int(style[j])
        if kind == 0:
            text = f"{adj} {noun}"
        elif kind == 1:  # MovieLens moves a leading article to the end: "Silent River, The"
            text = f"{adj} {noun}, The"
        elif kind == 2:
            text = f"{noun} of {word(_PLACES, 2, j)}"
        elif kind == 3:
            text = f"{word(_NAMES, 2, j)}'s {noun}"
        elif kind == 4:
            text = f"{adj} {noun} {word(_SEQUELS, 2, j)}"
        elif kind == 5:  # commas inside a title: quoted in CSV
            text = f"{noun}, {word(_NOUNS, 2, j)} and {word(_NOUNS, 3, j)}"
        elif kind == 6:  # double quotes inside a title: doubled in CSV
            text = f'{word(_NAMES, 2, j)} "{word(_NICKNAMES, 3, j)}" {word(_SURNAMES, 0, j)}'
        elif kind == 7:
            text = f"{adj} {noun} ({word(_FOREIGN, 2, j)})"
        elif kind == 8:
            text = word(_FOREIGN, 2, j)
        else:  # comma and quotes together
            text = f'{noun}, or "{adj}"'
        titles.append(split_title_year(f"{text} ({year[j]})"))

    genres = [
        [GENRES[primary[j]]] + [GENRES[extra[j, k]] for k in range(2) if use_extra[j, k]]
        for j in range(n_items)
    ]
    imdb = 10_000 + np.arange(n_items, dtype=np.int64) * 37 + rng.integers(0, 37, n_items)
    tmdb = pd.array(
        1 + np.arange(n_items, dtype=np.int64) * 5 + rng.integers(0, 5, n_items), dtype="Int64"
    )
    tmdb[rng.random(n_items) < 0.01] = pd.NA  # like links.csv, a few movies lack a TMDB id
    return pd.DataFrame({
        "item": np.arange(1, n_items + 1, dtype=np.int64),
        "title": [t for t, _ in titles],
        "year": pd.array([y for _, y in titles], dtype="Int64"),
        "genres": genres,
        "imdb_id": [f"tt{i:07d}" for i in imdb],
        "tmdb_id": tmdb,
    })


def _people(n_users: int, rng: np.random.Generator) -> pd.DataFrame:
    """ml-100k-style demographics for users 1..n_users."""
    age = np.clip(np.rint(rng.gamma(6.0, 5.5, n_users) + 5), 7, 73).astype(np.int64)
    gender = np.where(rng.random(n_users) < 0.71, "M", "F")
    occupation = np.array(OCCUPATIONS_100K, dtype=object)[
        np.searchsorted(np.cumsum(_OCCUPATION_WEIGHT / _OCCUPATION_WEIGHT.sum()),
                        rng.random(n_users) * 0.999999, side="right")
    ]
    zips = np.char.zfill(rng.integers(0, 100_000, n_users).astype(str), 5).astype(object)
    canadian = rng.random(n_users) < 0.005  # ml-100k has a few postal codes such as T8H1N
    letters = np.array(list("ABCEGHJKLMNPRSTVXY"))
    for j in np.flatnonzero(canadian):
        a, b, c = letters[rng.integers(0, len(letters), 3)]
        zips[j] = f"{a}{rng.integers(0, 10)}{b}{rng.integers(0, 10)}{c}"
    return pd.DataFrame({
        "user": np.arange(1, n_users + 1, dtype=np.int64),
        "age": age,
        "gender": gender,
        "occupation": occupation,
        "zip": zips,
    })


# -- canonical folds ---------------------------------------------------------------------------


def canonical_folds(ratings: Ratings) -> dict[str, np.ndarray]:
    """ml-100k's folds as its ``mku.sh`` makes them from the rows in file order.

    ``u1``..``u5``: test = the k-th fifth of the rows (rows ``n*(k-1)//5`` to ``n*k//5``), so every
    row is in exactly one test fold. ``ua``: test = each user's first 10 rows in file order;
    ``ub``: rows 11 to 20 (``allbut.pl``; a user with fewer rows has fewer, or none, in test, and
    there is no cap on the test size). Masks are over rows, True for test. On the real ml-100k,
    whose users all have >= 20 ratings, this reproduces the shipped files exactly.
    """
    n = len(ratings)
    folds: dict[str, np.ndarray] = {}
    for k in range(1, 6):
        mask = np.zeros(n, dtype=bool)
        mask[n * (k - 1) // 5 : n * k // 5] = True
        folds[f"u{k}"] = mask
    order = np.argsort(ratings.user_index, kind="stable")
    users = ratings.user_index[order]
    first = np.ones(n, dtype=bool)
    first[1:] = users[1:] != users[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - group_start
    folds["ua"] = position < 10
    folds["ub"] = (position >= 10) & (position < 20)
    return folds


# -- writing archives --------------------------------------------------------------------------

_ZIP_TIME = (2000, 1, 1, 0, 0, 0)  # fixed member times: the same dataset gives the same bytes
_ZIP_LEVEL = 1  # fast deflate: ratings files of 32M rows are ~800 MB of text


def write_archive(dataset: Dataset, path: str | Path, variant: str) -> Path:
    """Write ``dataset`` as a zip in the official layout of registry variant ``variant``.

    Members sit under the variant's top folder with its official names:

    - ``100k`` layout: ``u.data`` (rows in dataset order), ``u.item``, ``u.user``, ``u.genre``,
      ``u.occupation``, ``u.info``, ``README``, and the folds ``u1..u5``/``ua``/``ub`` as
      ``.base``/``.test`` (from ``dataset.folds`` where present, else `canonical_folds`);
    - ``dat`` layout: ``ratings.dat``, ``movies.dat``, and ``users.dat`` (ml-1m) or ``tags.dat``
      (ml-10m), ``README``;
    - ``csv`` layout: ``ratings.csv``, ``movies.csv``, ``tags.csv``, ``links.csv``,
      ``README.txt``; CRLF line ends for ml-latest-small (as GroupLens ships it), LF otherwise.

    Rating files other than ``u.data`` are sorted by user then movie, like the real ones. Tags are
    invented (seeded, deterministic) on about 1 in 50 rated pairs. The archive is written to a
    temporary file beside ``path`` and renamed, so a failure leaves nothing half-written.

    Args:
        dataset: the data; integer ids, timestamps, and (for ml-100k and ml-1m) users.
        path: the zip to write, or an existing folder to write ``<variant>.zip`` into.
        variant: a registry name such as ``"ml-100k"``.

    Returns:
        The path written.

    Raises:
        ConfigError: for an unknown variant, a missing folder, ratings off the variant's scale
            (half stars into ml-100k), non-integer ids, no timestamps, missing users where the
            layout needs them, or a title the layout's encoding cannot write.
    """
    spec = get_variant(variant)
    _check_writable(dataset, spec)
    target = Path(path)
    if target.is_dir():
        target = target / spec.filename
    if not target.parent.is_dir():
        raise ConfigError(f"folder {target.parent} does not exist")
    writer = {"100k": _write_100k, "dat": _write_dat, "csv": _write_csv}[spec.layout]
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part",
                                         dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(
            raw, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_ZIP_LEVEL
        ) as archive:
            folder = zipfile.ZipInfo(f"{spec.folder}/", _ZIP_TIME)
            folder.external_attr = 0o40755 << 16
            archive.writestr(folder, b"")
            writer(_Members(archive, spec.folder), dataset, spec)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target


def _check_writable(dataset: Dataset, spec: Variant) -> None:
    ratings = dataset.ratings
    for vocab in (ratings.users, ratings.items):
        if not vocab.is_integer or (len(vocab) and vocab.ids.min() < 0):
            raise ConfigError(f"{spec.name} needs non-negative integer {vocab.kind} ids")
    if ratings.timestamp is None:
        raise ConfigError(f"{spec.name} needs timestamps; these ratings have none")
    if len(ratings) and ratings.timestamp.min() < 0:
        raise ConfigError(f"{spec.name} needs timestamps >= 0 (Unix seconds)")
    if "users" in spec.members:
        if dataset.users is None:
            raise ConfigError(f"{spec.name} needs user demographics; this dataset has none")
        missing = {"age", "gender", "occupation", "zip"} - set(dataset.users.frame.columns)
        if missing:
            raise ConfigError(f"{spec.name} needs user columns {sorted(missing)}")
    if not len(ratings):
        return
    low, high = spec.scale
    doubled = ratings.rating * 2
    step = 2 if low == 1.0 else 1  # whole stars: doubled ratings are even
    if (
        ratings.rating.min() < low
        or ratings.rating.max() > high
        or not np.array_equal(doubled, np.rint(doubled))
        or np.any(doubled.astype(np.int64) % step)
    ):
        kind = "whole stars" if step == 2 else "half stars"
        raise ConfigError(
            f"{spec.name} takes ratings in {kind} from {low:g} to {high:g}; these ratings range "
            f"{ratings.rating.min():g}..{ratings.rating.max():g}"
            + (" with half stars" if step == 2 and np.any(doubled % 2) else "")
        )


class _Members:
    """Streams members into the archive under the top folder, with fixed times."""

    def __init__(self, archive: zipfile.ZipFile, folder: str) -> None:
        self.archive, self.folder = archive, folder

    def write(self, name: str, data: bytes | Iterator[bytes]) -> None:
        info = zipfile.ZipInfo(f"{self.folder}/{name}", _ZIP_TIME)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        if hasattr(info, "compress_level"):
            info.compress_level = _ZIP_LEVEL
        else:  # Python < 3.13 keeps it private; without it members get zlib's default level
            info._compresslevel = _ZIP_LEVEL  # type: ignore[attr-defined]
        with self.archive.open(info, "w", force_zip64=True) as member:
            for chunk in [data] if isinstance(data, bytes) else data:
                member.write(chunk)

    def text(self, name: str, lines: Sequence[str], encoding: str, eol: str = "\n") -> None:
        text = "".join(line + eol for line in lines)
        try:
            self.write(name, text.encode(encoding))
        except UnicodeEncodeError as exc:
            bad = exc.object[max(0, exc.start - 20) : exc.end + 20]
            raise ConfigError(f"{name} is {encoding}, which cannot write {bad!r}") from None

    def table(self, name: str, header: Sequence[str] | None, rows: Sequence[Sequence[Any]],
              encoding: str, eol: str) -> None:
        buffer = io.StringIO()
        out = csv.writer(buffer, lineterminator=eol, quoting=csv.QUOTE_MINIMAL)
        if header is not None:
            out.writerow(header)
        out.writerows(rows)
        self.write(name, buffer.getvalue().encode(encoding))


# Rating text by doubled rating (0..10), per layout.
_WHOLE = [f"{v // 2}" if v % 2 == 0 else "" for v in range(11)]
_SHORT = [f"{v / 2:g}" for v in range(11)]  # ml-10m: 5, 3.5
_POINT = [f"{v / 2:.1f}" for v in range(11)]  # csv: 5.0, 3.5


def _rating_lines(
    ratings: Ratings, rows: np.ndarray | None, sep: bytes, eol: bytes, texts: list[str]
) -> Iterator[bytes]:
    """Lines ``user sep item sep rating sep timestamp`` for ``rows`` (all rows if None)."""
    user_ids, item_ids = ratings.users.ids, ratings.items.ids
    table = [t.encode() for t in texts]
    n = len(ratings) if rows is None else len(rows)
    for lo in range(0, n, _CHUNK):
        at = np.arange(lo, min(lo + _CHUNK, n)) if rows is None else rows[lo : lo + _CHUNK]
        level = np.rint(ratings.rating[at] * 2).astype(np.int64)
        assert ratings.timestamp is not None  # checked by _check_writable
        yield _format_rows(
            [
                _digits(user_ids[ratings.user_index[at]]),
                _digits(item_ids[ratings.item_index[at]]),
                _lookup(table, level),
                _digits(ratings.timestamp[at]),
            ],
            sep,
            eol,
        )


def _digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative integers as right-aligned ASCII digits: (bytes, valid) of shape (n, width)."""
    q = values.astype(np.int64)
    width = len(str(int(q.max()))) if len(q) else 1
    out = np.empty((len(q), width), dtype=np.uint8)
    valid = np.empty((len(q), width), dtype=bool)
    for k in range(width):
        column = width - 1 - k
        valid[:, column] = q > 0 if k else True
        out[:, column] = q % 10 + 48
        q //= 10
    return out, valid


def _lookup(table: list[bytes], index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strings from a small table, left-aligned: (bytes, valid) of shape (n, width)."""
    width = max(1, *map(len, table))
    codes = np.zeros((len(table), width), dtype=np.uint8)
    for j, text in enumerate(table):
        codes[j, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    lengths = np.array([len(t) for t in table])
    return codes[index], np.arange(width) < lengths[index][:, None]


def _format_rows(
    fields: list[tuple[np.ndarray, np.ndarray]], sep: bytes, eol: bytes
) -> bytes:
    """Join per-row fields with ``sep``, end each row with ``eol``; vectorised over rows."""
    n = len(fields[0][0])
    blocks, masks = [], []
    for j, (block, valid) in enumerate(fields):
        blocks.append(block)
        masks.append(valid)
        tail = sep if j < len(fields) - 1 else eol
        blocks.append(np.broadcast_to(np.frombuffer(tail, dtype=np.uint8), (n, len(tail))))
        masks.append(np.ones((n, len(tail)), dtype=bool))
    return np.hstack(blocks)[np.hstack(masks)].tobytes()


def _by_user_item(ratings: Ratings, rows: np.ndarray | None = None) -> np.ndarray:
    """Row positions sorted by raw user id then raw movie id (all rows, or ``rows``)."""
    rows = np.arange(len(ratings)) if rows is None else rows
    users = ratings.users.ids[ratings.user_index[rows]]
    items = ratings.items.ids[ratings.item_index[rows]]
    span = int(items.max()) + 1 if len(items) else 1
    return rows[np.argsort(users * span + items, kind="stable")]


def _full_title(title: Any, year: Any) -> str:
    title = "" if title is None or title is pd.NA else str(title)
    return title if year is None or year is pd.NA else f"{title} ({int(year)})"


def _movie_rows(
    catalog: Catalog, separator: str | None = None
) -> list[tuple[int, str, list[str], int | None]]:
    """(movie id, "Title (Year)", genres, year or None) per catalog movie.

    Raises:
        ConfigError: if a title contains ``separator`` (a layout that cannot quote).
    """
    frame = catalog.frame
    rows = [
        (int(item), _full_title(title, year), list(genres),
         None if year is None or year is pd.NA else int(year))
        for item, title, year, genres in zip(
            frame["item"], frame["title"], frame["year"], frame["genres"], strict=True
        )
    ]
    if separator is not None:
        for item, title, _, _ in rows:
            if separator in title or "\n" in title:
                raise ConfigError(
                    f"movie {item}: title {title!r} holds {separator!r} or a line break, "
                    "which this layout cannot write"
                )
    return rows


def _genre_text(genres: list[str], old_names: bool) -> str:
    names = [_old_genre(g) if old_names else _new_genre(g) for g in genres]
    return "|".join(names) if names else "(no genres listed)"


def _old_genre(genre: str) -> str:
    return "Children's" if genre == "Children" else genre


def _new_genre(genre: str) -> str:
    return "Children" if genre == "Children's" else genre


_TAG_WORDS = (
    "atmospheric", "funny", "twist ending", "based on a book", "dark comedy", "visually appealing",
    "slow", "great soundtrack", "Oscar (Best Picture)", "quirky", "overrated", "classic",
    "so bad it's good", 'quotes: "here\'s looking at you"', "sad, but beautiful", "Amélie-like",
    "noir", "must see!", "cult film", "thought-provoking",
)


def _tags(ratings: Ratings) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Invented tag applications on rated pairs: (user ids, movie ids, tags, timestamps).

    Seeded and deterministic; sorted by user then movie like the real files.
    """
    rng = np.random.default_rng(20_151_001)
    n = len(ratings)
    size = min(max(n // 50, min(n, 5)), 1_000_000)
    rows = _sorted_unique(rng.integers(0, n, size)) if n else np.empty(0, np.int64)
    rows = _by_user_item(ratings, rows)
    words = (ratings.item_index[rows].astype(np.int64) * 7 + rng.integers(0, 3, len(rows)))
    assert ratings.timestamp is not None
    times = ratings.timestamp[rows] + rng.integers(0, 600, len(rows))
    return (ratings.users.ids[ratings.user_index[rows]], ratings.items.ids[ratings.item_index[rows]],
            [_TAG_WORDS[w % len(_TAG_WORDS)] for w in words], times)


def _fold_masks(dataset: Dataset) -> dict[str, np.ndarray]:
    folds = canonical_folds(dataset.ratings)
    folds.update({k: v for k, v in dataset.folds.items() if k in folds})
    return folds


def _write_100k(out: _Members, dataset: Dataset, spec: Variant) -> None:
    ratings, catalog = dataset.ratings, dataset.catalog
    assert dataset.users is not None
    out.write(spec.members["ratings"], _rating_lines(ratings, None, b"\t", b"\n", _WHOLE))
    by_user = _by_user_item(ratings)
    for name, test in _fold_masks(dataset).items():
        in_test = test[by_user]
        out.write(f"{name}.base", _rating_lines(ratings, by_user[~in_test], b"\t", b"\n", _WHOLE))
        out.write(f"{name}.test", _rating_lines(ratings, by_user[in_test], b"\t", b"\n", _WHOLE))

    urls = catalog.frame.get("imdb_url")
    flag_of = {g: j for j, g in enumerate(GENRES_100K)}
    lines = []
    for j, (item, title, genres, year) in enumerate(_movie_rows(catalog, "|")):
        flags = [0] * len(GENRES_100K)
        for genre in genres:
            if _old_genre(genre) in flag_of:
                flags[flag_of[_old_genre(genre)]] = 1
        if not any(flags):
            flags[0] = 1
        release = "" if year is None else f"01-Jan-{year}"
        if urls is not None:
            url = "" if not isinstance(urls.iloc[j], str) else urls.iloc[j]
        else:
            url = "http://us.imdb.com/M/title-exact?" + quote(title, safe="(),'",
                                                               encoding="latin-1",
                                                               errors="replace")
        lines.append("|".join([str(item), title, release, "", url, *map(str, flags)]))
    out.text(spec.members["movies"], lines, "latin-1")

    people = dataset.users.frame
    out.text(
        spec.members["users"],
        [
            f"{u}|{int(a)}|{g}|{o}|{z}"
            for u, a, g, o, z in zip(
                people["user"], people["age"], people["gender"], people["occupation"],
                people["zip"], strict=True,
            )
        ],
        "latin-1",
    )
    out.text("u.genre", [*(f"{g}|{j}" for j, g in enumerate(GENRES_100K)), ""], "latin-1")
    out.text("u.occupation", list(OCCUPATIONS_100K), "latin-1")
    out.text("u.info", [f"{ratings.n_users} users", f"{ratings.n_items} items",
                        f"{len(ratings)} ratings"], "latin-1")
    out.text("README", _readme(dataset, spec).splitlines(), "latin-1")


def _age_code(age: int) -> int:
    """ml-1m's age bucket: 1 (<18), 18, 25, 35, 45, 50, 56 (56+); idempotent on codes."""
    for low in (56, 50, 45, 35, 25, 18):
        if age >= low:
            return low
    return 1


def _write_dat(out: _Members, dataset: Dataset, spec: Variant) -> None:
    ratings = dataset.ratings
    whole = spec.scale[0] == 1.0
    old_names = spec.name == "ml-1m"  # ml-1m says "Children's", ml-10m "Children"
    encoding = "latin-1" if spec.name == "ml-1m" else "utf-8"
    by_user = _by_user_item(ratings)
    out.write(spec.members["ratings"],
              _rating_lines(ratings, by_user, b"::", b"\n", _WHOLE if whole else _SHORT))
    out.text(
        spec.members["movies"],
        [f"{item}::{title}::{_genre_text(genres, old_names=old_names)}"
         for item, title, genres, _ in _movie_rows(dataset.catalog, "::")],
        encoding,
    )
    if "users" in spec.members:
        assert dataset.users is not None
        people = dataset.users.frame
        codes = [
            o if isinstance(o, int | np.integer) else _ML1M_OCCUPATION_CODE.get(str(o), 0)
            for o in people["occupation"]
        ]
        out.text(
            spec.members["users"],
            [
                f"{u}::{g}::{_age_code(int(a))}::{c}::{z}"
                for u, g, a, c, z in zip(
                    people["user"], people["gender"], people["age"], codes, people["zip"],
                    strict=True,
                )
            ],
            encoding,
        )
    if "tags" in spec.members:
        users, items, tags, times = _tags(ratings)
        out.text(
            spec.members["tags"],
            [f"{u}::{i}::{t}::{s}" for u, i, t, s in zip(users, items, tags, times, strict=True)],
            encoding,
        )
    out.text("README.html" if spec.name == "ml-10m" else "README",
             _readme(dataset, spec).splitlines(), encoding)


def _write_csv(out: _Members, dataset: Dataset, spec: Variant) -> None:
    ratings, catalog = dataset.ratings, dataset.catalog
    eol = "\r\n" if spec.name == "ml-latest-small" else "\n"
    header = b"userId,movieId,rating,timestamp" + eol.encode()
    lines = _rating_lines(ratings, _by_user_item(ratings), b",", eol.encode(), _POINT)
    out.write(spec.members["ratings"], _prepend(header, lines))
    out.table(
        spec.members["movies"], ["movieId", "title", "genres"],
        [(item, title, _genre_text(genres, old_names=False))
         for item, title, genres, _ in _movie_rows(catalog)],
        "utf-8", eol,
    )
    users, items, tags, times = _tags(ratings)
    out.table(spec.members["tags"], ["userId", "movieId", "tag", "timestamp"],
              list(zip(users.tolist(), items.tolist(), tags, times.tolist(), strict=True)),
              "utf-8", eol)
    frame = catalog.frame
    if "imdb_id" in frame:
        imdb = [int(str(v).removeprefix("tt")) if isinstance(v, str) and v else None
                for v in frame["imdb_id"]]
    else:
        imdb = [None] * len(frame)
    tmdb = frame["tmdb_id"] if "tmdb_id" in frame else pd.Series([pd.NA] * len(frame))
    out.table(
        spec.members["links"], ["movieId", "imdbId", "tmdbId"],
        [
            (int(item), "" if i is None else f"{i:07d}", "" if t is pd.NA or t is None else int(t))
            for item, i, t in zip(frame["item"], imdb, tmdb, strict=True)
        ],
        "utf-8", eol,
    )
    out.text("README.txt", _readme(dataset, spec).splitlines(), "utf-8", eol)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _readme(dataset: Dataset, spec: Variant) -> str:
    ratings = dataset.ratings
    members = ", ".join(spec.members.values())
    folds = (
        "\nu1..u5 .base/.test: 80%/20% splits; u1.test..u5.test are disjoint fifths of u.data "
        "(in its order).\nua, ub .base/.test: each user's 1st-10th (ua) and 11th-20th (ub) "
        "ratings in u.data order are the test set.\n"
        if spec.layout == "100k" else ""
    )
    return (
        f"SYNTHETIC DATA in the layout of MovieLens {spec.name}\n"
        "=============================================\n\n"
        f"Written by movierec from the dataset {dataset.name!r}; not GroupLens data.\n"
        f"{len(ratings)} ratings from {ratings.n_users} users on {ratings.n_items} movies; "
        f"rating scale {spec.scale[0]:g}-{spec.scale[1]:g}.\n"
        f"Files: {members}.\n{folds}"
    )

