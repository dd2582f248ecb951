"""Plots: real PNG files with the drawn content, atomic writes, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from movierec.errors import ConfigError
from movierec.plots import learning_curves, model_comparison, movie_map, project_2d

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_learning_curves_png(tmp_path: Path) -> None:
    history = [{"epoch": e, "train_loss": 1 / e, "valid_loss": 1.2 / e, "valid_rmse": 0.9 + 0.01 / e}
               for e in range(1, 6)]
    path = learning_curves(history, tmp_path / "curves.png", title="t")
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = pixels(path)
    # two panels (losses, metrics): wider than tall, and more than a blank canvas
    assert image.shape[1] > 1.5 * image.shape[0]
    assert image[..., :3].std() > 0.05
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left


def test_single_panel_when_only_metrics(tmp_path: Path) -> None:
    image = pixels(learning_curves([{"epoch": 1, "train_rmse": 1.0}, {"epoch": 2, "train_rmse": 0.9}],
                                   tmp_path / "one.png"))
    assert image.shape[1] < 1.5 * image.shape[0]


def test_model_comparison_png(tmp_path: Path) -> None:
    results = {"a": {"rmse": 0.9, "ndcg@10": 0.1}, "b": {"rmse": 0.95, "ndcg@10": 0.3, "x": 1.0}}
    path = model_comparison(results, tmp_path / "bars.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and pixels(path)[..., :3].std() > 0.05


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: learning_curves([], d / "x.png"), "no training history"),
        (lambda d: learning_curves([{"epoch": 1, "train_loss": 1.0}], d / "x.jpg"), "PNG"),
        (lambda d: model_comparison({}, d / "x.png"), "no results"),
        (lambda d: model_comparison({"a": {"x": 1.0}, "b": {"y": 2.0}}, d / "x.png"), "share no metric"),
    ],
)
def test_errors(tmp_path: Path, call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(tmp_path)  # type: ignore[operator]
    assert not any(tmp_path.iterdir())


def test_project_2d_recovers_the_dominant_axes() -> None:
    rng = np.random.default_rng(0)
    # spread 10 along x, 3 along y, ~0 along z: the projection keeps x then y (up to sign)
    vectors = np.column_stack([rng.normal(0, 10, 500), rng.normal(0, 3, 500), rng.normal(0, 0.01, 500)])
    coords = project_2d(vectors)
    assert coords.shape == (500, 2)
    assert abs(np.corrcoef(coords[:, 0], vectors[:, 0])[0, 1]) > 0.99
    assert abs(np.corrcoef(coords[:, 1], vectors[:, 1])[0, 1]) > 0.99
    np.testing.assert_array_equal(project_2d(vectors), coords)  # deterministic signs
    assert project_2d(np.ones((4, 3))).tolist() == [[0.0, 0.0]] * 4
    assert project_2d(vectors[:, :1]).shape == (500, 2)


def test_movie_map_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(200, 2))
    genres = [["Drama", "Comedy", "Action"][i % 3] for i in range(200)]
    path = movie_map(coords, genres, tmp_path / "map.png", labels={0: "Toy Story"})
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert pixels(path)[..., :3].std() > 0.05
    with pytest.raises(ConfigError, match="one genre per movie"):
        movie_map(coords, genres[:5], tmp_path / "bad.png")
    with pytest.raises(ConfigError, match=r"\(n, 2\)"):
        movie_map(coords[:, :1], genres, tmp_path / "bad.png")
