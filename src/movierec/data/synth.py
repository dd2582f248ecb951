"""MovieLens-shaped synthetic data at any scale.

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

Everything is vectorised numpy over users, movies and rows; 32M ratings take well under a minute.
Pairs are drawn in blocks of consecutive users of about 2M ratings (``_CHUNK``) and every per-row
step runs a chunk at a time, so the peak stays near the final columns (20 bytes a rating with
timestamps): 0.85 GB for 32M ratings, 200k users and 87k movies. A set of at most one block is drawn
exactly as by the earlier all-at-once generator, so small seeds keep their data.

The shape's parameters (module constants): popularity weight ``(rank + 30)^-1.4`` over movies (genre
segments scale the head); per user at least ``min(20, n_ratings // n_users)`` ratings, the rest in
proportion to lognormal(0, 1.2) weights, at most half the movies; a Beta(2, 2) share of mainstream
picks and a Dirichlet split over three favourite genres; scores with user and movie bias sd 0.4,
factor term sd 0.5, noise sd 0.8, quantised to ml-latest-small's (or ml-100k's) rating histogram.

To write a dataset as an official MovieLens zip, see `movierec.data.archives`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from movierec._arrays import concat_ranges, run_positions
from movierec.data.dataset import Catalog, Dataset, Ratings, Users, Vocabulary, split_title_year
from movierec.errors import ConfigError

__all__ = ["GENRES", "OCCUPATIONS_100K", "synthesize"]

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
        seed: an int or a Generator; the same int gives the same dataset on the same kind of CPU
            (numpy runs its own AVX-512 log and power where the CPU has them, which round
            differently from the C library's: another CPU may draw slightly different rows;
            tests/data/test_synth.py pins the data under numpy's baseline code). Ratings, timestamps
            and the catalog come from independent streams, so ``with_timestamps`` changes nothing
            else.
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
    codes = _pairs_in_blocks(counts, movies, tastes, r_pairs)
    r_order.shuffle(codes)
    user_index, item_index = _split_codes(codes, movies)
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

    def take(self, start: int, stop: int) -> _Tastes:
        """Users ``start..stop-1`` (views, renumbered from 0)."""
        return _Tastes(self.segments[start:stop], self.weights[start:stop])

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


def _pairs_in_blocks(
    counts: np.ndarray, movies: _Movies, tastes: _Tastes, rng: np.random.Generator
) -> np.ndarray:
    """`_draw_pairs` over consecutive blocks of users of about ``_CHUNK`` ratings each, written
    into one preallocated array: two users never share a pair, so blocks are independent, and the
    peak stays near the final codes' size (8 bytes a rating) instead of several copies of it.

    A data set of at most ``_CHUNK`` ratings is one block: the same draws as drawing all at once.
    """
    n_items = movies.n
    out = np.empty(int(counts.sum()), dtype=np.int64)
    ends = np.cumsum(counts)
    user, row = 0, 0
    while user < len(counts):
        # last user of the block: ratings up to ``row + _CHUNK``, at least one user
        stop = max(int(np.searchsorted(ends, row + _CHUNK, side="right")), user + 1)
        block = counts[user:stop]
        codes = _draw_pairs(block, movies, tastes.take(user, stop), rng)
        codes += np.int64(user) * n_items  # block-local user numbers to global ones
        out[row : row + len(codes)] = codes
        row += len(codes)
        user = stop
    return out


def _split_codes(codes: np.ndarray, movies: _Movies) -> tuple[np.ndarray, np.ndarray]:
    """Pair codes to (user_index, item_index), int32, a chunk of rows at a time."""
    n_items = np.int64(movies.n)
    by_rank = movies.by_rank.astype(np.int32)
    user_index = np.empty(len(codes), dtype=np.int32)
    item_index = np.empty(len(codes), dtype=np.int32)
    for lo in range(0, len(codes), _CHUNK):
        part = codes[lo : lo + _CHUNK]
        user = part // n_items
        user_index[lo : lo + _CHUNK] = user
        item_index[lo : lo + _CHUNK] = np.take(by_rank, part - user * n_items)
    return user_index, item_index


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
    return concat_ranges(starts, ends - starts)


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
    rank = draw + run_positions(need)
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

    # Scores are quantised chunk by chunk (no n-long score array); the cut points come from the
    # probe rows of the first chunk, which _CHUNK > probe makes hold them all.
    levels, shares = _LEVELS[scale]
    out = np.empty(n, dtype=np.float32)
    cuts = None
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        u, i = user_index[lo:hi], item_index[lo:hi]
        # np.take on rows is several times faster than fancy indexing for random rows
        score = np.einsum("ij,ij->i", np.take(user_factor, u, axis=0),
                          np.take(item_factor, i, axis=0))
        score *= factor_scale
        score += np.take(user_bias, u)
        score += np.take(item_bias, i)
        score += rng.standard_normal(hi - lo, dtype=np.float32) * np.float32(_NOISE)
        if cuts is None:
            cuts = np.quantile(score[probe], np.cumsum(shares)[:-1]).astype(np.float32)
        level = np.zeros(hi - lo, dtype=np.uint8)
        for cut in cuts:  # a few comparisons beat searchsorted on 10 cut points
            level += score > cut
        out[lo:hi] = np.take(levels, level)
    return out


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
