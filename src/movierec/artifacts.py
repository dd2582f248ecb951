"""Model artifacts: a folder that describes itself, with no pickle anywhere.

Layout::

    manifest.json       format, model name, hyperparameters, versions, data, metrics, file checksums
    model.safetensors   learned arrays, vocabularies (integer ids), the training-ratings CSR
    vocab.json          user and movie ids, only when they are strings
    catalog.parquet     the movies (titles, years, genres) so recommendations print without the data

Loading needs nothing but the folder. A missing file, a checksum mismatch, a foreign folder or an
unknown model name raises `DataError` with one line saying which.

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
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from movierec._files import atomic_folder
from movierec.data.dataset import Catalog, Vocabulary
from movierec.errors import DataError
from movierec.models import Recommender, get_model_class

__all__ = ["FORMAT", "Artifact", "load_model", "save_model"]

FORMAT = "movierec-model"
FORMAT_VERSION = 1
_TENSORS = "model.safetensors"
_STATE = "state."


@dataclass
class Artifact:
    """A loaded artifact: the model, the catalog saved with it (if any), and the manifest."""

    model: Recommender
    catalog: Catalog | None
    manifest: dict[str, Any] = field(default_factory=dict)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    import scipy

    from movierec import __version__

    return {"movierec": __version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


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
    with atomic_folder(path) as temp:
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
        DataError: if ``path`` is not a movierec artifact folder.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{path}: not a movierec model folder (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise DataError(f"{manifest_path}: corrupt manifest (not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a movierec model folder (foreign manifest)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: artifact format {manifest.get('format_version')} is not supported "
            f"(this movierec reads format {FORMAT_VERSION}); retrain the model"
        )
    return manifest


def load_model(path: str | Path) -> Artifact:
    """Load the artifact folder at ``path``.

    Raises:
        DataError: missing or corrupt files, a foreign folder, an unknown model name.
    """
    path = Path(path)
    manifest = read_manifest(path)
    for name, expected in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise DataError(f"{path}: {name} is missing")
        if _digest(file) != expected:
            raise DataError(f"{path}: {name} is corrupt (checksum mismatch)")
    try:
        cls = get_model_class(manifest["model"])
    except Exception as exc:
        raise DataError(f"{path}: {exc}") from None
    try:
        tensors = load_file(str(path / _TENSORS))
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{path}: cannot read {_TENSORS} ({exc})") from None
    strings = json.loads((path / "vocab.json").read_text()) if (path / "vocab.json").is_file() \
        else {}
    model = cls(**manifest["params"])

    def vocab(key: str, kind: str) -> Vocabulary:
        ids = tensors.get(f"vocab.{key}")
        return Vocabulary(ids if ids is not None else strings[key], kind)

    try:
        model.users_ = vocab("users", "user")
        model.items_ = vocab("items", "movie")
        model.scale_ = (float(manifest["scale"][0]), float(manifest["scale"][1]))
        model.seen_ = sp.csr_matrix(
            (tensors["seen.data"], tensors["seen.indices"], tensors["seen.indptr"]),
            shape=(len(model.users_), len(model.items_)),
        )
        model._set_state({k[len(_STATE):]: v for k, v in tensors.items() if k.startswith(_STATE)})
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: incomplete artifact ({exc})") from None
    catalog = None
    if (path / "catalog.parquet").is_file():
        catalog = Catalog(pd.read_parquet(path / "catalog.parquet"))
    model.catalog_ = catalog
    return Artifact(model=model, catalog=catalog, manifest=manifest)
