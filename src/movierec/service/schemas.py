"""Response and request models of every endpoint (these make the OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MovieId = int | str


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: a machine-readable code and a sentence for people."""

    error: str = Field(description="short code, e.g. not_found, invalid_request")
    message: str
    detail: list[dict[str, Any]] | None = None


class HealthOut(BaseModel):
    status: Literal["ok"]
    model: str
    version: str = Field(description="movierec's version")
    model_version: int = Field(description="the published model version this replica serves")
    replica: str = Field(description="host and process id of the replica that answered")


class ModelOut(BaseModel):
    model: str
    model_version: int = Field(description="the published model version this replica serves")
    params: dict[str, Any]
    predicts_ratings: bool
    scale: tuple[float, float]
    users: int
    movies: int
    ratings: int
    dataset: str | None
    split: str | None
    metrics: dict[str, float]
    trained: str | None = Field(description="when the artifact was written (UTC, ISO 8601)")
    genres: list[str]
    history: list[dict[str, Any]] = Field(default_factory=list, description="per-epoch figures")


class MovieOut(BaseModel):
    item: MovieId
    title: str
    year: int | None
    genres: list[str]


class MovieDetailOut(MovieOut):
    ratings: int = Field(description="training ratings of this movie")
    mean_rating: float | None
    imdb_id: str | None = None
    tmdb_id: int | None = None
    tags: list[str] = Field(default_factory=list)


class MovieListOut(BaseModel):
    query: str | None
    movies: list[MovieOut]


class ScoredMovieOut(BaseModel):
    movie: MovieOut
    score: float


class SimilarOut(BaseModel):
    movie: MovieOut
    similar: list[ScoredMovieOut]


class BecauseOut(BaseModel):
    movie: MovieOut
    rating: float = Field(description="what the user gave it")


class RecommendationOut(BaseModel):
    movie: MovieOut
    score: float
    because: list[BecauseOut]


class FiltersOut(BaseModel):
    genres: list[str] | None
    years: tuple[int, int] | None


class RecommendationsOut(BaseModel):
    k: int
    filters: FiltersOut
    recommendations: list[RecommendationOut]


class UserRecommendationsOut(RecommendationsOut):
    user: MovieId


class ProfileRecommendationsOut(RecommendationsOut):
    profile: str
    rated: int = Field(description="ratings the recommendations were folded in from")


class RatedMovieOut(BaseModel):
    movie: MovieOut
    rating: float


class UserOut(BaseModel):
    user: MovieId
    ratings: int
    history: list[RatedMovieOut]


class UserListOut(BaseModel):
    users: int
    sample: list[MovieId]


class GenreShareOut(BaseModel):
    genre: str
    count: int
    mean_rating: float


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=100)


class ProfileCreatedOut(BaseModel):
    id: str
    token: str = Field(description="the secret: send it as `Authorization: Bearer <token>`; shown once")
    name: str | None
    created: float


class ProfileRatingOut(BaseModel):
    movie: MovieOut
    rating: float
    updated: float


class ProfileOut(BaseModel):
    id: str
    name: str | None
    created: float
    ratings: list[ProfileRatingOut]
    genre_profile: list[GenreShareOut]


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: float = Field(allow_inf_nan=False)


class RetrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, int | float | str | bool] = Field(
        default_factory=dict, description="hyperparameters to change; the rest stay as trained")


class JobOut(BaseModel):
    id: str
    status: Literal["running", "done", "failed"]
    progress: float = Field(description="0..1")
    epoch: int | None
    epochs: int | None
    message: str
    started: float
    finished: float | None
    model_dir: str | None


class ReloadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str | None = Field(default=None, max_length=4096,
                                  description="artifact folder; default the one the service started with")


class ReloadOut(BaseModel):
    model: str
    model_dir: str
    model_version: int = Field(description="the version every replica now switches to")
    movies: int
    users: int
