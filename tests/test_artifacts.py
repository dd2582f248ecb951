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
from movierec.errors import DataError, IntegrityError, NotFittedError, UnknownIdError
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


# -- integrity: tampered and forged folders ------------------------------------------------------
def reseal(folder: Path) -> None:
    """What a forger does after tampering: recompute the manifest's checksums and tensor list."""
    from safetensors import safe_open

    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = {name: sha256(folder / name) for name in manifest["files"]}
    dtypes = {"F64": "float64", "F32": "float32", "I64": "int64", "I32": "int32"}
    with safe_open(str(folder / "model.safetensors"), "numpy") as handle:
        manifest["tensors"] = {key: {"dtype": dtypes[handle.get_slice(key).get_dtype()],
                                     "shape": list(handle.get_slice(key).get_shape())}
                               for key in handle.keys()}  # noqa: SIM118
    (folder / "manifest.json").write_text(json.dumps(manifest))


def rewrite(folder: Path, **changes: np.ndarray) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors.update(changes)
    save_file(tensors, str(folder / "model.safetensors"))
    reseal(folder)


def tensors_of(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


class TestIntegrity:
    def test_manifest_lists_every_tensor_and_stores_answers(self, tmp_path: Path) -> None:
        model = fitted()
        path = save_model(model, tmp_path / "art")
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["format_version"] == 2
        assert manifest["tensors"] == {name: {"dtype": str(a.dtype), "shape": list(a.shape)}
                                       for name, a in sorted(tensors_of(path).items())}
        assert manifest["tensors"]["state.user_bias"] == {"dtype": "float64", "shape": [4]}
        answers = manifest["answers"]
        # the first and last user and movie are among the pairs; the numbers are the model's
        assert {1, 4} <= set(answers["users"]) and {10, 50} <= set(answers["items"])
        np.testing.assert_array_equal(answers["predict"], model.predict(answers["users"], answers["items"]))
        assert answers["top"]["0"]["items"] == model.recommend(1, k=5)["item"].tolist() == [50, 40]

    def test_truncated_tensors_refused(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) // 2])
        with pytest.raises(IntegrityError, match=r"model\.safetensors is corrupt \(checksum mismatch\)"):
            load_model(path)

    def test_truncated_tensors_resealed_refused(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        data = (path / "model.safetensors").read_bytes()
        (path / "model.safetensors").write_bytes(data[: len(data) - 8])
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["files"]["model.safetensors"] = sha256(path / "model.safetensors")
        (path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IntegrityError, match=r"cannot read model\.safetensors"):
            load_model(path)

    def test_forged_user_array_cut_short(self, tmp_path: Path) -> None:
        # the example forgery: a truncated user array, the manifest's checksums recomputed
        path = save_model(fitted(), tmp_path / "art")
        rewrite(path, **{"state.user_bias": tensors_of(path)["state.user_bias"][:3].copy()})
        with pytest.raises(IntegrityError, match=r"state\.user_bias has 3 rows, expected 4 \(one per user\)"):
            load_model(path)

    def test_forged_vocabulary_cut_short(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        rewrite(path, **{"vocab.users": np.array([1, 2, 3], dtype=np.int64)})
        with pytest.raises(IntegrityError, match="3 users and 5 movies, the manifest says 4 and 5"):
            load_model(path)

    def test_forged_rating_index_out_of_range(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        indices = tensors_of(path)["seen.indices"].copy()
        indices[0] = 7
        rewrite(path, **{"seen.indices": indices})
        with pytest.raises(IntegrityError, match=r"seen\.indices holds movie indices outside 0\.\.4"):
            load_model(path)

    def test_forged_nan_refused(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        bias = tensors_of(path)["state.item_bias"].copy()
        bias[2] = np.nan
        rewrite(path, **{"state.item_bias": bias})
        with pytest.raises(IntegrityError, match=r"state\.item_bias holds NaN"):
            load_model(path)

    def test_swapped_tensors_refused_even_resealed(self, tmp_path: Path) -> None:
        # two models of the same shapes: every structural check passes; the stored answers do not
        a = save_model(fitted(reg_user=0.0), tmp_path / "a")
        b = save_model(fitted(reg_user=50.0), tmp_path / "b")
        (a / "model.safetensors").write_bytes((b / "model.safetensors").read_bytes())
        with pytest.raises(IntegrityError, match="checksum mismatch"):
            load_model(a)
        reseal(a)
        with pytest.raises(IntegrityError, match="does not give the answers stored with it"):
            load_model(a)

    def test_one_value_changed_resealed_refused(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        bias = tensors_of(path)["state.item_bias"].copy()
        bias[4] += 0.5  # movie 50: in user 1's top list and among the stored pairs
        rewrite(path, **{"state.item_bias": bias})
        with pytest.raises(IntegrityError, match="does not give the answers stored with it"):
            load_model(path)

    @pytest.mark.parametrize(("change", "message"), [
        (lambda m: m["tensors"]["seen.data"].update(shape=[3]), r"tensor seen\.data is F32 \[10\]"),
        (lambda m: m["tensors"]["seen.data"].update(dtype="float64"), r"tensor seen\.data is F32"),
        (lambda m: m["tensors"].pop("state.item_bias"), "does not hold the tensors its manifest lists"),
        (lambda m: m.pop("tensors"), "the manifest lists no tensors"),
        (lambda m: m["files"].pop("model.safetensors"), r"lists no model\.safetensors"),
        (lambda m: m["files"].update({"../outside": "0" * 64}), "unknown file '../outside'"),
        (lambda m: m["shape"].update(ratings=9), "the manifest says 9"),
        (lambda m: m["answers"]["predict"].__setitem__(0, 1.0), "does not give the answers"),
        (lambda m: m.pop("answers"), "does not give the answers"),
        (lambda m: m["params"].update(reg_user=-1.0), "reg_user"),
    ])
    def test_manifest_that_does_not_match_refused(self, tmp_path: Path, change, message: str) -> None:
        path = save_model(fitted(), tmp_path / "art")
        manifest = json.loads((path / "manifest.json").read_text())
        change(manifest)
        (path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(DataError, match=message) as raised:
            load_model(path)
        assert "\n" not in str(raised.value)

    def test_unlisted_vocab_json_is_never_read(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        (path / "vocab.json").write_text(json.dumps({"users": ["x"], "items": ["y"]}))
        assert load_model(path).model.users_.ids.tolist() == [1, 2, 3, 4]

    def test_format_1_folder_loads_and_is_still_checked(self, tmp_path: Path) -> None:
        path = save_model(fitted(), tmp_path / "art")
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["format_version"] = 1
        del manifest["tensors"], manifest["answers"]
        (path / "manifest.json").write_text(json.dumps(manifest))
        assert load_model(path).model.predict([1], [40]) == pytest.approx(fitted().predict([1], [40]))
        # the structure is checked whatever the format
        rewrite(path, **{"state.item_bias": tensors_of(path)["state.item_bias"][:4].copy()})
        manifest = json.loads((path / "manifest.json").read_text())
        del manifest["tensors"]
        (path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IntegrityError, match=r"state\.item_bias has 4 rows, expected 5"):
            load_model(path)

    def test_cli_refuses_a_forged_folder_with_one_line_and_exit_2(self, tmp_path: Path) -> None:
        from typer.testing import CliRunner

        from movierec.cli import app

        path = save_model(fitted(), tmp_path / "art")
        rewrite(path, **{"state.user_bias": tensors_of(path)["state.user_bias"][:3].copy()})
        result = CliRunner().invoke(app, ["recommend", "--model-dir", str(path), "--user", "1"])
        assert result.exit_code == 2
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "state.user_bias has 3 rows" in lines[0]
        assert result.stdout == ""


def test_loading_never_unpickles() -> None:
    """No code path can unpickle: no pickle module, every torch.load restricted to weights, no
    np.load with allow_pickle."""
    import re

    source = Path(__file__).resolve().parents[1] / "src" / "movierec"
    for file in source.rglob("*.py"):
        text = file.read_text()
        assert not re.search(r"^\s*(import|from) (c?pickle|dill|joblib|shelve)\b", text, re.M), file
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (file, call)
        assert "allow_pickle=True" not in text, file
        assert "pd.read_pickle" not in text, file
