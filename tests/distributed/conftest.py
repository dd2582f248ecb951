"""The small synthetic data set the distributed tests train on."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from movierec.cli import app


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ratings.parquet + movies.csv of a small synthetic set (300 users, 200 movies, with times)."""
    folder = tmp_path_factory.mktemp("synth")
    result = CliRunner().invoke(app, ["data", "synth", "--users", "300", "--items", "200",
                                      "--ratings", "12000", "--seed", "3", "--out", str(folder),
                                      "--json"])
    assert result.exit_code == 0, result.output
    return folder
