"""What the running service holds: the loaded model with its lookups, the store, background jobs.

A `Loaded` is immutable once built; reload and retrain build a new one and swap a single reference,
so a request in flight keeps the model it started with.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from movierec.artifacts import Artifact, load_model
from movierec.data.dataset import Catalog
from movierec.errors import UnknownIdError
from movierec.models.core.recommender import Recommender
from movierec.service.settings import Settings
from movierec.service.store import Store

__all__ = ["Job", "Loaded", "ServiceState"]

log = logging.getLogger(__name__)

_INT64 = 2**63


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


class Loaded:
    """A model and everything derived from it that requests need, built once.

    Attributes:
        model, catalog, manifest: from the artifact (a catalog of bare ids if it had none).
        movies: raw movie id -> plain dict (item, title, year, genres), every movie the model or
            catalog knows; movie_texts: ``str(raw)`` -> raw id for the same movies.
        details: raw movie id -> extra fields (ratings count, mean rating, links, tags).
        popular: raw movie ids, most rated first.
    """

    def __init__(self, artifact: Artifact, model_dir: Path, cache_size: int = 0) -> None:
        self.cache = AnswerCache(cache_size)
        self.model: Recommender = artifact.model
        self.manifest = artifact.manifest
        self.model_dir = model_dir
        items = self.model.items_
        catalog = artifact.catalog
        if catalog is None:  # a bare ratings file: movies are only ids
            catalog = Catalog(pd.DataFrame({"item": items.ids, "title": [f"Movie {i}" for i in items.ids],
                                            "year": pd.array([None] * len(items), dtype="Int64"),
                                            "genres": [[] for _ in range(len(items))]}))
        self.catalog = catalog
        self.integer_ids = items.is_integer
        # a set answers "is this a user?" in ~0.1 us; the vocabulary's pandas lookup takes ~0.5 ms
        self._users = set(self.model.users_.ids.tolist())
        frame = catalog.frame
        self.movies: dict[Any, dict[str, Any]] = {}
        for item, title, year, genres in zip(frame["item"], frame["title"], frame["year"], frame["genres"],
                                             strict=True):
            raw = _plain(item)
            self.movies[raw] = {"item": raw, "title": str(title), "year": _plain(year),
                                "genres": [str(g) for g in genres if g != "(no genres listed)"]}
        for raw in items.ids.tolist():  # rated movies missing from the catalog still get a name
            self.movies.setdefault(raw, {"item": raw, "title": f"Movie {raw}", "year": None, "genres": []})
        # the store keeps movie ids as text (str(raw)): one lookup per stored rating
        self.movie_texts: dict[str, Any] = {str(raw): raw for raw in self.movies}
        seen = self.model.seen_.tocsc()
        counts = np.diff(seen.indptr)
        sums = np.asarray(seen.sum(axis=0)).ravel()
        self._counts = dict(zip(items.ids.tolist(), counts.tolist(), strict=True))
        self._means = dict(zip(items.ids.tolist(),
                               np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).tolist(),
                               strict=True))
        self.popular = items.ids[np.argsort(-counts, kind="stable")].tolist()
        self.genres = [g for g in catalog.genres if g != "(no genres listed)"]
        self._build_search()

    # -- ids -------------------------------------------------------------------------------------
    def movie_id(self, text: str) -> Any:
        """The raw movie id a path segment names. Raises UnknownIdError."""
        raw = self._coerce(text, "movie")
        if raw not in self.movies:
            raise UnknownIdError(f"unknown movie id {text!r}")
        return raw

    def user_id(self, text: str) -> Any:
        """The raw id of a user in the training data. Raises UnknownIdError."""
        raw = self._coerce(text, "user", self.model.users_.is_integer)
        if raw not in self._users:
            raise UnknownIdError(f"unknown user id {text!r}")
        return raw

    def _coerce(self, text: str, kind: str, integer: bool | None = None) -> Any:
        integer = self.integer_ids if integer is None else integer
        if not integer:
            return text
        try:
            value = int(text.strip())
        except ValueError:
            raise UnknownIdError(f"unknown {kind} id {text!r} (ids are integers)") from None
        if not -_INT64 <= value < _INT64:
            raise UnknownIdError(f"unknown {kind} id {text!r}")
        return value

    # -- movies ----------------------------------------------------------------------------------
    def movie(self, raw: Any) -> dict[str, Any]:
        found = self.movies.get(raw)
        if found is None:
            return {"item": raw, "title": f"Movie {raw}", "year": None, "genres": []}
        return found

    def detail(self, raw: Any) -> dict[str, Any]:
        out = dict(self.movie(raw))
        count = self._counts.get(raw, 0)
        mean = self._means.get(raw)
        out["ratings"] = int(count)
        out["mean_rating"] = None if mean is None or np.isnan(mean) else round(float(mean), 4)
        if raw in self.catalog:
            record = self.catalog.get(raw)
            out["imdb_id"] = record.get("imdb_id") if isinstance(record.get("imdb_id"), str) else None
            tmdb = record.get("tmdb_id")
            out["tmdb_id"] = int(tmdb) if isinstance(tmdb, int | float) and tmdb == tmdb else None
            out["tags"] = [str(t) for t in (record.get("tags") or [])][:50]
        return out

    # -- search ----------------------------------------------------------------------------------
    def _build_search(self) -> None:
        """A titles x character-trigrams matrix, for typo-tolerant search by one sparse product."""
        self._titles = list(self.movies.values())
        grams: dict[str, int] = {}
        rows, cols = [], []
        for row, movie in enumerate(self._titles):
            for gram in _trigrams(movie["title"]):
                rows.append(row)
                cols.append(grams.setdefault(gram, len(grams)))
        self._grams = grams
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                               shape=(len(self._titles), max(len(grams), 1)))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        self._gram_matrix = matrix
        self._gram_counts = np.asarray(matrix.sum(axis=1)).ravel()

    def search(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Exact word matches first (the catalog's search), then near misses by trigram overlap."""
        found = [self.movie(_plain(i)) for i in self.catalog.search(query, limit=limit)["item"]]
        if len(found) >= limit:
            return found
        wanted = _trigrams(re.sub(r"\b\d{4}\b", " ", query))
        columns = [self._grams[g] for g in wanted if g in self._grams]
        if not columns or not wanted:
            return found
        overlap = np.asarray(self._gram_matrix[:, columns].sum(axis=1)).ravel()
        share = overlap / len(wanted)  # how much of the query the title holds
        dice = 2 * overlap / (len(wanted) + self._gram_counts)  # how close the lengths are
        score = share + 0.25 * dice
        candidates = np.flatnonzero(share >= 0.3)
        order = candidates[np.lexsort((-dice[candidates], -score[candidates]))]
        have = {m["item"] for m in found}
        for position in order:
            movie = self._titles[position]
            if movie["item"] not in have:
                found.append(movie)
                have.add(movie["item"])
            if len(found) >= limit:
                break
        return found


class AnswerCache:
    """A bounded least-recently-used map of request key -> serialized answer (bytes), thread-safe.

    Lives in a `Loaded`, so answers never outlive the model that computed them.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        if not self.size:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: bytes) -> None:
        if not self.size:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _trigrams(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    grams = set()
    for word in words:
        padded = f" {word} "
        grams.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return grams


@dataclass
class Job:
    """A background retrain: its progress as the fit callback reports it."""

    id: str
    status: str = "running"
    progress: float = 0.0
    epoch: int | None = None
    epochs: int | None = None
    message: str = "starting"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    model_dir: str | None = None

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ServiceState:
    """Everything a request may touch: settings, store, the current `Loaded`, jobs."""

    def __init__(self, settings: Settings, loaded: Loaded, store: Store) -> None:
        self.settings = settings
        self.loaded = loaded
        self.store = store
        self.jobs: dict[str, Job] = {}
        self._job_lock = threading.Lock()

    def reload(self, model_dir: Path) -> Loaded:
        """Load another artifact and swap it in. Raises DataError (the old model stays)."""
        loaded = Loaded(load_model(model_dir), model_dir, self.settings.cache_size)
        self.loaded = loaded
        log.info("serving %s from %s", loaded.model.name, model_dir)
        return loaded

    def start_retrain(self, params: dict[str, Any]) -> Job:
        """Refit the served model's class on its training ratings in a thread; swap when done.

        Raises:
            RuntimeError: if a retrain is already running.
            ConfigError: a bad hyperparameter (checked before the thread starts).
        """
        from movierec.models.registry import create_model

        current = self.loaded
        merged = {**current.model.get_params(), **params}
        model = create_model(current.model.name, **merged)
        model._check_params()
        with self._job_lock:
            if any(job.status == "running" for job in self.jobs.values()):
                raise RuntimeError("a retrain is already running")
            job = Job(id=uuid.uuid4().hex[:12])
            self.jobs[job.id] = job
        thread = threading.Thread(target=self._retrain, args=(job, model, current), daemon=True,
                                  name=f"retrain-{job.id}")
        thread.start()
        return job

    def _retrain(self, job: Job, model: Recommender, current: Loaded) -> None:
        from movierec.artifacts import save_model
        from movierec.data.dataset import Ratings

        try:
            old = current.model
            seen = old.seen_.tocoo()
            train = Ratings.from_arrays(old.users_.ids[seen.row], old.items_.ids[seen.col], seen.data,
                                        scale=old.scale_, users=old.users_, items=old.items_)

            def callback(event: str, info: dict[str, Any]) -> None:
                if event == "epoch":
                    job.epoch = info.get("epoch")
                    job.epochs = info.get("epochs")
                    if job.epoch is not None and job.epochs:
                        job.progress = min(0.95, float(job.epoch) / float(job.epochs))
                    job.message = f"epoch {job.epoch}/{job.epochs}"

            job.message = f"fitting {model.name} on {len(train):,} ratings"
            start = time.perf_counter()
            model.fit(train, callback=callback)
            seconds = time.perf_counter() - start
            job.message, job.progress = "saving", 0.97
            target = self.settings.resolved_retrain_dir() / f"{model.name}-{job.id}"
            data = dict(current.manifest.get("data") or {})
            data.update({"retrained_from": str(current.model_dir), "fit_seconds": round(seconds, 4),
                         "train_ratings": len(train)})
            save_model(model, target, catalog=current.catalog, data=data)
            self.reload(target)
            job.model_dir = str(target)
            job.status, job.progress = "done", 1.0
            job.message = f"serving the retrained model ({seconds:.1f} s)"
        except Exception as exc:  # reported through the job; the served model stays
            log.exception("retrain %s failed", job.id)
            job.status, job.message = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            job.finished = time.time()
