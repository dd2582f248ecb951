"""Content-based recommendation from the movie catalog: genres, user tags and release decades.

Item features. Every movie of the model's vocabulary gets a sparse feature row made of three blocks:

- genres: TF-IDF over genre tokens (tf = 1 per listed genre), idf_t = ln((1 + N) / (1 + df_t)) + 1
  (scikit-learn's smooth idf; N = movies in the vocabulary, df_t = movies with token t), so a rare
  shared genre (Film-Noir) says more than a common one (Drama);
- tags: the same TF-IDF over the catalog's user tags (ml-latest-small, ml-10m+), keeping only tags on
  at least ``min_tag_movies`` movies: a tag on one movie matches nothing else and only dilutes that
  movie's similarity to everything;
- year: the decade token of the release year (tf 1) and, with ``year_smoothing`` s > 0, the two
  neighbouring decades with tf s, so a 1989 movie is close to the 1990s too. No idf here: with one
  main token per movie, block normalisation cancels idf anyway, and a rare old decade should not
  outweigh the others.

Each block is L2-normalised on its own, multiplied by its weight (``genre_weight``, ``tag_weight``,
``year_weight``), and the concatenated row is L2-normalised: x_i (unit norm, or all zero for a movie
the catalog says nothing about). The weights are thus the blocks' relative say in the cosine.

Profiles and scores. A user's profile is p_u = sum_j w_uj x_j over their rated movies, with weights w_uj
from ``weighting`` (the shared interaction weights of `movierec.models.core.interactions`: ``binary``,
``rating``, ``centered``; plus ``deviation``: r_uj minus the user's mean rating, negative for movies
they liked less than usual, so disliked genres push scores down) after dropping ratings below
``min_rating``. The score is cosine(p_u, x_i) = p_u . x_i / ||p_u|| (x_i has unit norm): in [-1, 1];
0 for a user with a zero profile and for a movie without features.

New movies. The model's movie vocabulary is the union of the training movies and the catalog's movies,
so a movie nobody rated yet can be recommended and found similar from its features alone (its column
of ``seen_`` is empty). Evaluation protocols restrict candidates to training movies where they compare
with collaborative models.

Fallback for pairs unknown to training: 0 (no evidence either way).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.data.dataset import Catalog, Ratings, Vocabulary
from movierec.errors import ConfigError
from movierec.models.core.checks import check_int, check_number
from movierec.models.core.interactions import WEIGHTINGS, check_interaction_params, interaction_matrix
from movierec.models.core.memory import csr_bytes
from movierec.models.core.recommender import Callback, Recommender

__all__ = ["ContentRecommender", "item_features", "union_vocabulary"]

#: weighting values the content model accepts: the shared ones plus a signed deviation from the mean.
CONTENT_WEIGHTINGS = (*WEIGHTINGS, "deviation")
# Feature spaces wider than this are reduced to this many dimensions for `_item_vectors` (2-D maps,
# diversity re-ranking): a dense copy of thousands of tag columns would be mostly zeros.
_VECTOR_DIMS = 32


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    return np.log((1.0 + n) / (1.0 + df)) + 1.0


def _normalise_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ matrix)


def _tfidf(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """Binary tf x smooth idf over (row, token) incidences, rows L2-normalised."""
    tf = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_rows, n_cols))
    tf.data[:] = 1.0  # a token listed twice for a movie still counts once
    df = np.bincount(tf.indices, minlength=n_cols)
    return _normalise_rows(sp.csr_matrix(tf @ sp.diags(_idf(df, n_rows))))


def union_vocabulary(train_items: Vocabulary, catalog: Catalog) -> Vocabulary:
    """The training movies plus every catalog movie, sorted ascending, in the training ids' type.

    Catalog ids that cannot be written in that type (text ids for an integer vocabulary) are left out.
    """
    ids = np.asarray(catalog.items.ids)
    if train_items.is_integer and ids.dtype.kind not in "iu":
        text = pd.Series(ids.astype(str)).str.strip()
        ids = text[text.str.fullmatch(r"-?\d+")].astype(np.int64).to_numpy()
    elif not train_items.is_integer:
        ids = ids.astype(str)
    return Vocabulary.from_values(np.concatenate([train_items.ids, ids]), train_items.kind)


def item_features(
    catalog: Catalog,
    items: Vocabulary,
    *,
    genre_weight: float = 1.0,
    tag_weight: float = 1.0,
    year_weight: float = 1.0,
    year_smoothing: float = 0.0,
    min_tag_movies: int = 1,
) -> sp.csr_matrix:
    """Feature rows (see the module docstring) of the movies ``items``, in its index order.

    Returns:
        (len(items), n_features) float64 CSR with unit-norm rows (zero rows for movies the catalog does
        not know or describes with nothing). Columns: genres (``catalog.genres`` order), kept tags
        (sorted), then decades (ascending, one beyond each end for smoothing).
    """
    n = len(items)
    position = catalog.items.indices(items.ids, missing="mask")
    known = np.flatnonzero(position >= 0)
    frame = catalog.frame.iloc[position[known]]

    genres = catalog.genre_matrix(items).tocoo()
    genre_block = _tfidf(genres.row, genres.col, n, genres.shape[1])

    if "tags" in frame and len(frame):
        tags = pd.DataFrame({"row": known, "tag": frame["tags"].to_numpy()}).explode("tag").dropna()
        tags = tags.drop_duplicates()
        counts = tags["tag"].value_counts()
        kept = np.sort(counts.index[counts >= min_tag_movies].to_numpy().astype(str))
        tags = tags[tags["tag"].isin(kept)]
        tag_cols = np.searchsorted(kept, tags["tag"].to_numpy().astype(str))
        tag_block = _tfidf(tags["row"].to_numpy(), tag_cols, n, len(kept))
    else:
        tag_block = sp.csr_matrix((n, 0))

    years = frame["year"].to_numpy(dtype="float64", na_value=np.nan) if len(frame) else np.empty(0)
    dated = ~np.isnan(years)
    if dated.any():
        decade = (years[dated] // 10).astype(np.int64)
        low = int(decade.min()) - 1
        width = int(decade.max()) - low + 2
        rows = np.repeat(known[dated], 3)
        cols = (decade[:, None] - low + np.array([-1, 0, 1])).ravel()
        values = np.tile([year_smoothing, 1.0, year_smoothing], int(dated.sum()))
        year_block = sp.csr_matrix((values, (rows, cols)), shape=(n, width))
        year_block.eliminate_zeros()
        year_block = _normalise_rows(year_block)
    else:
        year_block = sp.csr_matrix((n, 0))

    blocks = [genre_weight * genre_block, tag_weight * tag_block, year_weight * year_block]
    features = sp.csr_matrix(sp.hstack(blocks, format="csr"))
    features.eliminate_zeros()
    features = _normalise_rows(features)
    features.sort_indices()
    return features


class ContentRecommender(Recommender):
    """Content-based recommender: cosine between a user's feature profile and each movie's features.

    Args:
        genre_weight, tag_weight, year_weight: the blocks' weights (>= 0, not all 0).
        year_smoothing: tf of the two decades next to a movie's own (0..1; 0 = decade one-hot).
        min_tag_movies: a tag counts only if at least this many movies carry it.
        min_rating: ratings below it do not shape the profile (they still count as seen).
        weighting: how a rating weighs in the profile: ``binary``, ``rating``, ``centered`` (see
            `movierec.models.core.interactions`) or ``deviation`` (rating minus the user's mean).

    Needs the catalog: ``fit(train, catalog=...)``.

    Defaults were chosen on validation carve-outs of the training parts of ml100k-strat75 and
    mlsmall-strat80 (benchmarks/selection/content.py), one knob at a time by NDCG@10. Tags are off by default:
    on ml-latest-small every tag weight tried lowered validation NDCG@10 (0.0246 at 0, 0.0199 at 0.1,
    0.0181 at 0.5) and the cold-start AUC too (0.740 -> 0.727 at 0.5); only ~1,500 of its 9,700 movies
    carry tags, and a tagged movie's tag block mostly matches nobody's profile. The decade block helps
    on ml-latest-small (0.0094 at weight 0, 0.0164 at 0.5, 0.0170 at 1; in the hybrid over
    biased-mf-als, test NDCG@10 0.043 at 0.5 and 0.092 at 1: recent movies are what its users rate)
    and costs ml-100k a little (0.0341 at 0, 0.0328 at 1); neighbouring-decade smoothing did not help
    on either. The weightings tie on ml-100k;
    ``deviation`` is far worse on ml-latest-small (0.0059 against 0.0161 for binary), because the
    protocol counts every rated movie as relevant, disliked or not.

    Fitted attributes: ``features_`` (n_items, n_features) CSR, unit-norm rows, over ``items_``
    (training movies plus catalog-only ones); ``weights_`` (n_users, n_items) CSR of profile weights
    w_uj (derived from ``seen_``, not saved).
    """

    name = "content"
    predicts_ratings = False
    uses_catalog: ClassVar[bool] = True

    def __init__(
        self,
        genre_weight: float = 1.0,
        tag_weight: float = 0.0,
        year_weight: float = 1.0,
        year_smoothing: float = 0.0,
        min_tag_movies: int = 2,
        min_rating: float = 0.0,
        weighting: str = "binary",
    ) -> None:
        self.genre_weight = genre_weight
        self.tag_weight = tag_weight
        self.year_weight = year_weight
        self.year_smoothing = year_smoothing
        self.min_tag_movies = min_tag_movies
        self.min_rating = min_rating
        self.weighting = weighting

    def _check_params(self) -> None:
        for name in ("genre_weight", "tag_weight", "year_weight"):
            check_number(name, getattr(self, name))
        if self.genre_weight + self.tag_weight + self.year_weight <= 0:
            raise ConfigError("genre_weight, tag_weight and year_weight must not all be 0, got "
                              f"{self.genre_weight}, {self.tag_weight}, {self.year_weight}")
        check_number("year_smoothing", self.year_smoothing)
        if self.year_smoothing > 1:
            raise ConfigError(f"year_smoothing must be a number between 0 and 1, got {self.year_smoothing!r}")
        check_int("min_tag_movies", self.min_tag_movies)
        if self.weighting == "deviation":
            check_interaction_params(self.min_rating, "binary")
        elif self.weighting not in CONTENT_WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {', '.join(CONTENT_WEIGHTINGS)}, "
                              f"got {self.weighting!r}")
        else:
            check_interaction_params(self.min_rating, self.weighting)

    # -- fitting -------------------------------------------------------------------------------
    def _fit(self, train: Ratings, valid: Ratings | None, callback: Callback | None) -> None:
        catalog = self.catalog_  # never None here: fit refuses a catalog model without one
        items = union_vocabulary(self.items_, catalog)
        self.seen_ = _reindex_columns(self.seen_, self.items_, items)
        self.items_ = items
        self.features_ = item_features(
            catalog, items, genre_weight=self.genre_weight, tag_weight=self.tag_weight,
            year_weight=self.year_weight, year_smoothing=self.year_smoothing,
            min_tag_movies=self.min_tag_movies)
        self._prepare()
        if callback is not None:
            callback("features", {"items": len(items), "features": self.features_.shape[1]})

    def estimate_fit_bytes(self, n_users: int, n_items: int, n_ratings: int) -> int:
        """Movie features (a few dozen float64 columns, tags excepted) and weighted profile copies
        of the ratings."""
        return int(3 * csr_bytes(n_users, n_ratings) + 8 * 64 * n_items)

    def _prepare(self) -> None:
        """Profile weights from ``seen_`` (after fit and after load)."""
        self.weights_ = self._profile_weights(self.seen_)
        self._vectors: np.ndarray | None = None

    def _profile_weights(self, seen: sp.csr_matrix) -> sp.csr_matrix:
        """users x items CSR of w_uj: `interaction_matrix` semantics, or signed deviations."""
        if self.weighting != "deviation":
            return interaction_matrix(seen, self.min_rating, self.weighting).astype(np.float64)
        counts = np.diff(seen.indptr)
        rows = np.repeat(np.arange(seen.shape[0]), counts)
        data = seen.data.astype(np.float64)
        means = np.bincount(rows, weights=data, minlength=seen.shape[0]) / np.maximum(counts, 1)
        keep = data >= self.min_rating
        matrix = sp.csr_matrix(((data - means[rows])[keep], (rows[keep], seen.indices[keep])),
                               shape=seen.shape)
        matrix.eliminate_zeros()  # a rating equal to the mean says nothing
        return matrix

    def _fold_in_weights(self, ratings: np.ndarray) -> np.ndarray:
        """w_j for one user's ratings (float64, aligned with ``ratings``; 0 below min_rating)."""
        ratings = np.asarray(ratings, dtype=np.float64)
        row = sp.csr_matrix((ratings, np.arange(len(ratings)), [0, len(ratings)]),
                            shape=(1, len(ratings)))
        return self._profile_weights(row).toarray()[0]

    # -- scoring -------------------------------------------------------------------------------
    def _profiles(self, weights: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
        """Profiles (n, n_features) CSR and their inverse norms (n,), 0 for a zero profile."""
        profiles = sp.csr_matrix(weights @ self.features_)
        norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(axis=1)).ravel())
        return profiles, np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    def _score_users(self, user_index: np.ndarray) -> np.ndarray:
        profiles, inverse = self._profiles(self.weights_[np.asarray(user_index, dtype=np.int64)])
        return (profiles @ self.features_.T).toarray() * inverse[:, None]

    def _predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        user_index = np.asarray(user_index, dtype=np.int64)
        item_index = np.asarray(item_index, dtype=np.int64)
        scores = np.zeros(len(user_index))
        pairs = np.flatnonzero((user_index >= 0) & (item_index >= 0))
        if len(pairs):
            users, row = np.unique(user_index[pairs], return_inverse=True)
            profiles, inverse = self._profiles(self.weights_[users])
            products = profiles[row].multiply(self.features_[item_index[pairs]])
            scores[pairs] = np.asarray(products.sum(axis=1)).ravel() * inverse[row]
        return scores

    def _fold_in(self, item_index: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        item_index = np.asarray(item_index, dtype=np.int64)
        weights = self._fold_in_weights(ratings)
        profile = weights @ self.features_[item_index]  # (n_features,) dense
        norm = float(np.linalg.norm(profile))
        if norm == 0:
            return np.zeros(len(self.items_))
        return np.asarray(self.features_ @ profile).ravel() / norm

    def _item_similarity(self, item_index: np.ndarray) -> np.ndarray:
        """Feature cosines: (len(item_index), n_items); 0 for movies without features."""
        rows = self.features_[np.asarray(item_index, dtype=np.int64)]
        return (rows @ self.features_.T).toarray()

    def _contributions(self, item_index: np.ndarray, ratings: np.ndarray, target: np.ndarray
                       ) -> np.ndarray:
        """(len(target), len(item_index)): w_j cos(x_j, x_t) / ||p||, summing over j to the score."""
        item_index = np.asarray(item_index, dtype=np.int64)
        weights = self._fold_in_weights(ratings)
        norm = float(np.linalg.norm(weights @ self.features_[item_index]))
        cosines = (self.features_[np.asarray(target, dtype=np.int64)] @ self.features_[item_index].T
                   ).toarray()
        return cosines * weights[None, :] / norm if norm > 0 else np.zeros_like(cosines)

    def _item_vectors(self) -> np.ndarray:
        """(n_items, d) float32: the features themselves when narrow, else their projection on the
        top ``_VECTOR_DIMS`` principal directions of the (uncentred) feature Gram matrix, which is
        deterministic (an eigendecomposition, no random start) and keeps cosines roughly."""
        if self._vectors is None:
            features = self.features_
            if features.shape[1] <= _VECTOR_DIMS:
                vectors = features.toarray()
            else:
                gram = (features.T @ features).toarray()
                values, basis = np.linalg.eigh(gram)
                basis = basis[:, np.argsort(values)[::-1][:_VECTOR_DIMS]]
                # eigenvector signs are arbitrary: fix each by its largest-magnitude entry
                signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])
                vectors = np.asarray(features @ (basis * signs))
            self._vectors = vectors.astype(np.float32)
        return self._vectors

    # -- persistence ---------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        features = self.features_
        return {
            "features.indptr": features.indptr.astype(np.int64),
            "features.indices": features.indices.astype(np.int32),
            "features.data": features.data.astype(np.float64),
            "features.shape": np.array(features.shape, dtype=np.int64),
        }

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        shape = tuple(int(v) for v in arrays["features.shape"])
        if shape[0] != len(self.items_):
            raise ValueError(f"features cover {shape[0]} movies, the vocabulary {len(self.items_)}")
        self.features_ = sp.csr_matrix(
            (arrays["features.data"], arrays["features.indices"], arrays["features.indptr"]),
            shape=shape)
        self._prepare()


def _reindex_columns(matrix: sp.csr_matrix, old: Vocabulary, new: Vocabulary) -> sp.csr_matrix:
    """``matrix`` (rows x len(old)) with its columns moved to their places in ``new`` (a superset)."""
    column = new.indices(old.ids)
    moved = sp.csr_matrix((matrix.data, column[matrix.indices], matrix.indptr),
                          shape=(matrix.shape[0], len(new)), dtype=matrix.dtype)
    moved.sort_indices()
    return moved

