"""The HTTP API against a tiny synthetic model: values checked against the model's own methods, every
bad request a 4xx with a JSON error, tokens guarding profiles, admin endpoints behind their token."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from movierec.artifacts import load_model
from movierec.errors import DataError
from movierec.service import Settings, create_app, serve

ADMIN = "admin-secret-token"  # as tests/service/conftest.py configures


@pytest.fixture(scope="module")
def artifact(model_dir: Path):  # type: ignore[no-untyped-def]
    return load_model(model_dir)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_profile(client: TestClient) -> tuple[str, dict[str, str]]:
    created = client.post("/api/profiles", json={"name": "ann"})
    assert created.status_code == 201
    body = created.json()
    return body["id"], bearer(body["token"])


def assert_error(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"} and body["message"]
    return body


# -- reading ---------------------------------------------------------------------------------
def test_health_and_model(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health == {"status": "ok", "model": "biased-mf-als", "version": "0.1.0", "model_version": 1,
                      "replica": f"{socket.gethostname()}:{os.getpid()}"}
    model = client.get("/api/model").json()
    assert model["model"] == "biased-mf-als" and model["model_version"] == 1
    assert model["params"]["factors"] == 4
    assert (model["users"], model["movies"], model["ratings"]) == (60, 80, 1500)
    assert model["metrics"] == {"rmse": 0.9, "ndcg@10": 0.1}
    assert model["dataset"] == "synthetic" and model["split"] == "random:0.9:42"
    assert model["scale"] == [0.5, 5.0]
    assert "Drama" in model["genres"]


def test_movie_details_match_the_catalog_and_training_counts(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/movies/7").json()
    record = artifact.catalog.get(7)
    assert (body["item"], body["title"], body["year"]) == (7, record["title"], record["year"])
    column = artifact.model.seen_[:, artifact.model.items_.index(7)]
    assert body["ratings"] == column.nnz
    assert body["mean_rating"] == pytest.approx(column.data.mean(), abs=1e-4)


def test_search_exact_then_typo_tolerant(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    title = artifact.catalog.get(12)["title"]
    exact = client.get("/api/movies", params={"q": title}).json()["movies"]
    assert exact[0]["item"] == 12
    # drop one letter and swap two in the longest word: still found
    word = max(title.split(), key=len)
    typo = word[0] + word[2] + word[1] + word[3:-1]
    found = client.get("/api/movies", params={"q": title.replace(word, typo)}).json()["movies"]
    assert 12 in [m["item"] for m in found]
    # no query: the most rated first
    popular = client.get("/api/movies", params={"limit": 5}).json()["movies"]
    counts = np.diff(artifact.model.seen_.tocsc().indptr)
    top = artifact.model.items_.ids[np.argsort(-counts, kind="stable")[:5]].tolist()
    assert [m["item"] for m in popular] == top


def test_known_user_recommendations_are_the_models(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/users/5/recommendations", params={"k": 7}).json()
    expected = artifact.model.recommend(5, 7)
    assert [r["movie"]["item"] for r in body["recommendations"]] == expected["item"].tolist()
    np.testing.assert_allclose([r["score"] for r in body["recommendations"]], expected["score"], atol=1e-5)
    assert body["user"] == 5 and body["k"] == 7
    rated = set(artifact.model.user_history(5)["item"].tolist())
    for rec in body["recommendations"]:
        assert {b["movie"]["item"] for b in rec["because"]} <= rated


def test_filters_keep_only_matching_movies_in_model_order(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/users/5/recommendations",
                      params={"k": 5, "genres": "drama,Comedy", "years": "1980-2005"}).json()
    assert body["filters"] == {"genres": ["Drama", "Comedy"], "years": [1980, 2005]}
    full = artifact.model.recommend(5, 80)["item"].tolist()
    catalog = artifact.catalog
    wanted = [m for m in full if {"Drama", "Comedy"} & set(catalog.get(m)["genres"])
              and catalog.get(m)["year"] is not None and 1980 <= catalog.get(m)["year"] <= 2005][:5]
    assert [r["movie"]["item"] for r in body["recommendations"]] == wanted


def test_similar_movies(client: TestClient) -> None:
    body = client.get("/api/movies/3/similar", params={"k": 4}).json()
    assert body["movie"]["item"] == 3
    scores = [s["score"] for s in body["similar"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert 3 not in [s["movie"]["item"] for s in body["similar"]]


def test_user_history(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    body = client.get("/api/users/2").json()
    history = artifact.model.user_history(2)
    assert body["ratings"] == len(history)
    assert [h["movie"]["item"] for h in body["history"]] == history["item"].tolist()[:100]
    assert client.get("/api/users", params={"limit": 3}).json() == {"users": 60, "sample": [1, 2, 3]}


# -- profiles --------------------------------------------------------------------------------
def test_profile_ratings_round_trip_and_fold_in(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    profile, auth = new_profile(client)
    for movie, rating in [(1, 5.0), (2, 1.0), (3, 4.5)]:
        put = client.put(f"/api/profiles/{profile}/ratings/{movie}", json={"rating": rating}, headers=auth)
        assert put.status_code == 200 and put.json()["rating"] == rating
    # change one, remove one
    client.put(f"/api/profiles/{profile}/ratings/2", json={"rating": 2.5}, headers=auth)
    assert client.delete(f"/api/profiles/{profile}/ratings/3", headers=auth).status_code == 204
    assert_error(client.delete(f"/api/profiles/{profile}/ratings/3", headers=auth), 404)

    body = client.get(f"/api/profiles/{profile}", headers=auth).json()
    assert {r["movie"]["item"]: r["rating"] for r in body["ratings"]} == {1: 5.0, 2: 2.5}
    genres = {g["genre"]: g for g in body["genre_profile"]}
    for genre in set(artifact.catalog.get(1)["genres"]) | set(artifact.catalog.get(2)["genres"]):
        assert genres[genre]["count"] >= 1

    recs = client.get(f"/api/profiles/{profile}/recommendations", params={"k": 6}, headers=auth).json()
    expected = artifact.model.recommend_for_ratings([(1, 5.0), (2, 2.5)], 6)
    assert recs["rated"] == 2
    assert [r["movie"]["item"] for r in recs["recommendations"]] == expected["item"].tolist()


def test_empty_profile_gets_cold_start_recommendations(client: TestClient) -> None:
    profile, auth = new_profile(client)
    recs = client.get(f"/api/profiles/{profile}/recommendations", headers=auth).json()
    assert recs["rated"] == 0 and len(recs["recommendations"]) == 10


def test_profiles_need_their_own_token(client: TestClient) -> None:
    _mine, my_auth = new_profile(client)
    theirs, their_auth = new_profile(client)
    client.put(f"/api/profiles/{theirs}/ratings/4", json={"rating": 4}, headers=their_auth)
    for method, path, body in [("GET", "", None), ("GET", "/recommendations", None),
                               ("PUT", "/ratings/4", {"rating": 1}), ("DELETE", "/ratings/4", None),
                               ("DELETE", "", None)]:
        url = f"/api/profiles/{theirs}{path}"
        assert_error(client.request(method, url, json=body), 401)
        assert_error(client.request(method, url, json=body, headers=my_auth), 404)  # not theirs
        assert_error(client.request(method, url, json=body, headers=bearer("x" * 43)), 404)
    assert_error(client.get("/api/profiles/no-such-id", headers=my_auth), 404)
    # their rating is untouched
    body = client.get(f"/api/profiles/{theirs}", headers=their_auth).json()
    assert [(r["movie"]["item"], r["rating"]) for r in body["ratings"]] == [(4, 4.0)]


def test_tokens_are_stored_hashed(client: TestClient, settings: Settings) -> None:
    import sqlite3

    _, auth = new_profile(client)
    token = auth["Authorization"].split()[1]
    database = settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        dump = "\n".join(conn.iterdump())
    assert token not in dump


def test_a_full_profile_refuses_new_movies_but_takes_changes(settings: Settings) -> None:
    settings = dataclasses.replace(settings, max_profile_ratings=2)
    with TestClient(create_app(settings)) as client:
        profile, auth = new_profile(client)
        for movie in (4, 5):
            assert client.put(f"/api/profiles/{profile}/ratings/{movie}", json={"rating": 3},
                              headers=auth).status_code == 200
        error = assert_error(client.put(f"/api/profiles/{profile}/ratings/6", json={"rating": 3},
                                        headers=auth), 422)
        assert "at most 2 ratings" in error["message"]
        assert client.put(f"/api/profiles/{profile}/ratings/5", json={"rating": 1},
                          headers=auth).json()["rating"] == 1
        body = client.get(f"/api/profiles/{profile}", headers=auth).json()
        assert sorted((r["movie"]["item"], r["rating"]) for r in body["ratings"]) == [(4, 3.0), (5, 1.0)]
        # the token is checked in the write: a wrong one is a 404 even where the profile is full
        _, other_auth = new_profile(client)
        for movie in (5, 6):
            assert_error(client.put(f"/api/profiles/{profile}/ratings/{movie}", json={"rating": 3},
                                    headers=other_auth), 404)


def test_deleting_a_profile_removes_its_ratings(client: TestClient) -> None:
    profile, auth = new_profile(client)
    client.put(f"/api/profiles/{profile}/ratings/4", json={"rating": 4}, headers=auth)
    assert client.delete(f"/api/profiles/{profile}", headers=auth).status_code == 204
    assert_error(client.get(f"/api/profiles/{profile}", headers=auth), 404)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "status"), [
    ("/api/movies/999999", 404),
    ("/api/movies/abc", 404),
    ("/api/movies/99999999999999999999999999", 404),
    ("/api/movies/999999/similar", 404),
    ("/api/users/999999/recommendations", 404),
    ("/api/users/-1", 404),
    ("/api/users/1/recommendations?k=0", 422),
    ("/api/users/1/recommendations?k=-3", 422),
    ("/api/users/1/recommendations?k=100000000000000000000", 422),
    ("/api/users/1/recommendations?k=501", 422),
    ("/api/users/1/recommendations?k=ten", 422),
    ("/api/users/1/recommendations?genres=Nope", 422),
    ("/api/users/1/recommendations?years=1990-80", 422),
    ("/api/users/1/recommendations?years=nineties", 422),
    ("/api/movies?limit=0", 422),
    ("/api/movies?q=" + "x" * 500, 422),
    ("/api/nothing", 404),
])
def test_bad_reads_are_4xx_json(client: TestClient, path: str, status: int) -> None:
    assert_error(client.get(path), status)


def test_bad_writes_are_4xx_json(client: TestClient) -> None:
    profile, auth = new_profile(client)
    url = f"/api/profiles/{profile}/ratings/1"
    assert_error(client.put(url, json={"rating": 9}, headers=auth), 422)
    assert_error(client.put(url, json={"rating": 0.1}, headers=auth), 422)
    assert_error(client.put(url, json={"rating": "five"}, headers=auth), 422)
    assert_error(client.put(url, json={"stars": 3}, headers=auth), 422)
    assert_error(client.put(url, content=b"{not json", headers={**auth, "Content-Type": "application/json"}),
                 422)
    assert_error(client.put(url, content=b'{"rating": NaN}',
                            headers={**auth, "Content-Type": "application/json"}), 422)
    assert_error(client.put(f"/api/profiles/{profile}/ratings/424242", json={"rating": 3}, headers=auth), 404)
    assert_error(client.post("/api/profiles", json={"name": "x" * 101}), 422)
    assert_error(client.post("/api/profiles", json=[1, 2]), 422)
    big = b'{"name": "' + b"a" * 70_000 + b'"}'
    assert_error(client.post("/api/profiles", content=big, headers={"Content-Type": "application/json"}), 413)
    assert_error(client.delete("/api/movies/1"), 405)


def test_streamed_oversized_body_is_refused(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"a" * 1024

    response = client.post("/api/profiles", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413)


# -- admin -----------------------------------------------------------------------------------
def test_admin_needs_the_token(client: TestClient) -> None:
    assert_error(client.post("/api/admin/reload"), 401)
    assert_error(client.post("/api/admin/reload", headers={"X-Admin-Token": "wrong-token!"}), 403)
    assert_error(client.post("/api/admin/retrain", headers={"X-Admin-Token": "wrong-token!"}), 403)


def test_admin_disabled_without_a_configured_token(settings: Settings) -> None:
    with TestClient(create_app(settings.with_(admin_token=None))) as client:
        body = assert_error(client.post("/api/admin/reload", headers={"X-Admin-Token": ADMIN}), 403)
        assert "MOVIEREC_ADMIN_TOKEN" in body["message"]


def test_reload_swaps_the_model_and_refuses_a_bad_folder(client: TestClient, model_dir: Path,
                                                          tmp_path: Path) -> None:
    admin = {"X-Admin-Token": ADMIN}
    body = client.post("/api/admin/reload", headers=admin).json()
    # published again: a new version (1 was the start-up's) that every replica switches to
    assert body == {"model": "biased-mf-als", "model_dir": str(model_dir), "model_version": 2, "movies": 80,
                    "users": 60}
    bad = assert_error(client.post("/api/admin/reload", json={"model_dir": str(tmp_path / "nope")},
                                   headers=admin), 422)
    assert "not a movierec model folder" in bad["message"]
    health = client.get("/api/health").json()  # the old model stays, and nothing was published
    assert (health["model"], health["model_version"]) == ("biased-mf-als", 2)


def test_retrain_runs_in_the_background_with_progress(client: TestClient, settings: Settings) -> None:
    admin = {"X-Admin-Token": ADMIN}
    assert_error(client.post("/api/admin/retrain", json={"params": {"factors": 0}}, headers=admin), 422)
    assert_error(client.post("/api/admin/retrain", json={"params": {"nope": 1}}, headers=admin), 422)
    started = client.post("/api/admin/retrain", json={"params": {"factors": 3}}, headers=admin)
    assert started.status_code == 202
    job = started.json()
    assert job["status"] == "running"
    deadline = time.monotonic() + 60
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(f"/api/admin/jobs/{job['id']}", headers=admin).json()
    assert job["status"] == "done", job
    assert job["progress"] == 1.0 and job["epochs"] == 2
    assert Path(job["model_dir"]).parent == settings.retrain_dir
    model = client.get("/api/model").json()
    assert model["params"]["factors"] == 3 and model["ratings"] == 1500
    assert client.get("/api/users/5/recommendations").status_code == 200
    assert_error(client.get("/api/admin/jobs/unknown", headers=admin), 404)



def test_retrain_that_would_not_fit_in_memory_is_refused_before_it_starts(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import movierec.models.core.memory as memory

    admin = {"X-Admin-Token": ADMIN}
    before = client.get("/api/admin/jobs", headers=admin).json()
    monkeypatch.setattr(memory, "available_memory", lambda: 1_000)  # a machine with 1 kB free
    refused = assert_error(client.post("/api/admin/retrain", json={}, headers=admin), 400)
    assert refused["message"].startswith("biased-mf-als needs ~")
    assert "above the 1.0 kB memory limit" in refused["message"]
    assert client.get("/api/admin/jobs", headers=admin).json() == before  # no job was started

# -- start-up --------------------------------------------------------------------------------
def test_missing_or_corrupt_model_stops_start_up(tmp_path: Path, model_dir: Path) -> None:
    with pytest.raises(DataError, match="not a movierec model folder"):
        serve(tmp_path / "missing", port=0)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        serve(broken, port=0)
    # the app factory's lifespan refuses it too (nothing served half-loaded)
    with pytest.raises(DataError), TestClient(create_app(Settings(model_dir=broken,
                                                                   database_url="sqlite://"))):
        pass


def test_model_loads_once_per_start(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import movierec.service.app as app_module

    calls = []
    real = app_module.load_model
    monkeypatch.setattr(app_module, "load_model", lambda path: calls.append(path) or real(path))
    app = create_app(settings)
    assert calls == []  # nothing at build time
    with TestClient(app) as client:
        for _ in range(3):
            client.get("/api/users/1/recommendations")
    assert calls == [settings.model_dir]


# -- the answer cache ------------------------------------------------------------------------
def test_cached_answers_equal_computed_ones(client: TestClient, settings: Settings) -> None:
    paths = ["/api/users/5/recommendations?k=4", "/api/users/5/recommendations?k=4&genres=Drama",
             "/api/users/6/recommendations?explain=false"]
    first = [client.get(p).json() for p in paths]
    assert [client.get(p).json() for p in paths] == first  # hits
    with TestClient(create_app(settings.with_(cache_size=0))) as uncached:
        assert [uncached.get(p).json() for p in paths] == first


def test_profile_answers_follow_rating_changes(client: TestClient, artifact) -> None:  # type: ignore[no-untyped-def]
    profile, auth = new_profile(client)
    url = f"/api/profiles/{profile}/recommendations"
    client.put(f"/api/profiles/{profile}/ratings/1", json={"rating": 5}, headers=auth)
    one = client.get(url, headers=auth).json()
    client.get(url, headers=auth)  # cached now
    client.put(f"/api/profiles/{profile}/ratings/1", json={"rating": 0.5}, headers=auth)
    changed = client.get(url, headers=auth).json()
    expected = artifact.model.recommend_for_ratings([(1, 0.5)], 10)["item"].tolist()
    assert [r["movie"]["item"] for r in changed["recommendations"]] == expected
    assert changed != one


def test_recommendation_bodies_are_what_their_response_models_would_send(client: TestClient) -> None:
    """The hot endpoints serialize without pydantic: their bodies must equal a round trip through
    the declared response models (same fields, types and shapes), with and without filters and
    explanations, for a known user and a profile, and for a rating written."""
    import json

    from movierec.service.schemas import ProfileRatingOut, ProfileRecommendationsOut, UserRecommendationsOut

    profile, auth = new_profile(client)
    for movie, rating in ((1, 5), (2, 4.5), (3, 1)):
        client.put(f"/api/profiles/{profile}/ratings/{movie}", json={"rating": rating}, headers=auth)
    cases = [(UserRecommendationsOut, f"/api/users/1/recommendations?{q}", None)
             for q in ("k=5", "k=3&explain=false", "k=4&years=1900-2100", "k=2&genres=Drama")]
    cases += [(ProfileRecommendationsOut, f"/api/profiles/{profile}/recommendations?{q}", auth)
              for q in ("k=5", "k=3&explain=false", "k=4&years=1900-2100")]
    seen_because = False
    for model, url, headers in cases:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.text)
        body = response.json()
        assert body == json.loads(model.model_validate(body).model_dump_json()), url
        seen_because |= any(row["because"] for row in body["recommendations"])
    assert seen_because  # explanations were in at least one body, so their shape was checked
    for movie, rating in ((1, 3.5), (1, 2)):  # a new rating, then a change (an int rating too)
        response = client.put(f"/api/profiles/{profile}/ratings/{movie}", json={"rating": rating},
                              headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body == json.loads(ProfileRatingOut.model_validate(body).model_dump_json())
        assert body["rating"] == rating and isinstance(body["rating"], float)


def test_answer_cache_is_bounded_lru() -> None:
    from movierec.service.state import AnswerCache

    cache = AnswerCache(2)
    cache.put("a", b"1")
    cache.put("b", b"2")
    assert cache.get("a") == b"1"  # a is now the most recent
    cache.put("c", b"3")
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (b"1", None, b"3", 2)
    off = AnswerCache(0)
    off.put("a", b"1")
    assert off.get("a") is None


def test_stored_movie_ids_map_back_to_the_models(model_dir: Path) -> None:
    """The store keeps movie ids as text: the service's own (str(raw)) map back by lookup, other
    spellings of a known id by parsing, and movies the served model does not know are left out."""
    from movierec.artifacts import load_model
    from movierec.service.routes.profiles import _known_pairs, _raw
    from movierec.service.state import Loaded

    loaded = Loaded(load_model(model_dir), model_dir)
    known = sorted(loaded.movies)[:2]
    stored = [(str(known[0]), 4.0), (f" 0{known[1]}", 2.5), ("999999", 5.0), ("abc", 1.0)]
    assert _known_pairs(loaded, stored) == [(known[0], 4.0), (known[1], 2.5)]
    assert [_raw(loaded, text) for text, _ in stored] == [known[0], known[1], None, None]
    assert all(loaded.movie_texts[str(raw)] == raw for raw in loaded.movies)
