"""An approximate maximum-inner-product index over a model's `DotParts`, on faiss.

Scores are ``x_u · y_i + o_i`` (`movierec.models.core.recommender.DotParts`). The item side becomes
``[y_i, o_i]`` (the offset is one more column, the query's coefficient for it 1); item columns that
are the same for every movie (the ones that carry a per-user term such as mu + b_u) are dropped, since
they shift a user's scores alike. Maximum inner product is then turned into a search among vectors of
equal norm (Bachrach et al. 2014): each item gets one more column ``sqrt(M^2 - |row|^2)``, M the
largest row norm, and queries a 0 there, so inner products are unchanged while every item lies on one
sphere. On that sphere k-means (the IVF coarse quantizer) clusters by direction, and probing the lists
whose centroids best match the query finds the large inner products. Without it, on biased-MF factors
(biases of +-1 beside factors of norm 0.5) IVF needed 8x the probes and HNSW with inner product stopped
short of recall 0.97 at any effort (benchmarks/retrieval.py; docs/retrieval.md).

The index is `faiss.IndexIVFFlat` (METRIC_INNER_PRODUCT) with about sqrt(n) lists: vectors are kept in
full, so the inner products it returns are exact (float32) and only the probing is approximate.
`calibrate` raises the number of lists probed (``nprobe``: 1, 2, 4, ... up to all of them, which is
exhaustive) until a recall that the caller measures reaches a target (`movierec.retrieval.attach`:
recall@10 of the final lists, seen movies excluded, against exact lists on a sample of users).

faiss is optional (``pip install 'movierec[ann]'``): `load_faiss` returns None without it, and the
callers (`movierec.retrieval.attach`) fall back to exact scoring.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from movierec._files import atomic_file
from movierec.models.core.recommender import DotParts

__all__ = ["INDEX_FILE", "META_FILE", "AnnIndex", "fingerprint", "load_faiss"]

log = logging.getLogger(__name__)

#: Files the index occupies in a model folder, beside the artifact's own (not in its manifest:
#: an artifact loads without them, and a stale pair is replaced, never trusted).
INDEX_FILE = "ann.faiss"
META_FILE = "ann.json"
_FORMAT = "movierec-ann"
_FORMAT_VERSION = 1
# Vectors per k-means training point below which faiss warns (and clusters poorly).
_POINTS_PER_LIST = 39


def load_faiss() -> Any:
    """The faiss module, or None where it is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def fingerprint(parts: DotParts) -> str:
    """A digest of the item side of ``parts`` (what the index holds): another model, or the same model
    retrained, gives another fingerprint."""
    digest = hashlib.sha256()
    for array in (parts.items, parts.offsets):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(b"exact" if parts.exact else b"monotone")
    return digest.hexdigest()[:32]


def _item_side(parts: DotParts) -> tuple[np.ndarray, np.ndarray]:
    """(the columns kept: a bool mask over the item columns, the augmented item matrix float32)."""
    items = np.asarray(parts.items)
    keep = np.ptp(items, axis=0) != 0 if len(items) else np.ones(items.shape[1], bool)
    rows = np.hstack([items[:, keep].astype(np.float64), np.asarray(parts.offsets, np.float64)[:, None]])
    norms = np.einsum("ij,ij->i", rows, rows)
    lift = np.sqrt(np.maximum(norms.max(initial=0.0) - norms, 0.0))
    return keep, np.ascontiguousarray(np.hstack([rows, lift[:, None]]), dtype=np.float32)


@dataclass
class AnnIndex:
    """A calibrated IVF inner-product index over one set of `DotParts`.

    Attributes:
        index: the faiss index (item rows in item-index order).
        keep: bool mask over the parts' columns that the index holds.
        nprobe: lists probed per query, as calibrated.
        recall: recall@``k`` of the calibration at ``nprobe`` (tie-tolerant: a returned movie counts
            when its exact score reaches the k-th best exact score).
        fingerprint: `fingerprint` of the parts it was built from.
        n_items, nlist: movies held, inverted lists.
    """

    index: Any
    keep: np.ndarray
    nprobe: int
    recall: float
    fingerprint: str
    n_items: int
    nlist: int

    @classmethod
    def build(cls, parts: DotParts, *, seed: int = 0) -> AnnIndex:
        """Index ``parts``' items (``nprobe`` 1 until `calibrate` sets it).

        Raises:
            ImportError: faiss is not installed.
        """
        faiss = load_faiss()
        if faiss is None:
            raise ImportError("faiss is not installed (pip install 'movierec[ann]')")
        keep, rows = _item_side(parts)
        n_items, d = rows.shape
        nlist = int(max(1, min(round(np.sqrt(n_items)), n_items // _POINTS_PER_LIST)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(rows)
        index.add(rows)
        return cls(index, keep, 1, float("nan"), fingerprint(parts), n_items, nlist)

    def calibrate(self, recall_at: Callable[[int], float], target: float) -> None:
        """Set ``nprobe`` to the first of 1, 2, 4, ... (up to every list: exhaustive) whose recall,
        as ``recall_at(nprobe)`` measures it, reaches ``target``."""
        nprobe = 1
        while True:
            recall = recall_at(min(nprobe, self.nlist))
            if recall >= target or nprobe >= self.nlist:
                self.nprobe, self.recall = min(nprobe, self.nlist), recall
                break
            nprobe *= 2
        log.info("ann index: %d movies, %d lists, nprobe %d, recall@10 %.4f", self.n_items, self.nlist,
                 self.nprobe, self.recall)

    def queries(self, user_vectors: np.ndarray) -> np.ndarray:
        """Query rows for users' vectors (rows of ``DotParts.users``): the kept columns, 1 for the
        offset, 0 for the lift."""
        vectors = np.asarray(user_vectors)[:, self.keep]
        ones = np.ones((len(vectors), 1), dtype=np.float32)
        return np.ascontiguousarray(np.hstack([vectors, ones, np.zeros_like(ones)]), dtype=np.float32)

    def search(self, user_vectors: np.ndarray, m: int, nprobe: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """(item indices (n, m) int64, their inner products (n, m) float32 without the per-user terms),
        best first; index -1 and -inf where the probed lists ran out."""
        faiss = load_faiss()
        if len(user_vectors) == 0:
            return np.empty((0, m), dtype=np.int64), np.empty((0, m), dtype=np.float32)
        params = faiss.SearchParametersIVF(nprobe=int(nprobe or self.nprobe))
        inner, found = self.index.search(self.queries(user_vectors), int(m), params=params)
        inner[found < 0] = -np.inf
        return found.astype(np.int64), inner

    # -- files -----------------------------------------------------------------------------------
    def save(self, folder: Path, model: str) -> None:
        """Write `INDEX_FILE` then `META_FILE` into ``folder``, each atomically (a reader that finds
        the metadata finds the index it describes)."""
        faiss = load_faiss()
        data = faiss.serialize_index(self.index).tobytes()
        with atomic_file(folder / INDEX_FILE) as temp:
            temp.write_bytes(data)
        meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "model": model,
                "fingerprint": self.fingerprint, "index_sha256": hashlib.sha256(data).hexdigest(),
                "faiss": getattr(faiss, "__version__", "?"), "kind": "ivf-flat-ip", "nlist": self.nlist,
                "nprobe": self.nprobe, "recall_at_10": self.recall, "n_items": self.n_items,
                "keep": self.keep.astype(int).tolist()}
        with atomic_file(folder / META_FILE) as temp:
            temp.write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, model: str, parts: DotParts) -> AnnIndex | None:
        """The index saved in ``folder`` if it was built for exactly ``parts`` of ``model``; None
        (with a logged reason) when there is none, or it is stale, foreign or damaged."""
        meta_path, index_path = folder / META_FILE, folder / INDEX_FILE
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            data = index_path.read_bytes()
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("ann index in %s is unreadable (%s); rebuilding it", folder, exc)
            return None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT \
                or meta.get("format_version") != _FORMAT_VERSION:
            log.warning("ann index in %s has an unknown format; rebuilding it", folder)
            return None
        if meta.get("model") != model or meta.get("fingerprint") != fingerprint(parts):
            log.warning("ann index in %s was built for another model version; rebuilding it", folder)
            return None
        if meta.get("index_sha256") != hashlib.sha256(data).hexdigest():
            log.warning("ann index in %s is corrupt (checksum mismatch); rebuilding it", folder)
            return None
        faiss = load_faiss()
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        return cls(index, np.asarray(meta["keep"], dtype=bool), int(meta["nprobe"]),
                   float(meta["recall_at_10"]), str(meta["fingerprint"]), int(meta["n_items"]),
                   int(meta["nlist"]))


def exact_scores(parts: DotParts, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """Float64 ``x_u · y_i + o_i``: (len(users), n_items), or with ``items`` (len(users), m) for
    each user's own row of item indices (entries < 0 score -inf)."""
    x = np.asarray(parts.users[users], dtype=np.float64)
    if items is None:
        return x @ np.asarray(parts.items, dtype=np.float64).T + np.asarray(parts.offsets, np.float64)
    safe = np.maximum(items, 0)
    y = np.asarray(parts.items[safe], dtype=np.float64)
    out = np.einsum("nd,nmd->nm", x, y) + np.asarray(parts.offsets, np.float64)[safe]
    out[items < 0] = -np.inf
    return out
