"""Model artifacts: a folder that describes itself, with no pickle anywhere.

Layout::

    manifest.json       format, model name, hyperparameters, versions, data, metrics, the sha256 of
                        every file, the dtype and shape of every tensor, and a few stored answers
    model.safetensors   learned arrays, vocabularies (integer ids), the training-ratings CSR
    vocab.json          user and movie ids, only when they are strings
    catalog.parquet     the movies (titles, years, genres) so recommendations print without the data

Loading needs nothing but the folder and never unpickles or runs anything from it: JSON, safetensors
and Parquet only. A missing file, a foreign folder or an unknown model name raises `DataError`; a
folder that does not hold what its manifest says, or what a model of its kind must hold, raises
`IntegrityError`, with one line saying which. Load checks, in order:

1. every file the manifest lists exists and has its sha256; only listed files are read;
2. the tensors are exactly the ones the manifest lists, with its dtypes and shapes;
3. structure, whatever the manifest says (so a manifest rewritten to match a tampered file does not
   help): vocabularies unique and as long as the manifest's shape; the training-ratings CSR well
   formed with indices in range and ratings on the scale; every per-user or per-movie array (known by
   name: ``user_factors``, ``item_bias``, ``weights``, ...) as long as its vocabulary and free of NaN
   and infinity, every index array in range;
4. the answers: a few predictions and two users' top lists, stored at save time, are recomputed and
   must agree (a file swapped from another model of the same shapes fails here).

Checks 1-3 stop truncation, altered bytes and swaps; a forger who also rewrites the manifest is
stopped by 3 and 4 where the result would break the model or change its answers. Checksums in the
folder itself cannot prove who wrote it: serve only folders from people you trust.

Format 2 added the tensor list and the stored answers; format 1 folders (movierec 0.1.0) still load,
with checks 1 and 3.

This layer sits above the models: a model only gives and takes its learned arrays (`_state`,
`_set_state`) and its hyperparameters (`get_params`); files, manifests and checksums are known here
alone, and the registry turns the manifest's model name back into a class.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from movierec._files import atomic_folder, recover
from movierec.data.dataset import Catalog, Vocabulary
from movierec.errors import DataError, IntegrityError, MovieRecError
from movierec.models import Recommender, get_model_class

__all__ = ["FORMAT", "Artifact", "load_model", "read_manifest", "save_model"]

FORMAT = "movierec-model"
FORMAT_VERSION = 2
_READABLE = (1, 2)
_TENSORS = "model.safetensors"
_STATE = "state."
_KNOWN_FILES = (_TENSORS, "vocab.json", "catalog.parquet")

# Learned arrays whose first axis is one row per user or per movie, by the last part of their name
# (``state.1.user_factors`` -> ``user_factors``): what every model of this package stores.
_USER_ROWS = frozenset({"user_bias", "user_factors", "user_samples", "user_implicit", "user", "last_day"})
_ITEM_ROWS = frozenset({"item_bias", "item_factors", "item_samples", "implicit_samples", "item_mean",
                        "implicit_factors", "item", "counts", "active", "popularity", "log_share",
                        "mean_rating", "first_day", "fallback"})
_ITEM_SQUARE = frozenset({"weights"})  # item x item
_ITEM_POINTERS = frozenset({"sim_indptr", "features.indptr"})  # CSR over items: n_items + 1
_ITEM_INDICES = frozenset({"sim_indices", "sim_rows", "sim_cols"})  # movie indices
# Stored answers are recomputed at load to this tolerance: far tighter than any two models differ,
# loose enough for another BLAS summing in another order.
_RTOL, _ATOL = 1e-4, 1e-6


@dataclass
class Artifact:
    """A loaded artifact: the model, the catalog saved with it (if any), and the manifest."""

    model: Recommender
    catalog: Catalog | None
    manifest: dict[str, Any] = field(default_factory=dict)


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _versions() -> dict[str, str]:
    import scipy

    from movierec import __version__

    return {"movierec": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


def _answers(model: Recommender) -> dict[str, Any]:
    """A few of ``model``'s answers to store and recompute at load: predictions for pairs that
    include the first and last user and movie (an array cut short fails on them), and the top 5 of
    the first and last user."""
    n_users, n_items = len(model.users_), len(model.items_)
    rng = np.random.default_rng(0)
    users = np.concatenate([[0, n_users - 1, n_users // 2], rng.integers(0, n_users, 3)])
    items = np.concatenate([[n_items - 1, 0, n_items // 2], rng.integers(0, n_items, 3)])
    raw_users, raw_items = model.users_.ids[users], model.items_.ids[items]
    top = {}
    for user in sorted({0, n_users - 1}):
        picks = model.recommend(model.users_.ids[user], k=5)
        top[str(user)] = {"items": picks["item"].tolist(), "scores": picks["score"].tolist()}
    return {"users": raw_users.tolist(), "items": raw_items.tolist(),
            "predict": model.predict(raw_users, raw_items).tolist(), "top": top}


def save_model(
    model: Recommender,
    path: str | Path,
    *,
    catalog: Catalog | None = None,
    metrics: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a fitted model to the folder ``path`` (replacing an earlier artifact there).

    The write is atomic and durable (`movierec._files.atomic_folder`): the folder is written beside
    ``path``, fsynced and swapped in, so ``path`` holds the earlier artifact or the new one, whole,
    even if the process is killed at any moment.

    Args:
        model: a fitted model.
        catalog: movies to store beside it, so `recommend` can print titles and filter by genre and
            year; by default the catalog the model was fitted with, if any.
        metrics: evaluation figures to record.
        data: what it was trained on (dataset name, split recipe, fingerprint, ...).
        history: per-epoch training figures.

    Raises:
        NotFittedError: if the model is not fitted.
        DataError: if ``path`` exists and is not a movierec artifact (nothing is overwritten).
    """
    model._require_fitted()
    catalog = catalog if catalog is not None else model.catalog_
    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir()) and not (
            path / "manifest.json").is_file())):
        raise DataError(f"{path} exists and is not a movierec model folder; not overwriting it")
    tensors: dict[str, np.ndarray] = {
        _STATE + k: np.ascontiguousarray(v) for k, v in model._state().items()
    }
    seen = model.seen_
    tensors["seen.indptr"] = seen.indptr.astype(np.int64)
    tensors["seen.indices"] = seen.indices.astype(np.int32)
    tensors["seen.data"] = seen.data.astype(np.float32)
    string_vocab = {}
    for key, vocab in (("users", model.users_), ("items", model.items_)):
        if vocab.is_integer:
            tensors[f"vocab.{key}"] = vocab.ids.astype(np.int64)
        else:
            string_vocab[key] = vocab.ids.tolist()
    answers = _answers(model)
    with atomic_folder(path) as temp:
        save_file(tensors, str(temp / _TENSORS))
        files = {_TENSORS: _digest(temp / _TENSORS)}
        if string_vocab:
            (temp / "vocab.json").write_text(json.dumps(string_vocab))
            files["vocab.json"] = _digest(temp / "vocab.json")
        if catalog is not None:
            catalog.frame.to_parquet(temp / "catalog.parquet", index=False)
            files["catalog.parquet"] = _digest(temp / "catalog.parquet")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model.name,
            "params": model.get_params(),
            "scale": list(model.scale_),
            "shape": {"users": len(model.users_), "items": len(model.items_),
                      "ratings": int(seen.nnz)},
            "data": data or {},
            "metrics": metrics or {},
            "history": history or [],
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
            "tensors": {name: {"dtype": str(array.dtype), "shape": list(array.shape)}
                        for name, array in sorted(tensors.items())},
            "answers": answers,
        }
        (temp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a manifest")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the artifact at ``path``.

    Raises:
        DataError: if ``path`` is not a movierec artifact folder, or of an unknown format version.
    """
    path = Path(path)
    if not path.exists():
        recover(path, clean=False)  # a save killed between the two renames of its fallback swap
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{path}: not a movierec model folder (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{manifest_path}: corrupt manifest (not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a movierec model folder (foreign manifest)")
    if manifest.get("format_version") not in _READABLE:
        raise DataError(
            f"{path}: artifact format {manifest.get('format_version')} is not supported "
            f"(this movierec reads formats {', '.join(map(str, _READABLE))}); retrain the model"
        )
    return manifest


def _check_files(path: Path, manifest: dict[str, Any]) -> dict[str, str]:
    files = manifest.get("files")
    if not isinstance(files, dict) or _TENSORS not in files:
        raise IntegrityError(f"{path}: the manifest lists no {_TENSORS}; refusing to load")
    for name, expected in files.items():
        if name not in _KNOWN_FILES:
            raise IntegrityError(f"{path}: the manifest lists an unknown file {name!r}; refusing to load")
        file = path / name
        if not file.is_file():
            raise DataError(f"{path}: {name} is missing")
        if _digest(file) != expected:
            raise IntegrityError(f"{path}: {name} is corrupt (checksum mismatch); refusing to load")
    return files


def _check_header(path: Path, manifest: dict[str, Any]) -> None:
    """The tensors' names, dtypes and shapes against the manifest's list (format 2), read from the
    safetensors header before any array is."""
    expected = manifest.get("tensors")
    if manifest["format_version"] >= 2 and not isinstance(expected, dict):
        raise IntegrityError(f"{path}: the manifest lists no tensors; refusing to load")
    try:
        with safe_open(str(path / _TENSORS), "numpy") as handle:
            found = {name: handle.get_slice(name) for name in handle.keys()}  # noqa: SIM118
            found = {name: (t.get_dtype(), list(t.get_shape())) for name, t in found.items()}
    except (SafetensorError, OSError) as exc:
        raise IntegrityError(f"{path}: cannot read {_TENSORS} ({exc})") from None
    if expected is None:
        return
    if set(found) != set(expected):
        odd = sorted(set(found) ^ set(expected))[:3]
        raise IntegrityError(f"{path}: {_TENSORS} does not hold the tensors its manifest lists "
                             f"(differs in {odd}); refusing to load")
    dtypes = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32",
              "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
    for name, (dtype, shape) in found.items():
        want = expected[name]
        if not isinstance(want, dict) or dtypes.get(str(want.get("dtype"))) != dtype \
                or want.get("shape") != shape:
            raise IntegrityError(f"{path}: tensor {name} is {dtype} {shape}, the manifest says "
                                 f"{want}; refusing to load")


def _check_structure(path: Path, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                     users: int, items: int) -> None:
    """What every artifact must hold whatever its manifest says: raise `IntegrityError` naming the
    first array that breaks it."""

    def fail(message: str) -> None:
        raise IntegrityError(f"{path}: {message}; refusing to load (truncated, altered or swapped?)")

    shape = manifest.get("shape") or {}
    if shape.get("users") != users or shape.get("items") != items:
        fail(f"the vocabularies hold {users} users and {items} movies, the manifest says "
             f"{shape.get('users')} and {shape.get('items')}")
    for name in ("seen.indptr", "seen.indices", "seen.data"):
        if name not in tensors or tensors[name].ndim != 1:
            fail(f"{name} is missing or not one-dimensional")
    indptr, indices, data = tensors["seen.indptr"], tensors["seen.indices"], tensors["seen.data"]
    if len(indptr) != users + 1:
        fail(f"seen.indptr has {len(indptr)} entries, expected {users + 1} (users + 1)")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices) \
            or len(indices) != len(data) or len(data) != shape.get("ratings"):
        fail(f"the training-ratings matrix is malformed ({len(indices)} indices, {len(data)} ratings, "
             f"the manifest says {shape.get('ratings')})")
    if len(indices) and (indices.min() < 0 or indices.max() >= items):
        fail(f"seen.indices holds movie indices outside 0..{items - 1}")
    low, high = (float(v) for v in manifest["scale"])
    if len(data) and (not np.all(np.isfinite(data)) or data.min() < low or data.max() > high):
        fail(f"seen.data holds ratings outside the scale {low:g}..{high:g}")
    for name, array in tensors.items():
        if not name.startswith(_STATE):
            continue
        key = name[len(_STATE):]
        prefix, _, last = key.rpartition(".")
        two = key.rsplit(".", 2)[-2:]
        sibling = f"{_STATE}{prefix}." if prefix else _STATE
        own = tensors.get(sibling + "items")  # a member fitted on some of the movies
        kept = tensors.get(sibling + "kept")  # a model that keeps weights for some movies only
        if (last == "items" and own is not None) or (last == "kept" and kept is not None):
            if array.ndim != 1 or (len(array) and (array.min() < 0 or array.max() >= items)):
                fail(f"{name} holds movie indices outside 0..{items - 1}")
            continue
        member_items = items if own is None else len(own)
        # a dense item-item model capped at its most-rated movies learns W over `kept` only
        kept = tensors.get(f"{_STATE}{prefix}.kept" if prefix else f"{_STATE}kept")
        if last == "kept":
            if array.ndim != 1 or (len(array) and (array.min() < 0 or array.max() >= member_items)):
                fail(f"{name} holds movie indices outside 0..{member_items - 1}")
            continue
        named = last in _USER_ROWS or last in _ITEM_ROWS or last in _ITEM_SQUARE
        if named and array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            fail(f"{name} holds NaN or infinite values")
        rows = array.shape[0] if array.ndim else None
        if last in _USER_ROWS and rows != users:
            fail(f"{name} has {rows} rows, expected {users} (one per user)")
        n = member_items
        if last in _ITEM_ROWS and rows != n:
            fail(f"{name} has {rows} rows, expected {n} (one per movie)")
        square = n if kept is None else len(kept)
        if last in _ITEM_SQUARE and array.shape != (square, square):
            fail(f"{name} has shape {array.shape}, expected ({square}, {square})")
        if (last in _ITEM_POINTERS or ".".join(two) in _ITEM_POINTERS) and rows != n + 1:
            fail(f"{name} has {rows} entries, expected {n + 1} (movies + 1)")
        if last in _ITEM_INDICES and len(array) and (array.min() < 0 or array.max() >= n):
            fail(f"{name} holds movie indices outside 0..{n - 1}")


def _check_answers(path: Path, model: Recommender, answers: Any) -> None:
    """Recompute the answers stored at save time (format 2)."""
    message = f"{path}: the model does not give the answers stored with it; refusing to load " \
              f"(a file swapped or altered?)"
    try:
        predicted = model.predict(np.asarray(answers["users"]), np.asarray(answers["items"]))
        if not np.allclose(predicted, answers["predict"], rtol=_RTOL, atol=_ATOL):
            raise IntegrityError(message)
        for user, top in answers["top"].items():
            picks = model.recommend(model.users_.ids[int(user)], k=5)
            if picks["item"].tolist() != top["items"] or not np.allclose(
                    picks["score"], top["scores"], rtol=_RTOL, atol=_ATOL):
                raise IntegrityError(message)
    except IntegrityError:
        raise
    except (MovieRecError, KeyError, IndexError, ValueError, TypeError):
        raise IntegrityError(message) from None


def load_model(path: str | Path) -> Artifact:
    """Load the artifact folder at ``path``, checking it first (see the module docstring).

    Raises:
        DataError: a missing file, a foreign folder, an unknown format version or model name.
        IntegrityError: (a `DataError`) a file or manifest that does not match, or a model that does
            not hold what its kind must, or does not give the answers stored with it.
    """
    path = Path(path)
    manifest = read_manifest(path)
    files = _check_files(path, manifest)
    try:
        cls = get_model_class(manifest["model"])
    except Exception as exc:
        raise DataError(f"{path}: {exc}") from None
    _check_header(path, manifest)
    try:
        tensors = load_file(str(path / _TENSORS))
    except (SafetensorError, OSError) as exc:
        raise IntegrityError(f"{path}: cannot read {_TENSORS} ({exc})") from None
    try:
        strings = json.loads((path / "vocab.json").read_text()) if "vocab.json" in files else {}
        if not isinstance(strings, dict):
            raise ValueError("vocab.json is not an object")

        def vocab(key: str, kind: str) -> Vocabulary:
            ids = tensors.get(f"vocab.{key}")
            return Vocabulary(ids if ids is not None else strings[key], kind)

        users, items = vocab("users", "user"), vocab("items", "movie")
        _check_structure(path, manifest, tensors, len(users), len(items))
        model = cls(**manifest["params"])
        model._check_params()
        model.users_, model.items_ = users, items
        model.scale_ = (float(manifest["scale"][0]), float(manifest["scale"][1]))
        model.seen_ = sp.csr_matrix(
            (tensors["seen.data"], tensors["seen.indices"], tensors["seen.indptr"]),
            shape=(len(model.users_), len(model.items_)),
        )
        model._set_state({k[len(_STATE):]: v for k, v in tensors.items() if k.startswith(_STATE)})
    except IntegrityError:
        raise
    except (MovieRecError, KeyError, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{path}: incomplete artifact ({exc}); refusing to load") from None
    catalog = None
    if "catalog.parquet" in files:
        try:
            catalog = Catalog(pd.read_parquet(path / "catalog.parquet"))
        except (MovieRecError, OSError, ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(f"{path}: catalog.parquet is unreadable ({exc}); refusing to load"
                                 ) from None
    model.catalog_ = catalog
    if manifest["format_version"] >= 2:
        _check_answers(path, model, manifest.get("answers"))
    return Artifact(model=model, catalog=catalog, manifest=manifest)
