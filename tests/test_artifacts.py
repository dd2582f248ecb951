"""Model artifacts: save -> load round trips, self-describing manifests, and every way a folder can be
wrong (corrupt, missing, foreign, not JSON) refused with a `DataError` that says which."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from movierec.artifacts import FORMAT, load_model, save_model
from movierec.data.dataset import Catalog, Ratings
from movierec.errors import DataError, NotFittedError, UnknownIdError
from movierec.models.rating.bias import BiasRecommender


def int_ratings() -> Ratings:
    # users 1..4, movies 10..50, whole stars: scale (1, 5)
    return Ratings.from_arrays(
        [1, 1, 1, 2, 2, 3, 3, 3, 4, 4],
        [10, 20, 30, 10, 40, 20, 30, 50, 40, 50],
        [5, 3, 4, 4, 2, 1, 5, 4, 3, 5],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        scale=(1, 5),
    )


def string_ratings() -> Ratings:
    return Ratings.from_arrays(
        ["alice", "alice", "bob", "bob", "carol", "carol", "carol"],
        ["m1", "m2", "m1", "m3", "m2", "m3", "m4"],
        [5.0, 3.0, 4.0, 2.0, 1.0, 5.0, 4.0],
        scale=(1, 5),
    )


def catalog() -> Catalog:
    return Catalog(
        pd.DataFrame(
            {
                "item": [10, 20, 30, 40, 50],
                "title": ["Heat", "Alien", "Fargo", "Up", "Brazil"],
                "year": pd.array([1995, 1979, None, 2009, 1985], dtype="Int64"),
                "genres": [["Action", "Crime"], ["Horror", "Sci-Fi"], [], ["Animation"], ["Sci-Fi"]],
            }
        )
    )


def fitted(ratings: Ratings | None = None, **params: float) -> BiasRecommender:
    # reg 1/1 keeps the biases far from 0 so different params give visibly different numbers
    model = BiasRecommender(**{"reg_user": 1.0, "reg_item": 1.0, "epochs": 5, **params})
    return model.fit(ratings if ratings is not None else int_ratings())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- round trips -------------------------------------------------------------------------------
class TestRoundTrip:
    def test_predictions_and_recommendations_identical(self, tmp_path: Path) -> None:
        model = fitted()
        save_model(model, tmp_path / "art")
        loaded = load_model(tmp_path / "art").model

        assert type(loaded) is BiasRecommender
        assert loaded.is_fitted
        users = np.array([1, 1, 2, 3, 4, 4, 99, 1, 99])
        items = np.array([10, 40, 20, 40, 10, 30, 10, 77, 77])  # 99 and 77: unknown (fallback)
        np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))
        np.testing.assert_array_equal(loaded.known_pairs(users, items), model.known_pairs(users, items))
        for user in (1, 2, 3, 4):
            pd.testing.assert_frame_equal(loaded.recommend(user, k=3), model.recommend(user, k=3))
            pd.testing.assert_frame_equal(loaded.user_history(user), model.user_history(user))
        pd.testing.assert_frame_equal(
            loaded.recommend_batch([4, 1, 3], k=10), model.recommend_batch([4, 1, 3], k=10)
        )
        pd.testing.assert_frame_equal(
            loaded.recommend_for_ratings([(10, 5.0), (20, 1.0)], k=5),
            model.recommend_for_ratings([(10, 5.0), (20, 1.0)], k=5),
        )
        assert loaded.global_mean_ == model.global_mean_
        np.testing.assert_array_equal(loaded.user_bias_, model.user_bias_)
        np.testing.assert_array_equal(loaded.item_bias_, model.item_bias_)
        assert loaded.scale_ == (1.0, 5.0)
        assert (loaded.seen_ != model.seen_).nnz == 0
        assert loaded.users_ == model.users_ and loaded.items_ == model.items_
        assert loaded.users_.is_integer and loaded.items_.is_integer

    def test_recommendations_still_exclude_seen_after_load(self, tmp_path: Path) -> None:
        loaded = load_model(save_model(fitted(), tmp_path / "art")).model
        # user 1 rated 10, 20, 30 in training: only 40 and 50 are left
        assert sorted(loaded.recommend(1, k=10)["item"].tolist()) == [40, 50]

    def test_manifest_records_params_scale_data_metrics_and_checksums(self, tmp_path: Path) -> None:
        model = fitted(reg_user=2.5, reg_item=0.5, epochs=3)
        data = {"dataset": "hand-made", "split": "none", "fingerprint": int_ratings().fingerprint()}
        metrics = {"rmse": np.float64(0.912), "ndcg@10": 0.25}
        history = [{"epoch": 1, "train_rmse": 1.0}, {"epoch": 2, "train_rmse": 0.9}]
        path = save_model(model, tmp_path / "art", metrics=metrics, data=data, history=history)
        artifact = load_model(path)
        manifest = artifact.manifest

        assert manifest["format"] == FORMAT
        assert manifest["model"] == "bias"
        assert manifest["params"] == {"reg_user": 2.5, "reg_item": 0.5, "epochs": 3}
        assert manifest["scale"] == [1.0, 5.0]
        assert manifest["shape"] == {"users": 4, "items": 5, "ratings": 10}
        assert manifest["data"] == data
        assert manifest["metrics"] == {"rmse": 0.912, "ndcg@10": 0.25}
        assert manifest["history"] == history
        assert manifest["versions"]["movierec"] == "0.1.0"
        # integer ids need no vocab.json; every file listed is checksummed
        assert set(manifest["files"]) == {"model.safetensors"}
        assert manifest["files"]["model.safetensors"] == sha256(path / "model.safetensors")
        assert not (path / "vocab.json").exists()
        # the loaded model is rebuilt from the manifest's hyperparameters
        assert artifact.model.get_params() == {"reg_user": 2.5, "reg_item": 0.5, "epochs": 3}
        assert artifact.catalog is None
        # the manifest on disk is plain JSON, the same as what load returns
        assert json.loads((path / "manifest.json").read_text()) == manifest

    def test_string_ids_round_trip_through_vocab_json(self, tmp_path: Path) -> None:
        model = fitted(string_ratings())
        path = save_model(model, tmp_path / "art")
        assert json.loads((path / "vocab.json").read_text()) == {
            "users": ["alice", "bob", "carol"],
            "items": ["m1", "m2", "m3", "m4"],
        }
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["files"]["vocab.json"] == sha256(path / "vocab.json")

        loaded = load_model(path).model
        assert loaded.users_.ids.tolist() == ["alice", "bob", "carol"]
        assert loaded.items_.ids.tolist() == ["m1", "m2", "m3", "m4"]
        assert not loaded.users_.is_integer
        users = ["alice", "bob", "carol", "dave"]
        items = ["m3", "m4", "m1", "m2"]
        np.testing.assert_array_equal(loaded.predict(users, items), model.predict(users, items))
        # alice rated m1, m2: her list is m3, m4 in the same order and scores as before saving
        recs = loaded.recommend("alice", k=10)
        assert sorted(recs["item"].tolist()) == ["m3", "m4"]
        pd.testing.assert_frame_equal(recs, model.recommend("alice", k=10))
        pd.testing.assert_frame_equal(
            loaded.recommend_for_ratings([("m4", 5.0)], k=2),
            model.recommend_for_ratings([("m4", 5.0)], k=2),
        )
        with pytest.raises(UnknownIdError):
            loaded.recommend("zoe")

    def test_catalog_saved_and_restored(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art", catalog=catalog())
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["files"]["catalog.parquet"] == sha256(path / "catalog.parquet")

        restored = load_model(path).catalog
        assert restored is not None
        assert len(restored) == 5
        assert restored.frame["item"].tolist() == [10, 20, 30, 40, 50]
        assert restored.frame["title"].tolist() == ["Heat", "Alien", "Fargo", "Up", "Brazil"]
        assert restored.get(10) == {"item": 10, "title": "Heat", "year": 1995,
                                    "genres": ["Action", "Crime"]}
        assert restored.get(30)["year"] is None
        assert restored.get(30)["genres"] == []
        assert restored.genres == ["Action", "Animation", "Crime", "Horror", "Sci-Fi"]


# -- refusing bad folders ----------------------------------------------------------------------
class TestLoadErrors:
    def test_corrupt_tensors_rejected(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        data = bytearray((path / "model.safetensors").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (path / "model.safetensors").write_bytes(bytes(data))
        with pytest.raises(DataError, match=r"model\.safetensors.*corrupt"):
            load_model(path)

    def test_corrupt_vocab_rejected(self, tmp_path: Path) -> None:
        path = save_model(fitted(string_ratings()), tmp_path / "art")
        (path / "vocab.json").write_text(json.dumps({"users": ["x", "y", "z"],
                                                     "items": ["m1", "m2", "m3", "m4"]}))
        with pytest.raises(DataError, match=r"vocab\.json.*corrupt"):
            load_model(path)

    @pytest.mark.parametrize("name", ["model.safetensors", "catalog.parquet"])
    def test_missing_file_rejected(self, tmp_path: Path, name: str) -> None:
        path = save_model(fitted(), tmp_path / "art", catalog=catalog())
        (path / name).unlink()
        with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')} is missing"):
            load_model(path)

    def test_folder_without_manifest(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(DataError, match=r"no manifest\.json"):
            load_model(tmp_path)

    def test_folder_that_does_not_exist(self, tmp_path: Path) -> None:
        with pytest.raises(DataError, match="not a movierec model folder"):
            load_model(tmp_path / "nowhere")

    def test_foreign_manifest(self, tmp_path: Path) -> None:
        (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
        with pytest.raises(DataError, match="foreign manifest"):
            load_model(tmp_path)

    def test_manifest_that_is_a_json_list(self, tmp_path: Path) -> None:
        (tmp_path / "manifest.json").write_text("[1, 2]")
        with pytest.raises(DataError, match="foreign manifest"):
            load_model(tmp_path)

    def test_non_json_manifest(self, tmp_path: Path) -> None:
        (tmp_path / "manifest.json").write_text("{this is not json")
        with pytest.raises(DataError, match="not JSON"):
            load_model(tmp_path)

    def test_binary_manifest(self, tmp_path: Path) -> None:
        (tmp_path / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(DataError, match="corrupt manifest"):
            load_model(tmp_path)

    def test_future_format_version(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["format_version"] = 99
        (path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(DataError, match="format 99 is not supported"):
            load_model(path)

    def test_unknown_model_name(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["model"] = "no-such-model"
        (path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(DataError, match="unknown model 'no-such-model'"):
            load_model(path)


# -- saving ------------------------------------------------------------------------------------
class TestSave:
    def test_refuses_a_non_artifact_folder_and_leaves_it_untouched(self, tmp_path: Path) -> None:
        target = tmp_path / "precious"
        (target / "sub").mkdir(parents=True)
        (target / "thesis.txt").write_text("years of work")
        (target / "sub" / "data.bin").write_bytes(b"\x00\x01\x02")
        before = tree(target)
        with pytest.raises(DataError, match="not a movierec model folder"):
            save_model(fitted(), target)
        assert tree(target) == before
        # nothing left behind beside it either (no temporary folders)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]

    def test_refuses_a_file(self, tmp_path: Path) -> None:
        target = tmp_path / "model"
        target.write_text("a file")
        with pytest.raises(DataError):
            save_model(fitted(), target)
        assert target.read_text() == "a file"

    def test_existing_empty_folder_is_fine(self, tmp_path: Path) -> None:
        target = tmp_path / "empty"
        target.mkdir()
        save_model(fitted(), target)
        assert load_model(target).manifest["model"] == "bias"

    def test_creates_missing_parents(self, tmp_path: Path) -> None:
        target = tmp_path / "a" / "b" / "art"
        save_model(fitted(), target)
        assert (target / "manifest.json").is_file()

    def test_replaces_an_earlier_artifact(self, tmp_path: Path) -> None:
        target = tmp_path / "art"
        first = fitted(string_ratings())
        save_model(first, target, catalog=None, metrics={"rmse": 1.5})
        assert (target / "vocab.json").is_file()

        second = fitted(reg_user=7.0)
        save_model(second, target, catalog=catalog(), metrics={"rmse": 0.9})
        artifact = load_model(target)
        # nothing of the first artifact survives: its string vocabulary is gone
        assert not (target / "vocab.json").exists()
        assert sorted(p.name for p in target.iterdir()) == [
            "catalog.parquet", "manifest.json", "model.safetensors"]
        assert artifact.manifest["metrics"] == {"rmse": 0.9}
        assert artifact.manifest["params"]["reg_user"] == 7.0
        assert artifact.model.users_.ids.tolist() == [1, 2, 3, 4]
        np.testing.assert_array_equal(artifact.model.predict([1, 4], [40, 10]),
                                      second.predict([1, 4], [40, 10]))
        assert artifact.catalog is not None and len(artifact.catalog) == 5
        # no temporary or backup folders left beside it
        assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]

    def test_unfitted_model_refused(self, tmp_path: Path) -> None:
        with pytest.raises(NotFittedError, match="not fitted"):
            save_model(BiasRecommender(), tmp_path / "art")
        assert not (tmp_path / "art").exists()

    def test_different_params_give_different_saved_predictions(self, tmp_path: Path) -> None:
        # guards the round-trip tests against a load that ignores the saved state
        save_model(fitted(reg_user=0.0, reg_item=0.0), tmp_path / "a")
        save_model(fitted(reg_user=50.0, reg_item=50.0), tmp_path / "b")
        a = load_model(tmp_path / "a").model.predict([1, 3], [40, 10])
        b = load_model(tmp_path / "b").model.predict([1, 3], [40, 10])
        assert not np.allclose(a, b)
