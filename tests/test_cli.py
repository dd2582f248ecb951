"""The `movierec` command end to end, on the mirrored MovieLens archives and on a user's own file.

Most runs go through `typer.testing.CliRunner` (stdout and stderr captured apart); a few run the
installed console script in a subprocess where the real process boundary matters (exit status, what
reaches stdout vs stderr).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from movierec import __version__
from movierec.artifacts import load_model
from movierec.cli import app
from movierec.data.dataset import Dataset
from movierec.data.registry import VARIANTS
from movierec.data.split import make_split

ROOT = Path(__file__).resolve().parents[1]
# the installed console script beside this interpreter (the venv's), else the module itself
_SCRIPT = Path(sys.executable).with_name("movierec")
COMMAND = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "movierec.cli"]
FOLDS = ["u1", "u2", "u3", "u4", "u5", "ua", "ub"]


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def ok_json(*args: str | Path) -> Any:
    return json.loads(ok(*args, "--json").stdout)


def assert_bad_input(result: Result, *fragments: str) -> str:
    """Exit code 2, nothing on stdout, exactly one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- shared, expensive state -------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache(ml100k: Dataset, shared_cache: Path) -> Path:
    """A data home that already holds ml-100k (parsed once by the session fixture)."""
    return shared_cache


@pytest.fixture(scope="module")
def trained(cache: Path, mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """`train ml-100k --model bias --split u1 --out DIR --json`, run once: (DIR, its JSON)."""
    out = tmp_path_factory.mktemp("cli-train") / "bias-u1"
    result = run("train", "ml-100k", "--model", "bias", "--split", "u1", "--out", out,
                 "--data-dir", cache, "--mirror", mirror, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def user1_train(ml100k: Dataset) -> dict[int, float]:
    """User 1's ratings in the u1 fold's train part: movie -> rating."""
    train = make_split(ml100k, "u1").train
    mine = train.user_ids == 1
    return dict(zip(train.item_ids[mine].tolist(), train.rating[mine].tolist(), strict=True))


# -- top level ---------------------------------------------------------------------------------
def test_version() -> None:
    result = ok("--version")
    assert result.stdout.strip() == f"movierec {__version__}"


@pytest.mark.parametrize(
    "command",
    [[], ["data"], ["data", "list"], ["data", "fetch"], ["data", "info"], ["data", "synth"],
     ["train"], ["evaluate"], ["recommend"], ["models"], ["similar"], ["map"], ["tune"], ["compare"]],
    ids=lambda c: " ".join(c) or "root",
)
def test_help(command: list[str]) -> None:
    result = ok(*command, "--help")
    assert "Usage:" in result.stdout
    # every command documents --json, the machine-readable contract; groups list their commands
    if command in ([], ["data"]):
        assert "Commands" in result.stdout
    else:
        assert "--json" in result.stdout


def test_models_lists_bias_with_defaults() -> None:
    rows = ok_json("models")
    by_name = {row["name"]: row for row in rows}
    assert "bias" in by_name
    assert by_name["bias"]["params"] == {"reg_user": 15.0, "reg_item": 10.0, "epochs": 10}
    assert by_name["bias"]["predicts_ratings"] is True
    assert by_name["bias"]["summary"]


# -- data --------------------------------------------------------------------------------------
def test_data_list_fetch_info_in_a_fresh_cache(mirror: Path) -> None:
    rows = ok_json("data", "list")
    assert len(rows) == 8
    assert [r["name"] for r in rows] == list(VARIANTS)
    assert {"ml-100k", "ml-1m", "ml-latest-small", "ml-25m"} <= {r["name"] for r in rows}
    assert not any(r["cached"] for r in rows)  # the autouse fixture gives every test an empty home
    small = next(r for r in rows if r["name"] == "ml-latest-small")
    assert small["ratings"] == 100_836 and small["users"] == 610
    assert small["scale"] == [0.5, 5.0]

    fetched = ok_json("data", "fetch", "ml-latest-small")
    home = Path(os.environ["MOVIEREC_DATA"])
    assert fetched["ratings"] == 100_836
    assert fetched["users"] == 610
    assert Path(fetched["archive"]).is_file()
    assert Path(fetched["archive"]).is_relative_to(home)
    assert Path(fetched["cache"]) == home / "ml-latest-small"

    info = ok_json("data", "info", "ml-latest-small")
    assert info["name"] == "ml-latest-small"
    assert info["ratings"] == 100_836
    assert info["users"] == 610
    assert info["movies"] == 9_724  # movies with at least one rating
    assert info["catalog_movies"] == 9_742  # movies.csv
    assert info["scale"] == [0.5, 5.0]
    assert info["canonical_folds"] == []
    assert info["demographics"] is False
    assert sum(info["rating_counts"].values()) == 100_836
    assert "Drama" in info["genres"]

    cached = {r["name"]: r["cached"] for r in ok_json("data", "list")}
    assert cached["ml-latest-small"] is True
    assert not any(v for k, v in cached.items() if k != "ml-latest-small")


def test_data_info_ml100k_shows_canonical_folds(cache: Path) -> None:
    info = ok_json("data", "info", "ml-100k", "--data-dir", cache)
    assert info["ratings"] == 100_000
    assert info["users"] == 943
    assert info["movies"] == 1_682
    assert info["scale"] == [1.0, 5.0]
    assert info["canonical_folds"] == FOLDS
    assert info["demographics"] is True

    text = run("data", "info", "ml-100k", "--data-dir", cache, env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if "canonical_folds" in ln)
    assert "u1, u2, u3, u4, u5, ua, ub" in line
    assert "100,000" in text.stdout


# -- train / evaluate --------------------------------------------------------------------------
def test_train_writes_an_artifact(trained: tuple[Path, Any]) -> None:
    out, payload = trained
    assert payload["model"] == "bias"
    assert payload["dataset"] == "ml-100k"
    assert payload["split"] == "u1"
    assert payload["params"] == {"reg_user": 15.0, "reg_item": 10.0, "epochs": 10}
    assert Path(payload["artifact"]) == out
    metrics = payload["metrics"]
    assert 0.93 <= metrics["rmse"] <= 0.96
    assert 0.70 <= metrics["mae"] <= metrics["rmse"]
    assert 0.0 < metrics["ndcg@10"] < 1.0

    artifact = load_model(out)
    manifest = artifact.manifest
    assert manifest["model"] == "bias"
    assert manifest["data"]["dataset"] == "ml-100k"
    assert manifest["data"]["split"] == "u1"
    assert manifest["data"]["train_ratings"] == 80_000
    assert manifest["metrics"] == pytest.approx(metrics)
    assert manifest["shape"]["ratings"] == 80_000
    assert artifact.catalog is not None and len(artifact.catalog) == 1_682
    assert artifact.catalog.get(1)["title"] == "Toy Story"


def test_evaluate_u1(cache: Path, trained: tuple[Path, Any], tmp_path: Path) -> None:
    per_user = tmp_path / "per-user.csv"
    report = ok_json("evaluate", "ml-100k", "--model", "bias", "--split", "u1", "--data-dir", cache,
                     "--per-user", per_user)
    metrics = report["metrics"]
    assert 0.93 <= metrics["rmse"] <= 0.96
    assert 0.0 < metrics["ndcg@10"] < 1.0
    assert 0.0 < metrics["coverage@10"] <= 1.0
    # same model, same split, deterministic fit: train reported the same figures
    assert metrics == pytest.approx(trained[1]["metrics"])
    info = report["info"]
    assert info["split"] == "u1"
    assert info["k"] == 10
    assert info["train_ratings"] == 80_000
    assert info["test_ratings"] == 20_000
    assert info["users_unserved"] == 0  # every u1 test user has train ratings
    assert report["timings"]["fit_s"] >= 0
    rows = per_user.read_text().splitlines()
    assert rows[0].split(",")[:2] == ["user", "n_test"]
    assert len(rows) - 1 == info["users_evaluated"]


def test_text_output_of_train_and_evaluate(cache: Path, tmp_path: Path) -> None:
    wide = {"COLUMNS": "200"}
    result = run("evaluate", "ml-100k", "--split", "u1", "--data-dir", cache, env=wide)
    assert result.exit_code == 0, result.stderr
    rmse_row = next(ln for ln in result.stdout.splitlines() if " rmse " in ln)
    assert 0.93 <= float(rmse_row.split()[-2]) <= 0.96
    assert "459 users evaluated" in result.stdout  # the users of u1.test
    result = run("train", "ml-100k", "--split", "u1", "--out", tmp_path / "m", "--data-dir", cache,
                 env=wide)
    assert result.exit_code == 0, result.stderr
    assert "trained bias on 80,000 ratings of ml-100k" in result.stdout
    assert f"saved to {tmp_path / 'm'}" in result.stdout
    for args in (["models"], ["data", "list"]):
        result = run(*args, env=wide)
        assert result.exit_code == 0, result.stderr
        assert ("bias" if args == ["models"] else "ml-latest-small") in result.stdout


def test_evaluate_k_changes_the_keys(cache: Path) -> None:
    metrics = ok_json("evaluate", "ml-100k", "--split", "u1", "--k", "5", "--data-dir", cache)["metrics"]
    assert "ndcg@5" in metrics and "ndcg@10" not in metrics


def test_param_changes_the_result(cache: Path, trained: tuple[Path, Any], tmp_path: Path) -> None:
    default = trained[1]["metrics"]["rmse"]
    changed = ok_json("evaluate", "ml-100k", "--model", "bias", "--split", "u1",
                      "--param", "reg_user=25", "--data-dir", cache)["metrics"]["rmse"]
    assert changed != pytest.approx(default, abs=1e-6)

    payload = ok_json("train", "ml-100k", "--split", "u1", "--param", "reg_user=25",
                      "--param", "epochs=3", "--out", tmp_path / "art", "--data-dir", cache)
    assert payload["params"] == {"reg_user": 25.0, "reg_item": 10.0, "epochs": 3}
    assert load_model(tmp_path / "art").manifest["params"] == payload["params"]


# -- recommend ---------------------------------------------------------------------------------
def test_recommend_known_user(trained: tuple[Path, Any], user1_train: dict[int, float]) -> None:
    out, _ = trained
    payload = ok_json("recommend", "--model-dir", out, "--user", "1")
    assert payload["user"] == "1"
    assert payload["model"] == "bias"
    recs = payload["recommendations"]
    assert len(recs) == 10
    for rec in recs:
        assert isinstance(rec["title"], str) and rec["title"]
        assert rec["year"] is None or 1900 <= rec["year"] <= 2000
        assert isinstance(rec["genres"], list)
        assert rec["item"] not in user1_train
    assert any(rec["genres"] for rec in recs)
    scores = [rec["score"] for rec in recs]
    assert scores == sorted(scores, reverse=True)
    # the CLI shows what the library recommends
    expected = load_model(out).model.recommend(1, k=10)
    assert [rec["item"] for rec in recs] == expected["item"].tolist()
    assert scores == pytest.approx(expected["score"].tolist())

    rated = payload["rated"]
    assert len(rated) == 5  # --history defaults to 5
    ratings = [r["rating"] for r in rated]
    assert ratings == sorted(ratings, reverse=True)
    assert ratings[0] == max(user1_train.values())
    for row in rated:
        assert user1_train[row["item"]] == row["rating"]


def test_recommend_k_and_history(trained: tuple[Path, Any]) -> None:
    payload = ok_json("recommend", "--model-dir", trained[0], "--user", "1", "-k", "3", "--history", "0")
    assert len(payload["recommendations"]) == 3
    assert payload["rated"] == []


def test_recommend_text_output(trained: tuple[Path, Any]) -> None:
    result = run("recommend", "--model-dir", trained[0], "--user", "1", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.stderr
    assert "Top 10 for user 1 (bias)" in result.stdout
    assert "Toy Story" in result.stdout  # user 1 rated it 5: it heads the history table


def test_recommend_new_user(trained: tuple[Path, Any]) -> None:
    out, _ = trained
    payload = ok_json("recommend", "--model-dir", out, "--rate", "1=5", "--rate", "50=5")
    assert payload["user"] is None
    assert payload["rated"] == [
        {"item": 1, "title": "Toy Story", "year": 1995,
         "genres": ["Animation", "Children's", "Comedy"], "rating": 5.0},
        {"item": 50, "title": "Star Wars", "year": 1977,
         "genres": ["Action", "Adventure", "Romance", "Sci-Fi", "War"], "rating": 5.0},
    ]
    recs = payload["recommendations"]
    assert len(recs) == 10
    assert not {1, 50} & {rec["item"] for rec in recs}
    assert all(rec["title"] for rec in recs)
    expected = load_model(out).model.recommend_for_ratings([(1, 5.0), (50, 5.0)], k=10)
    assert [rec["item"] for rec in recs] == expected["item"].tolist()


def test_recommend_new_user_ignores_unknown_movies_with_a_note(trained: tuple[Path, Any]) -> None:
    result = run("recommend", "--model-dir", trained[0], "--rate", "1=5", "--rate", "999999=4",
                 "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert [r["item"] for r in payload["rated"]] == [1]
    assert "999999" in result.stderr


# -- a user's own ratings file -----------------------------------------------------------------
OWN_ROWS = [
    (1, 10, 4.0), (1, 20, 3.5), (1, 30, 5.0), (1, 40, 2.0),
    (2, 10, 5.0), (2, 30, 4.5), (2, 50, 1.0), (2, 60, 3.0),
    (3, 20, 2.5), (3, 40, 4.0), (3, 50, 3.5), (3, 60, 0.5),
    (4, 10, 3.0), (4, 20, 4.0), (4, 30, 4.5), (4, 50, 2.0),
    (5, 30, 1.5), (5, 40, 3.0), (5, 60, 5.0), (5, 10, 4.5),
]


@pytest.fixture
def own_file(tmp_path: Path) -> Path:
    path = tmp_path / "my-ratings.csv"
    lines = ["userId,movieId,rating,timestamp"]
    lines += [f"{u},{i},{r},{1_000_000 + n}" for n, (u, i, r) in enumerate(OWN_ROWS)]
    lines.append("1,10,2.0,2000000")  # a duplicate pair: averaged with the 4.0 above into 3.0
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_on_own_file(own_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "own-model"
    payload = ok_json("train", own_file, "--model", "bias", "--split", "random:0.8:1", "--out", out)
    assert payload["dataset"] == str(own_file)
    assert payload["split"] == "random:0.8:1"
    assert math.isfinite(payload["metrics"]["rmse"])
    manifest = load_model(out).manifest
    # 21 rows, 20 distinct pairs after averaging the duplicate; floor(20 * 0.8) = 16 train rows
    assert manifest["data"]["train_ratings"] == 16
    assert manifest["data"]["split"] == "random:0.8:1"
    assert manifest["scale"] == [0.5, 5.0]


def test_own_file_duplicates_are_averaged(own_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "own-all"
    ok("train", own_file, "--split", "none", "--out", out)
    artifact = load_model(out)
    assert artifact.manifest["data"]["train_ratings"] == 20
    assert artifact.manifest["metrics"] == {}
    history = artifact.model.user_history(1)
    assert dict(zip(history["item"], history["rating"], strict=True)) == {
        10: 3.0, 20: 3.5, 30: 5.0, 40: 2.0}
    # and the CLI recommends from it, titling movies by id since there is no movies file
    payload = ok_json("recommend", "--model-dir", out, "--user", "1")
    assert sorted(r["item"] for r in payload["recommendations"]) == [50, 60]
    assert {r["title"] for r in payload["recommendations"]} == {"Movie 50", "Movie 60"}


def test_own_file_with_string_ids(tmp_path: Path) -> None:
    path = tmp_path / "r.tsv"
    path.write_text("user\titem\trating\nalice\tm1\t5\nalice\tm2\t3\nbob\tm1\t4\nbob\tm3\t2\n"
                    "carol\tm2\t1\ncarol\tm3\t5\ncarol\tm4\t4\n")
    out = tmp_path / "m"
    ok("train", path, "--split", "none", "--out", out)
    assert (out / "vocab.json").is_file()
    payload = ok_json("recommend", "--model-dir", out, "--user", "alice")
    # alice rated m1 and m2; the rest ranked by movie bias (m4's single 4 vs m3's 2 and 5)
    assert sorted(r["item"] for r in payload["recommendations"]) == ["m3", "m4"]
    assert [r["item"] for r in payload["rated"]] == ["m1", "m2"]
    payload = ok_json("recommend", "--model-dir", out, "--rate", "m1=5", "-k", "2")
    assert len(payload["recommendations"]) == 2
    assert "m1" not in {r["item"] for r in payload["recommendations"]}
    assert_bad_input(run("recommend", "--model-dir", out, "--user", "dave"), "unknown user id")


def test_own_file_json_stdout_is_pure_in_a_real_process(own_file: Path, tmp_path: Path) -> None:
    # the duplicate-pair warning goes to stderr; stdout stays one JSON document
    proc = subprocess.run(
        [*COMMAND, "train", str(own_file), "--split", "random:0.8:1", "--out",
         str(tmp_path / "m"), "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["artifact"] == str(tmp_path / "m")
    assert "duplicate" in proc.stderr


# -- bad input: exit 2, one line on stderr -----------------------------------------------------
def test_unknown_dataset() -> None:
    line = assert_bad_input(run("data", "info", "ml-nope"), "ml-nope")
    assert "ml-100k" in line  # names the known datasets
    assert_bad_input(run("data", "fetch", "ml-nope"), "ml-nope")
    assert_bad_input(run("train", "ml-nope", "--model", "bias"), "ml-nope")


def test_unknown_dataset_in_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run([*COMMAND, "evaluate", "ml-nope", "--split", "u1"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "ml-nope" in lines[0]


def test_missing_ratings_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ratings.csv"
    assert_bad_input(run("train", missing, "--model", "bias"), "no such ratings file", str(missing))
    assert_bad_input(run("data", "info", missing), "no such ratings file")


def test_bad_split_spec(cache: Path, tmp_path: Path) -> None:
    assert_bad_input(run("evaluate", "ml-100k", "--split", "random:2", "--data-dir", cache),
                     "frac", "2")
    assert_bad_input(run("evaluate", "ml-100k", "--split", "bogus:1", "--data-dir", cache),
                     "unknown split 'bogus:1'")
    assert_bad_input(run("evaluate", "ml-100k", "--split", "random:0.5:x", "--data-dir", cache),
                     "SEED")
    # canonical folds ship only with ml-100k (a clean file: no duplicate-pair warning on stderr)
    clean = tmp_path / "clean.csv"
    clean.write_text("userId,movieId,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in OWN_ROWS))
    assert_bad_input(run("train", clean, "--split", "u1"), "no canonical fold 'u1'")


def test_unknown_model() -> None:
    assert_bad_input(run("train", "ml-100k", "--model", "nope"), "unknown model 'nope'", "bias")
    assert_bad_input(run("evaluate", "ml-100k", "--model", "nope", "--split", "u1"), "unknown model")


def test_unknown_param() -> None:
    assert_bad_input(run("train", "ml-100k", "--model", "bias", "--param", "factors=8"),
                     "no hyperparameter 'factors'", "reg_user")


def test_malformed_param() -> None:
    assert_bad_input(run("train", "ml-100k", "--param", "reg_user"), "name=value", "reg_user")
    assert_bad_input(run("train", "ml-100k", "--param", "=3"), "name=value")
    assert_bad_input(run("train", "ml-100k", "--param", "reg_user=lots"), "reg_user must be float")
    assert_bad_input(run("train", "ml-100k", "--param", "epochs=2.5"), "epochs must be int")


def test_invalid_param_value(cache: Path, tmp_path: Path) -> None:
    assert_bad_input(run("train", "ml-100k", "--split", "u1", "--param", "reg_user=-1",
                         "--out", tmp_path / "x", "--data-dir", cache),
                     "reg_user must be a number >= 0")
    assert not (tmp_path / "x").exists()


def test_unknown_user(trained: tuple[Path, Any]) -> None:
    assert_bad_input(run("recommend", "--model-dir", trained[0], "--user", "99999"),
                     "unknown user id", "99999")


def test_user_and_rate_exclusive(trained: tuple[Path, Any]) -> None:
    out = trained[0]
    assert_bad_input(run("recommend", "--model-dir", out), "--user", "--rate")
    assert_bad_input(run("recommend", "--model-dir", out, "--user", "1", "--rate", "1=5"),
                     "--user", "--rate")


@pytest.mark.parametrize("value", ["1:5", "=5", "1=", "1=five", "15"])
def test_malformed_rate(trained: tuple[Path, Any], value: str) -> None:
    assert_bad_input(run("recommend", "--model-dir", trained[0], "--rate", value),
                     "MOVIE=RATING", repr(value))


def test_rate_nan_is_bad_input(trained: tuple[Path, Any]) -> None:
    assert_bad_input(run("recommend", "--model-dir", trained[0], "--rate", "1=nan", "--json"))


def test_rate_outside_scale_or_all_unknown(trained: tuple[Path, Any]) -> None:
    out = trained[0]
    assert_bad_input(run("recommend", "--model-dir", out, "--rate", "1=9"), "1..5", "9")
    assert_bad_input(run("recommend", "--model-dir", out, "--rate", "999999=4"),
                     "none of the rated movies")


def test_model_dir_not_an_artifact(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    assert_bad_input(run("recommend", "--model-dir", tmp_path, "--user", "1"), "no manifest.json")
    assert_bad_input(run("recommend", "--model-dir", tmp_path / "missing", "--user", "1"),
                     "not a movierec model folder")
    (tmp_path / "manifest.json").write_text("{broken")
    assert_bad_input(run("recommend", "--model-dir", tmp_path, "--user", "1"), "corrupt manifest")


def test_corrupt_artifact(trained: tuple[Path, Any], tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained[0], copy)
    tensors = copy / "model.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0x01
    tensors.write_bytes(bytes(data))
    assert_bad_input(run("recommend", "--model-dir", copy, "--user", "1"), "corrupt")


def test_train_refuses_to_overwrite_a_foreign_folder(tmp_path: Path) -> None:
    own_file = tmp_path / "clean.csv"
    own_file.write_text("userId,movieId,rating\n" + "".join(f"{u},{i},{r}\n" for u, i, r in OWN_ROWS))
    target = tmp_path / "docs"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert_bad_input(run("train", own_file, "--split", "none", "--out", target),
                     "not a movierec model folder")
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"



# -- data synth --------------------------------------------------------------------------------
def test_synth_writes_own_files_and_an_archive(tmp_path: Path) -> None:
    from movierec.data.movielens import parse_archive, read_ratings_file

    out = tmp_path / "synth"
    result = ok("data", "synth", "--users", "50", "--items", "30", "--ratings", "600", "--out", out,
                "--layout", "ml-100k", "--seed", "4", "--json")
    payload = json.loads(result.stdout)
    assert (payload["ratings"], payload["users"], payload["movies"]) == (600, 50, 30)
    assert sorted(Path(p).name for p in payload["files"]) == ["ml-100k.zip", "movies.csv",
                                                             "ratings.parquet"]
    own, _ = read_ratings_file(out / "ratings.parquet", movies=out / "movies.csv")
    archive = parse_archive(out / "ml-100k.zip", VARIANTS["ml-100k"])
    # --layout ml-100k implies whole stars; both files hold the same ratings and titles
    assert own.ratings.scale == archive.ratings.scale == (1.0, 5.0)
    assert own.ratings.fingerprint() == archive.ratings.fingerprint()
    assert own.catalog.get(1)["title"] == archive.catalog.get(1)["title"]
    # the same seed gives the same data
    again = tmp_path / "again"
    ok("data", "synth", "--users", "50", "--items", "30", "--ratings", "600", "--out", again,
       "--scale", "1-5", "--seed", "4")
    assert read_ratings_file(again / "ratings.parquet")[0].ratings.fingerprint() == (
        own.ratings.fingerprint())


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--ratings", "7"], "n_ratings must be <= n_users * n_items = 6"),
        (["--ratings", "4", "--scale", "1-10"], "--scale must be 0.5-5 or 1-5"),
        (["--ratings", "4", "--scale", "0.5-5", "--layout", "ml-1m"], "whole stars"),
        (["--ratings", "4", "--layout", "ml-2m"], "unknown dataset 'ml-2m'"),
    ],
)
def test_synth_bad_input(tmp_path: Path, extra: list[str], fragment: str) -> None:
    assert_bad_input(run("data", "synth", "--users", "3", "--items", "2", "--out", tmp_path / "s",
                         *extra), fragment)
    assert not (tmp_path / "s").exists()  # nothing written


# -- compare and plots -------------------------------------------------------------------------
def test_compare_table_json_and_chart(tmp_path: Path) -> None:
    chart = tmp_path / "cmp.png"
    payload = ok_json("compare", "ml-100k", "--models", "bias", "--split", "u1", "--plot", chart)
    bias = payload["results"]["bias"]
    assert 0.93 <= bias["rmse"] <= 0.97 and 0 <= bias["ndcg@10"] <= 1 and bias["fit_s"] > 0
    assert payload["split"] == "u1" and chart.read_bytes()[:4] == b"\x89PNG"
    text = ok("compare", "ml-100k", "--models", "bias", "--split", "u1", "--k", "5").stdout
    assert "ndcg@5" in text and "rmse" in text


def test_compare_bad_input(tmp_path: Path) -> None:
    assert_bad_input(run("compare", "ml-100k", "--models", "bias,nope"), "unknown model 'nope'")
    assert_bad_input(run("compare", "ml-100k", "--models", " , "), "at least one model")
    assert_bad_input(run("compare", "ml-100k", "--models", "bias", "--plot", tmp_path / "x.jpg"),
                     ".png")


def test_train_writes_learning_curves(tmp_path: Path) -> None:
    curves = tmp_path / "curves.png"
    payload = ok_json("train", "ml-100k", "--split", "u1", "--out", tmp_path / "m", "--plot", curves)
    assert payload["plot"] == str(curves) and curves.read_bytes()[:4] == b"\x89PNG"
    history = load_model(tmp_path / "m").manifest["history"]
    assert [r["epoch"] for r in history] == list(range(1, 11))


def test_train_reports_model_specific_validation_figures(tmp_path: Path) -> None:
    ok("data", "synth", "--users", "120", "--items", "60", "--ratings", "3000", "--out", tmp_path,
       "--scale", "1-5")
    payload = ok_json("train", tmp_path / "ratings.parquet", "--model", "rating-classifier",
                      "--param", "epochs=2", "--split", "random:0.8:1", "--out", tmp_path / "m")
    metrics = payload["metrics"]
    # the classifier's own figures, on the test part, beside the protocol's
    assert 0.0 < metrics["accuracy"] < 1.0
    assert metrics["argmax_rmse"] > 0 and metrics["rmse"] > 0
    assert not any(key.startswith("valid_") for key in metrics)


def test_rate_with_a_non_numeric_movie_is_noted_not_fatal(trained: tuple[Path, Any]) -> None:
    result = run("recommend", "--model-dir", trained[0], "--rate", "abc=4", "--rate", "1=5", "--json")
    assert result.exit_code == 0, result.stderr
    assert "abc" in result.stderr and len(json.loads(result.stdout)["recommendations"]) == 10
    assert_bad_input(run("recommend", "--model-dir", trained[0], "--rate", "abc=4"),
                     "none of the rated movies is known")


# -- filters, explanations, similar movies, the movie map ------------------------------------------
@pytest.fixture(scope="module")
def trained_als(cache: Path, mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-als") / "als"
    ok("train", "ml-100k", "--model", "biased-mf-als", "--split", "none", "--out", out,
       "--param", "epochs=3", "--data-dir", cache, "--mirror", mirror, "--json")
    return out


def test_recommend_filters_and_explanations(trained: tuple[Path, Any], ml100k: Dataset) -> None:
    out = trained[0]
    payload = ok_json("recommend", "--model-dir", out, "--user", "1", "--genre", "Comedy",
                      "--years", "1990-1995", "--explain", "1")
    recs = payload["recommendations"]
    assert len(recs) == 10
    assert all("Comedy" in r["genres"] and 1990 <= r["year"] <= 1995 for r in recs)
    rated = {r["item"]: r["rating"] for r in payload["rated"]}  # the history shown (5 movies)
    history = load_model(out).model.user_history(1)
    stars = dict(zip(history["item"].tolist(), history["rating"].tolist(), strict=True))
    for rec in recs:
        assert len(rec["because"]) <= 1
        for because in rec["because"]:
            assert stars[because["item"]] == because["rating"]
            assert because["title"]
    assert set(rated) <= set(stars)
    library = load_model(out).model.recommend(1, k=10, genres=["Comedy"], years=(1990, 1995))
    assert [r["item"] for r in recs] == library["item"].tolist()


def test_recommend_new_user_by_titles_and_genre_only(trained: tuple[Path, Any], ml100k: Dataset) -> None:
    out = trained[0]
    payload = ok_json("recommend", "--model-dir", out, "--rate", "Star Wars=5", "--rate", "toy story=4")
    assert {r["item"] for r in payload["rated"]} == {50, 1}
    payload = ok_json("recommend", "--model-dir", out, "--genre", "Horror", "-k", "5")
    assert len(payload["recommendations"]) == 5
    assert all("Horror" in r["genres"] for r in payload["recommendations"])
    assert_bad_input(run("recommend", "--model-dir", out, "--genre", "Westerns"), "unknown genre",
                     "Western")
    for value in ("abc", "1990-abc", "-"):
        assert_bad_input(run("recommend", "--model-dir", out, "--user", "1", "--years", value),
                         "--years")
    assert_bad_input(run("recommend", "--model-dir", out, "--user", "1", "--years", "2000-1990"),
                     "earlier to later")


def test_diversity_spreads_genres(trained_als: Path) -> None:
    plain = ok_json("recommend", "--model-dir", trained_als, "--user", "1", "--explain", "0")
    diverse = ok_json("recommend", "--model-dir", trained_als, "--user", "1", "--diversity", "0.7",
                      "--explain", "0")
    def genres(payload: Any) -> set[str]:
        return {g for r in payload["recommendations"] for g in r["genres"]}
    assert len(genres(diverse)) >= len(genres(plain))
    assert [r["item"] for r in plain["recommendations"]] != [r["item"] for r in diverse["recommendations"]]


def test_similar_by_id_and_title(trained_als: Path) -> None:
    payload = ok_json("similar", "--model-dir", trained_als, "--movie", "50", "-k", "5")
    assert payload["movie"]["title"] == "Star Wars" and len(payload["similar"]) == 5
    assert 50 not in {r["item"] for r in payload["similar"]}
    by_title = ok_json("similar", "--model-dir", trained_als, "--movie", "star wars", "-k", "5")
    assert by_title["similar"] == payload["similar"]
    library = load_model(trained_als).model.similar_items(50, k=5)
    assert [r["item"] for r in payload["similar"]] == library["item"].tolist()
    result = run("similar", "--model-dir", trained_als, "--movie", "50", env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Movies like Star Wars (1977)" in result.stdout
    assert_bad_input(run("similar", "--model-dir", trained_als, "--movie", "no such film xyz"),
                     "unknown movie")


def test_movie_map(trained_als: Path, trained: tuple[Path, Any], tmp_path: Path) -> None:
    payload = ok_json("map", "--model-dir", trained_als, "--plot", tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG" and payload["movies"] > 500
    assert_bad_input(run("map", "--model-dir", trained[0], "--plot", tmp_path / "bias.png"),
                     "no item vectors")
    assert_bad_input(run("map", "--model-dir", trained_als, "--plot", tmp_path / "map.jpg"), ".png")


def test_tune_reports_the_best_setting_on_the_test_part(cache: Path, mirror: Path) -> None:
    payload = ok_json("tune", "ml-100k", "--model", "bias", "--split", "user-ratio:0.75:42",
                      "--trials", "3", "--metric", "rmse", "--space", "reg_item=1:50:log",
                      "--data-dir", cache, "--mirror", mirror)
    values = [t["value"] for t in payload["trials"]]
    assert len(values) == 3 and payload["best_value"] == min(values)
    assert set(payload["best_params"]) >= {"reg_item"}
    assert 0.8 < payload["test_metrics"]["rmse"] < 1.1
    assert_bad_input(run("tune", "ml-100k", "--model", "bias", "--metric", "bogus", "--data-dir", cache,
                         "--mirror", mirror), "bogus")


def test_serve_refuses_a_missing_model_folder(tmp_path: Path) -> None:
    assert_bad_input(run("serve", "--model-dir", tmp_path / "nothing"), "nothing")
    assert "--admin-token" in ok("serve", "--help").stdout


def test_serve_refuses_an_unreachable_database_and_an_empty_one(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = ROOT / "tests" / "fixtures" / "artifacts-0.1.0" / "bias"
    line = assert_bad_input(run("serve", "--model-dir", model, "--database-url",
                                f"postgresql+psycopg://someone:secret@127.0.0.1:{port}/movierec"),
                            f"host 127.0.0.1, port {port}")
    assert "secret" not in line
    # a replica joining without a model folder needs a database that publishes one
    assert_bad_input(run("serve", "--database-url", f"sqlite:///{tmp_path / 'empty.sqlite3'}"),
                     "no model to serve")
    proc = subprocess.run([*COMMAND, "serve", "--model-dir", str(model), "--workers", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--workers" in lines[0]


def test_recommend_all_writes_every_users_top_k(tmp_path: Path) -> None:
    model = ROOT / "tests" / "fixtures" / "artifacts-0.1.0" / "ials"
    summary = ok_json("recommend-all", "--model-dir", model, "--out", tmp_path / "top.parquet", "-k", "4")
    written = pd.read_parquet(tmp_path / "top.parquet")
    assert summary["users"] == written["user"].nunique() == 40
    assert summary["rows"] == len(written) and written.groupby("user").size().max() == 4
    assert list(written.columns) == ["user", "rank", "item", "score"]
    assert_bad_input(run("recommend-all", "--model-dir", model, "--out", tmp_path), "is a folder")


# -- memory limits ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["train"], ["evaluate"], ["compare", "--models", "bias,ease"],
                                     ["tune", "--trials", "1"]])
def test_a_tiny_max_memory_refuses_the_fit_at_once(command: list[str], cache: Path, mirror: Path,
                                                    tmp_path: Path) -> None:
    model = [] if command[0] == "compare" else ["--model", "ease"]
    out = ["--out", tmp_path / "m"] if command[0] == "train" else []
    line = assert_bad_input(run(*command, "ml-100k", *model, *out, "--split", "u1", "--data-dir", cache,
                                "--mirror", mirror, "--max-memory", "1MB"),
                            "needs ~", "above the 1.0 MB memory limit", "use ")
    assert "bias needs" in line if command[0] == "compare" else "ease needs" in line
    assert not (tmp_path / "m").exists()  # nothing written


@pytest.mark.parametrize("value", ["lots", "4XB", "0", "-1GB"])
def test_a_bad_max_memory_exits_2_before_loading_data(value: str, tmp_path: Path) -> None:
    assert_bad_input(run("evaluate", "ml-100k", "--data-dir", tmp_path / "empty", "--mirror",
                         tmp_path / "nowhere", "--max-memory", value),
                     "--max-memory: memory must be a positive size", repr(value))
    assert not (tmp_path / "empty").exists()
