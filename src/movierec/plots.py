"""Figures people would rather see than read, written as PNG files (matplotlib, Agg backend).

Each function takes plain data (histories, metric tables), draws one figure, writes it atomically and
returns the path. Nothing is shown on screen, so this works on servers and in tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from movierec._files import atomic_file
from movierec.errors import ConfigError

__all__ = ["learning_curves", "model_comparison", "movie_map", "project_2d"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: no display needed, none assumed
    import matplotlib.pyplot as plt

    return plt


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"plots are written as PNG; give a file name ending in .png, got {path}")
    with atomic_file(path) as temp:
        figure.savefig(temp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def learning_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Per-epoch training and validation curves: losses on the left, RMSE-like metrics on the right.

    Args:
        history: one record per epoch with ``epoch`` and any of ``train_loss``, ``valid_loss``,
            ``train_rmse``, ``valid_rmse`` (other numeric keys ending in ``_rmse``/``_accuracy`` too).
        path: the PNG to write.

    Raises:
        ConfigError: if the history is empty or the path is not a .png.
    """
    if not history:
        raise ConfigError("no training history to plot (the model trains in closed form or was not fit)")
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    losses = [k for k in ("train_loss", "valid_loss") if k in history[0]]
    metrics = sorted(k for k in history[0] if k.endswith(("_rmse", "_accuracy")))
    panels = [p for p in (losses, metrics) if p]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for axis, keys in zip(axes[0], panels, strict=True):
        for key in keys:
            axis.plot(epochs, [r.get(key) for r in history], marker="o", label=key.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(_integer_ticks())
        axis.set_ylabel("loss" if keys is losses else "metric")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title or "learning curves")
    figure.tight_layout()
    return _save(figure, path)


def model_comparison(
    results: Mapping[str, Mapping[str, float]],
    path: str | Path,
    metrics: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Grouped bars: one group per metric, one bar per model, values written on the bars.

    Args:
        results: model name -> {metric: value}.
        metrics: which metrics to draw (default: every metric all models share, in first-seen order).
        path: the PNG to write.

    Raises:
        ConfigError: if there is nothing to compare or the path is not a .png.
    """
    if not results:
        raise ConfigError("no results to plot")
    if metrics is None:
        shared = set.intersection(*(set(m) for m in results.values()))
        metrics = [m for m in next(iter(results.values())) if m in shared]
    if not metrics:
        raise ConfigError("the models share no metric to compare")
    plt = _pyplot()
    names = list(results)
    width = 0.8 / len(names)
    panel_width = max(2.6, 0.7 * len(names) + 1.2)
    figure, axes = plt.subplots(1, len(metrics), figsize=(panel_width * len(metrics) + 1.5, 3.8),
                                squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, metric in zip(axes[0], metrics, strict=True):
        for position, name in enumerate(names):
            value = results[name].get(metric, float("nan"))
            bar = axis.bar(position * width, value, width * 0.9, color=colours(position % 10), label=name)
            axis.bar_label(bar, fmt="%.3f", fontsize=7)
        axis.set_title(metric)
        axis.set_xticks([])
        axis.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle(title or "model comparison")
    figure.tight_layout()
    return _save(figure, path)


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """(n, d) vectors -> (n, 2) coordinates on their two principal axes (centred SVD).

    Deterministic: each axis' sign is fixed so that its largest-magnitude loading is positive.
    Fewer than two dimensions are padded with zeros.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    centred = vectors - vectors.mean(axis=0)
    if centred.shape[1] == 0 or not np.any(centred):
        return np.zeros((len(vectors), 2))
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    signs = np.sign(axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)])
    coords = centred @ (axes * signs[:, None]).T
    if coords.shape[1] < 2:
        coords = np.hstack([coords, np.zeros((len(coords), 2 - coords.shape[1]))])
    return coords


def movie_map(
    coords: np.ndarray,
    genres: Sequence[str],
    path: str | Path,
    labels: Mapping[int, str] | None = None,
    title: str = "",
) -> Path:
    """A scatter of movies in 2-D, coloured by (main) genre, with a few movies named.

    Args:
        coords: (n, 2) positions, e.g. from `project_2d` of a model's item vectors.
        genres: the colour group of each movie (e.g. its first genre); the eight most common groups
            get their own colour, the rest are drawn grey as "other".
        labels: row -> text for the movies to name on the map (keep it to a dozen or so).
        path: the PNG to write.

    Raises:
        ConfigError: if there are no movies, shapes disagree or the path is not a .png.
    """
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2 or not len(coords):
        raise ConfigError(f"movie_map needs (n, 2) coordinates for n >= 1 movies, got {coords.shape}")
    if len(genres) != len(coords):
        raise ConfigError(f"movie_map needs one genre per movie: {len(genres)} for {len(coords)}")
    plt = _pyplot()
    names, counts = np.unique(np.asarray(genres, dtype=object).astype(str), return_counts=True)
    common = [str(n) for n in names[np.argsort(-counts, kind="stable")][:8]]
    figure, axis = plt.subplots(figsize=(8, 6.5))
    group = np.asarray(genres, dtype=object).astype(str)
    other = ~np.isin(group, common)
    if other.any():
        axis.scatter(coords[other, 0], coords[other, 1], s=6, color="0.8", label="other")
    colours = plt.get_cmap("tab10")
    for position, name in enumerate(common):
        rows = group == name
        axis.scatter(coords[rows, 0], coords[rows, 1], s=8, alpha=0.75, color=colours(position),
                     label=name)
    for row, text in (labels or {}).items():
        axis.annotate(text, coords[row], fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("first principal axis")
    axis.set_ylabel("second principal axis")
    axis.legend(fontsize=8, markerscale=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axis.grid(alpha=0.2)
    figure.suptitle(title or "movies by their learned representation")
    figure.tight_layout()
    return _save(figure, path)
