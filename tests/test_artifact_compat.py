"""Model folders written by earlier movierec versions keep loading and answer as they did.

`tests/fixtures/artifacts-0.1.0/` holds one folder per registered model, saved by movierec 0.1.0 (its
README says how); `expected.json` is what each model answered before it was saved. A change that moves
or renames model code, or changes what a model stores, must still read them, or fail this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from movierec.artifacts import load_model
from movierec.models.registry import MODELS

FIXTURES = Path(__file__).parent / "fixtures" / "artifacts-0.1.0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())


def test_every_registered_model_has_a_saved_folder():
    assert sorted(EXPECTED) == sorted(MODELS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_old_folder_loads_and_answers_as_before(name):
    expected = EXPECTED[name]
    artifact = load_model(FIXTURES / name)
    model = artifact.model
    assert model.name == name
    picks = model.recommend(expected["user"], k=5, explain=2)
    assert picks["item"].tolist() == expected["items"]
    np.testing.assert_allclose(picks["score"], expected["scores"], rtol=1e-5, atol=1e-6)
    assert [[int(x) for x in why] for why in picks["because"]] == expected["because"]
    fold_in = model.recommend_for_ratings([(1, 5.0), (2, 3.5), (7, 4.0)], k=5)
    assert fold_in["item"].tolist() == expected["fold_in_items"]
    np.testing.assert_allclose(fold_in["score"], expected["fold_in_scores"], rtol=1e-5, atol=1e-6)
    predicted = model.predict(np.array([3, 5, 9]), np.array([4, 8, 12]))
    np.testing.assert_allclose(predicted, expected["predict"], rtol=1e-5, atol=1e-6)
