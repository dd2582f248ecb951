"""Approximate retrieval (`movierec.retrieval`) against the exact path: the same lists when calibrated
to full recall, recall >= the target otherwise, seen movies and filters always respected, stale indexes
refused and rebuilt, and exact scoring with a warning where faiss is missing."""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.artifacts import load_model, save_model
from movierec.data.synth import synthesize
from movierec.errors import ConfigError
from movierec.models.core.topk import top_k
from movierec.models.registry import create_model
from movierec.retrieval import ANN_MIN_ITEMS, AnnIndex, attach, describe, faiss_gpus
from movierec.retrieval.index import INDEX_FILE, META_FILE, exact_scores

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason="faiss is not installed (pip install 'movierec[ann]')")


@pytest.fixture(scope="module")
def data():
    return synthesize(300, 1500, 15000, seed=4)


def _fit(name: str, data: Any, seed: int = 0):
    params = {"factors": 8, "epochs": 2, "random_state": seed}
    return create_model(name, **params).fit(data.ratings, catalog=data.catalog)


def _exhaustive(retriever: Any) -> Any:
    """Probe every list: the index's answers are then exact (its vectors are stored in full)."""
    retriever.index.nprobe = retriever.index.nlist
    return retriever


def _exact(model: Any, users: np.ndarray, k: int, **kwargs: Any):
    retriever, model.retriever = model.retriever, None
    try:
        return model.recommend_indices(users, k, **kwargs)
    finally:
        model.retriever = retriever


@needs_faiss
@pytest.mark.parametrize("name", ["ials", "biased-mf-als"])
def test_an_exhaustive_index_gives_the_exact_lists(name: str, data: Any) -> None:
    model = _fit(name, data)
    retriever = _exhaustive(attach(model, ann="on", target_recall=1.0))
    assert retriever is not None and model.retriever is retriever
    users = np.arange(len(model.users_))
    got_items, got_scores = model.recommend_indices(users, 10)
    want_items, want_scores = _exact(model, users, 10)
    assert retriever.ann_users > 0
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)


@needs_faiss
def test_default_calibration_reaches_the_target_recall(data: Any) -> None:
    model = _fit("ials", data)
    retriever = attach(model, ann="on")
    assert retriever.index.recall >= 0.98
    users = np.arange(len(model.users_))
    got, _ = model.recommend_indices(users, 10, exclude_seen=False)
    parts = model._dot_parts()
    exact = exact_scores(parts, users)
    kth = top_k(exact, 10)[1][:, -1:]
    hit = exact[users[:, None], got] >= kth - 1e-9
    assert hit.mean() >= 0.98
    # with seen movies excluded (fetched deeper): the same recall against the exact lists
    got, _ = model.recommend_indices(users, 10)
    seen = model.seen_.toarray() > 0
    exact[seen] = -np.inf
    kth = top_k(exact, 10)[1][:, -1:]
    assert (exact[users[:, None], got] >= kth - 1e-9).mean() >= 0.98


@needs_faiss
def test_seen_movies_and_filters_hold(data: Any) -> None:
    model = _fit("biased-mf-als", data)
    _exhaustive(attach(model, ann="on"))
    users = np.arange(len(model.users_))
    candidates = model.candidate_mask(genres=["Drama", "Comedy"])
    got, got_scores = model.recommend_indices(users, 20, candidates=candidates)
    seen = model.seen_
    for u in users:
        row = got[u][got[u] >= 0]
        assert not set(row.tolist()) & set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
        assert candidates[row].all()
    want, want_scores = _exact(model, users, 20, candidates=candidates)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)


@needs_faiss
def test_negative_user_indices_count_from_the_end_and_out_of_range_ones_fail(data: Any) -> None:
    model = _fit("ials", data)
    _exhaustive(attach(model, ann="on"))
    users = np.array([-1, 0, -len(model.users_), 7])
    got, got_scores = model.recommend_indices(users, 10)
    want, want_scores = _exact(model, users, 10)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5)
    np.testing.assert_array_equal(got[0], model.recommend_indices(np.array([len(model.users_) - 1]),
                                                                  10)[0][0])
    for outside in (len(model.users_), -len(model.users_) - 1):
        with pytest.raises(IndexError):
            model.recommend_indices(np.array([outside]), 10)
        with pytest.raises(IndexError):
            _exact(model, np.array([outside]), 10)


@needs_faiss
def test_a_user_whose_candidates_run_out_is_scored_exactly(data: Any) -> None:
    model = _fit("ials", data)
    retriever = attach(model, ann="on")
    users = np.arange(len(model.users_))
    candidates = np.zeros(len(model.items_), dtype=bool)
    candidates[np.random.default_rng(0).choice(len(model.items_), 6, replace=False)] = True
    got, got_scores = model.recommend_indices(users, 10, candidates=candidates)
    want, _ = _exact(model, users, 10, candidates=candidates)
    np.testing.assert_array_equal(got, want)  # 6 movies or fewer, then -1 padding, like the exact path
    assert (got[:, 6:] == -1).all() and np.isneginf(got_scores[:, 6:]).all()
    assert retriever.exact_users > 0


@needs_faiss
def test_monotone_parts_show_the_models_own_scores(data: Any) -> None:
    model = create_model("dot-bias-sigmoid", factors=8, epochs=2).fit(data.ratings)
    attach(model, ann="on")
    items, scores = model.recommend_indices(np.arange(20), 5)
    rows = np.repeat(np.arange(20), 5)
    np.testing.assert_allclose(scores.ravel(), model._predict(rows, items.ravel()))
    low, high = model.scale_
    assert ((scores >= low) & (scores <= high)).all()


@needs_faiss
def test_the_index_is_saved_reused_and_a_stale_one_rebuilt(data: Any, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    folder = save_model(_fit("ials", data), tmp_path / "model")
    model = load_model(folder).model
    first = attach(model, folder, ann="on")
    assert (folder / INDEX_FILE).is_file() and (folder / META_FILE).is_file()
    load_model(folder)  # the extra files do not disturb the artifact

    def no_build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("rebuilt an index that matches")

    again = load_model(folder).model
    with monkeypatch.context() as patch:
        patch.setattr(AnnIndex, "build", no_build)
        reused = attach(again, folder, ann="on")
    assert reused.index.fingerprint == first.index.fingerprint
    assert reused.index.nprobe == first.index.nprobe
    assert reused.index.seen_ahead == first.index.seen_ahead < 1.0
    users = np.arange(len(again.users_))
    np.testing.assert_array_equal(again.recommend_indices(users, 10)[0],
                                  model.recommend_indices(users, 10)[0])

    other = _fit("ials", data, seed=7)  # another version of the model, pointed at the old index
    with caplog.at_level(logging.WARNING, logger="movierec.retrieval"):
        rebuilt = attach(other, folder, ann="on")
    assert "built for another model version" in caplog.text
    assert rebuilt.index.fingerprint != first.index.fingerprint
    with monkeypatch.context() as patch:  # and the rebuilt one was saved in its place
        patch.setattr(AnnIndex, "build", no_build)
        assert attach(other, folder, ann="on").index.fingerprint == rebuilt.index.fingerprint


@needs_faiss
def test_a_corrupt_index_file_is_rebuilt(data: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _fit("ials", data)
    attach(model, tmp_path, ann="on")
    (tmp_path / INDEX_FILE).write_bytes(b"not an index")
    with caplog.at_level(logging.WARNING, logger="movierec.retrieval"):
        assert attach(model, tmp_path, ann="on") is not None
    assert "corrupt" in caplog.text


@needs_faiss
@pytest.mark.parametrize(("edit", "said"), [
    ({"format_version": 1}, "unknown format"),  # written before seen_ahead was kept
    ({"seen_ahead": None}, "incomplete metadata"),
    ({"seen_ahead": 1.5}, "invalid metadata"),
    ({"nprobe": 0}, "invalid metadata"),
    ({"n_items": "many"}, "incomplete metadata"),
])
def test_metadata_from_another_format_or_out_of_range_is_rebuilt(data: Any, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture,
                                                                 edit: dict, said: str) -> None:
    import json

    model = _fit("ials", data)
    built = attach(model, tmp_path, ann="on").index
    meta = json.loads((tmp_path / META_FILE).read_text())
    (tmp_path / META_FILE).write_text(json.dumps({**meta, **edit}))
    with caplog.at_level(logging.WARNING, logger="movierec.retrieval"):
        rebuilt = attach(model, tmp_path, ann="on").index
    assert said in caplog.text
    assert rebuilt is not built and rebuilt.seen_ahead == built.seen_ahead
    assert json.loads((tmp_path / META_FILE).read_text()) == meta  # and saved again, whole


def test_without_faiss_the_model_scores_exactly(data: Any, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    model = _fit("ials", data)
    with caplog.at_level(logging.WARNING, logger="movierec.retrieval"):
        assert attach(model, ann="on") is None
    assert model.retriever is None
    notices = [r for r in caplog.records if "faiss is not installed" in r.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0].getMessage()
    users = np.arange(len(model.users_))
    np.testing.assert_array_equal(model.recommend_indices(users, 5)[0], _exact(model, users, 5)[0])


@needs_faiss
def test_auto_uses_an_index_only_for_large_catalogs(data: Any) -> None:
    model = _fit("ials", data)
    assert len(model.items_) < ANN_MIN_ITEMS
    assert attach(model) is None and model.retriever is None
    assert attach(model, min_items=len(model.items_)) is not None
    assert attach(model, ann="off") is None and model.retriever is None


@needs_faiss
def test_auto_keeps_exact_ranking_where_it_scores_few_movies(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """iALS on 5,000 movies: its exact ranking stops after the first stage of 1,024 movies (a share
    of 0.2048 of the scores); with a threshold above that, auto ranks exactly (saying so), below it
    auto builds the index; "on" always does."""
    from movierec.retrieval import retriever as retriever_module

    model = _fit("ials", synthesize(1500, 5000, 60_000, seed=1))
    assert retriever_module._exact_share(model) == pytest.approx(1024 / 5000)
    monkeypatch.setattr(retriever_module, "EXACT_SHARE", 0.25)
    with caplog.at_level(logging.INFO, logger="movierec.retrieval"):
        assert attach(model, min_items=1) is None and model.retriever is None
    assert any("ials ranks exactly: its exact ranking scores 20.5% of the movies" in r.getMessage()
               for r in caplog.records)
    assert attach(model, ann="on") is not None
    monkeypatch.setattr(retriever_module, "EXACT_SHARE", 0.2)
    assert attach(model, min_items=1) is not None


def test_bad_modes_and_models_without_inner_products_are_refused(data: Any) -> None:
    model = create_model("popularity").fit(data.ratings)
    with pytest.raises(ConfigError, match="ann must be one of auto, on, off, got 'sometimes'"):
        attach(model, ann="sometimes")
    with pytest.raises(ConfigError, match="popularity does not score by inner products"):
        attach(model, ann="on")
    assert attach(model, ann="auto", min_items=1) is None


@needs_faiss
def test_refitting_drops_the_index(data: Any) -> None:
    model = _fit("ials", data)
    retriever = attach(model, ann="on")
    model.fit(data.ratings)
    assert model.retriever is None
    # a retriever kept by hand for replaced arrays declines, and the exact path answers
    assert retriever.top_k(model, np.arange(3), 5, None, None) is None


@needs_faiss
def test_the_service_ranks_a_large_catalog_through_the_index(data: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from movierec.retrieval import retriever as retriever_module
    from movierec.service.state import Loaded

    folder = save_model(_fit("ials", data), tmp_path / "model")
    small = Loaded(load_model(folder), folder)
    assert small.model.retriever is None  # 1,500 movies: below the automatic threshold
    monkeypatch.setattr(retriever_module, "ANN_MIN_ITEMS", len(small.model.items_))
    loaded = Loaded(load_model(folder), folder)
    assert loaded.model.retriever is not None and (folder / INDEX_FILE).is_file()
    user = loaded.model.users_.ids[0]
    picks = loaded.model.picks(user, 10)
    assert len(picks.items) == 10 and loaded.model.retriever.ann_users == 1


@needs_faiss
def test_identical_movies_are_stored_once_and_all_come_back() -> None:
    from movierec.models.core.recommender import DotParts

    rng = np.random.default_rng(0)
    items = rng.normal(size=(120, 4)).astype(np.float32)
    items[::3] = 0.0  # 40 movies without ratings: one stored row
    offsets = np.where(np.arange(120) % 3 == 0, 0.0, rng.normal(size=120)).astype(np.float32)
    users = rng.normal(size=(15, 4)).astype(np.float32)
    parts = DotParts(users, items, offsets, True)
    index = AnnIndex.build(parts)
    assert index.index.ntotal == 81 and index.n_items == 120
    found, inner = index.search(users, 100, nprobe=index.nlist)  # exhaustive
    exact = exact_scores(parts, np.arange(15))
    for u in range(15):
        want = np.lexsort((np.arange(120), -exact[u]))[:100]
        np.testing.assert_allclose(np.sort(exact[u][found[u]]), np.sort(exact[u][want]), rtol=1e-5)
        zeros = found[u][found[u] % 3 == 0]
        assert np.all(np.diff(zeros) > 0)  # a group's movies in ascending order, as ties break
        np.testing.assert_allclose(inner[u], exact[u][found[u]], rtol=1e-4, atol=1e-5)


@needs_faiss
def test_distinct_movies_keep_their_indices() -> None:
    from movierec.models.core.recommender import DotParts

    rng = np.random.default_rng(1)
    parts = DotParts(rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(80, 3)).astype(np.float32),
                     rng.normal(size=80).astype(np.float32), True)
    index = AnnIndex.build(parts)
    found, _ = index.search(parts.users, 10, nprobe=index.nlist)
    want = np.argsort(-exact_scores(parts, np.arange(5)), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(found, want)


def test_calibration_stops_at_the_first_step_that_reaches_the_target() -> None:
    from movierec.retrieval.index import _probe_steps

    assert _probe_steps(283) == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56,
                                 64, 80, 96, 112, 128, 160, 192, 224, 256, 283]
    assert _probe_steps(1) == [1] and _probe_steps(3) == [1, 2, 3]
    index = AnnIndex(None, np.ones(2, bool), 1, float("nan"), "", 100, 283, (np.empty(0),) * 3)
    tried: list[int] = []

    def recall_at(nprobe: int) -> float:
        tried.append(nprobe)
        return min(1.0, nprobe / 22)  # reaches 0.98 from 21.56 lists up

    index.calibrate(recall_at, 0.98)
    assert index.nprobe == 24 and index.recall == 1.0
    assert tried == [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24]
    index.calibrate(lambda nprobe: 0.5, 0.98)  # never reached: every list, exhaustive
    assert index.nprobe == 283 and index.recall == 0.5


@given(st.integers(1, 40), st.integers(1, 60), st.integers(1, 12), st.integers(1, 500), st.integers(0, 10**6))
@settings(max_examples=60, deadline=None)
def test_dropping_seen_movies_matches_a_set_lookup(n_users: int, n_items: int, m: int, mask: int,
                                                   seed: int) -> None:
    from movierec.retrieval.retriever import _drop_seen

    rng = np.random.default_rng(seed)
    seen = [np.sort(rng.choice(n_items, rng.integers(0, n_items + 1), replace=False)) for _ in range(n_users)]
    position = np.repeat(np.arange(n_users), [len(s) for s in seen])
    movies = np.concatenate(seen).astype(np.int64) if position.size else np.empty(0, np.int64)
    found = rng.integers(-1, n_items, size=(n_users, m))
    valid = found >= 0
    sets = [set(s.tolist()) for s in seen]
    want = valid & np.array([[f not in s for f in row] for row, s in zip(found, sets, strict=True)])
    _drop_seen(valid, found, (position, movies), n_items, mask_elements=mask)  # blocks of any size
    np.testing.assert_array_equal(valid, want)


@needs_faiss
def test_recommend_all_asks_the_index_for_its_batches(data: Any, tmp_path: Path) -> None:
    """With a retriever, recommend-all's default chunk is the retriever's batch (not the exact
    path's users x movies budget), and the file is still `recommend` user by user."""
    import pandas as pd

    from movierec.export import recommend_all

    model = _fit("ials", data)
    retriever = attach(model, ann="on")
    retriever.batch_users = 128
    done: list[int] = []
    recommend_all(model, tmp_path / "top.parquet", 5, progress=lambda n, total: done.append(n))
    assert done == [128, 256, 300]
    written = pd.read_parquet(tmp_path / "top.parquet")
    for user, rows in written.groupby("user", sort=False):
        want = model.recommend(user, k=5)
        assert rows["item"].tolist() == want["item"].tolist()
        np.testing.assert_allclose(rows["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-12)


@needs_faiss
@given(st.integers(0, 10**6), st.sampled_from([1e-3, 1.0, 1e3]), st.sampled_from([np.float32, np.float64]))
@settings(max_examples=15, deadline=None)
def test_the_index_products_are_within_half_the_bound(seed: int, scale: float, dtype: type) -> None:
    """`AnnRetriever._bound` (doubled) holds every float32 product the index returns to within half
    of it of the exact product of the stored row and the query, whatever the factors' scale."""
    from movierec.models.core.recommender import DotParts
    from movierec.retrieval.retriever import AnnRetriever

    rng = np.random.default_rng(seed)
    users = (rng.normal(size=(20, 6)) * scale).astype(dtype)
    items = (rng.standard_t(2, size=(200, 6)) * scale).astype(dtype)  # heavy tails: norms far apart
    offsets = (rng.normal(size=200) * scale).astype(dtype)
    parts = DotParts(users, items, offsets, True)
    index = AnnIndex.build(parts)
    found, inner = index.search(users, 200, nprobe=index.nlist)
    exact = exact_scores(parts, np.arange(20), found)  # no column is constant: nothing dropped
    bound = AnnRetriever(index, parts)._bound(np.asarray(users, np.float64))
    assert (np.abs(inner.astype(np.float64) - exact) <= bound[:, None] / 2).all()
    assert (bound < 1e-3 * (np.abs(exact).max(axis=1) + 1e-300)).all()  # and it is no wide margin


@needs_faiss
def test_ties_at_the_lists_edge_take_the_spare_candidates(data: Any) -> None:
    """Where the float32 products cannot settle a list's edge (here: pairs of movies with the same
    vector, so equal scores), `_SPARE` more candidates are re-scored and ties break by movie index
    as on the exact path; rows whose edge is clear re-score their k movies only. The lists are the
    exact ones either way, and when nothing can be proven every user is scored exactly."""
    import movierec.models.core.dot_topk as dot_topk
    import movierec.retrieval.retriever as retriever_module

    model = _fit("ials", data)
    half = len(model.items_) // 2
    model.item_factors_[half : 2 * half] = model.item_factors_[:half]  # movie i + half ties with i
    model.item_bias_[half : 2 * half] = model.item_bias_[:half]
    retriever = _exhaustive(attach(model, ann="on", target_recall=1.0))
    widths: list[int] = []
    rescore = dot_topk.rescore_top

    def counting(users64, items, offsets, kept, width):
        widths.append(kept.shape[1])
        return rescore(users64, items, offsets, kept, width)

    users = np.arange(len(model.users_))
    want = _exact(model, users, 10)
    retriever_module.rescore_top = counting
    try:
        got = model.recommend_indices(users, 10)
        radius, retriever.index.radius = retriever.index.radius, float("nan")  # nothing proven:
        spares = model.recommend_indices(users, 10)  # nor settled, every user scored exactly
        retriever.index.radius = radius
    finally:
        retriever_module.rescore_top = rescore
    for ours in (got, spares):
        np.testing.assert_array_equal(ours[0], want[0])
        np.testing.assert_allclose(ours[1], want[1], rtol=1e-12)  # sums in another order
    assert 10 in widths and 10 + retriever_module._SPARE in widths


@needs_faiss
def test_the_first_fetch_makes_room_for_the_seen_movies_then_doubles(data: Any) -> None:
    """A user's first fetch holds k, the seen movies the calibration expects above the k-th unseen
    one (`AnnIndex.seen_ahead` of their seen count) and `_FETCH_MARGIN`, rounded up to a power of
    two; a user whose list does not fill is fetched again at 2x the depth each round (not straight
    at the depth that all their seen movies would need), and still gets the exact list."""
    import movierec.retrieval.retriever as retriever_module

    model = _fit("ials", data)
    retriever = _exhaustive(attach(model, ann="on", target_recall=1.0))
    assert 0.0 < retriever.index.seen_ahead < 1.0  # ials ranks some seen movies first, not all
    depths: dict[int, list[int]] = {}
    from_index = retriever._from_index

    def recording(parts, users, m, *args):
        for user in users.tolist():
            depths.setdefault(user, []).append(m)
        return from_index(parts, users, m, *args)

    retriever._from_index = recording
    users = np.arange(len(model.users_))
    want = _exact(model, users, 10)
    seen = np.diff(model.seen_.indptr)
    n_items = len(model.items_)
    for share in (retriever.index.seen_ahead, 0.0):  # calibrated; none expected: lists come up short
        retriever.index.seen_ahead = share
        depths.clear()
        got = model.recommend_indices(users, 10)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
        for user, ms in depths.items():
            need = 10 + int(np.ceil(share * seen[user])) + retriever_module._FETCH_MARGIN
            deep = 10 + seen[user]  # at least: the deepest fetch holds every seen movie
            assert ms[0] == min(1 << int(np.ceil(np.log2(need))), n_items) or ms[0] >= deep, (user, ms)
            assert all(b == min(2 * a, n_items) for a, b in itertools.pairwise(ms)), (user, ms)
        if share:
            assert len({ms[0] for ms in depths.values()}) >= 2  # more seen movies: a deeper first fetch
            calibrated_rounds = max(len(ms) for ms in depths.values())
    assert {ms[0] for ms in depths.values()} == {16}
    short = sum(len(ms) >= 2 for ms in depths.values())
    assert short > len(users) // 10 and calibrated_rounds == 1  # the share spares the second rounds


def test_seen_ahead_is_the_share_of_seen_movies_above_the_kth_unseen_one() -> None:
    """By hand: one factor, scores = item factors; users 0-2 have seen movies, user 3 none."""
    import scipy.sparse as sp

    from movierec.models.core.recommender import DotParts
    from movierec.retrieval.retriever import _seen_ahead

    items = np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], dtype=np.float32)
    parts = DotParts(np.ones((4, 1), np.float32), items, np.zeros(5), True)
    seen = sp.csr_matrix(np.array([[1, 1, 0, 0, 0],    # both above the 2nd unseen (2.0): 2 of 2
                                   [1, 0, 0, 0, 1],    # 5.0 above 3.0, 1.0 not: 1 of 2
                                   [0, 0, 0, 1, 0],    # 2.0 below 4.0: 0 of 1
                                   [0, 0, 0, 0, 0]]))  # none seen: does not count
    kth = np.array([[2.0], [3.0], [4.0], [4.0]])  # each user's 2nd best unseen score
    users = np.arange(4)
    assert _seen_ahead(parts, users, kth, seen, quantile=1.0) == 1.0
    assert _seen_ahead(parts, users, kth, seen, quantile=0.5) == 0.5
    assert _seen_ahead(parts, users, kth, seen, quantile=0.0) == 0.0
    # a score equal to the k-th counts as ahead (ties may come first); -inf: too few unseen, skipped
    assert _seen_ahead(parts, users, np.array([[2.0], [3.0], [2.0], [4.0]]), seen, quantile=0.5) == 1.0
    assert _seen_ahead(parts, users, np.array([[2.0], [-np.inf], [4.0], [4.0]]), seen, 0.5) == 0.5
    assert _seen_ahead(parts, users[3:], kth[3:], seen[3:]) == 1.0  # nobody counts: the safe default


@needs_faiss
def test_calibration_measures_how_often_a_model_ranks_seen_movies_first(data: Any) -> None:
    """iALS (fitted to predict what users watched) ranks more of their seen movies above their
    10th unseen one than biased-mf-als (fitted to ratings); each index's share is the quantile of
    the calibration users' own shares, computed from the exact scores."""
    from movierec.retrieval.retriever import _calibration_users, _seen_ahead
    from movierec.retrieval.retriever import _exact as exact_lists

    shares = {}
    for name in ("ials", "biased-mf-als"):
        model = _fit(name, data)
        index = attach(model, ann="on").index
        parts = model._dot_parts()
        users = _calibration_users(len(parts.users))
        kth = exact_scores(parts, users, exact_lists(model, users, 10, model.seen_, None)[0][:, -1:])
        tolerance = 1e-6 * np.maximum(np.abs(kth), 1.0)
        assert index.seen_ahead == _seen_ahead(parts, users, kth - tolerance, model.seen_[users])
        shares[name] = index.seen_ahead
    assert shares["ials"] > 2 * shares["biased-mf-als"]


@needs_faiss
def test_a_tie_group_wider_than_the_spares_keeps_the_lowest_indices(data: Any) -> None:
    """50 unrated movies (zero vectors, stored once) tie at the list's edge, more than the spares
    hold: the list keeps the lowest indices as the exact path does (an unordered partition of the
    candidates once took arbitrary ones; now such users are scored exactly)."""
    model = _fit("ials", data)
    n_items = len(model.items_)
    rng = np.random.default_rng(7)
    factors = np.full(model.item_factors_.shape, -1.0, dtype=np.float32)  # every other movie scores < 0
    cold = np.sort(rng.choice(n_items, 50, replace=False))
    factors[cold] = 0.0
    hot = rng.choice(np.setdiff1d(np.arange(n_items), cold), 3, replace=False)
    factors[hot] = 1.0
    model.item_factors_ = factors
    model.item_bias_ = np.zeros_like(model.item_bias_)
    model.user_factors_ = np.abs(model.user_factors_) + 0.1  # positive: hot > cold (0) > the rest
    _exhaustive(attach(model, ann="on", target_recall=1.0))
    users = np.arange(40)
    got = model.recommend_indices(users, 10, exclude_seen=False)
    want = _exact(model, users, 10, exclude_seen=False)
    np.testing.assert_array_equal(got[0], want[0])
    assert set(got[0][:, 3:].ravel().tolist()) == set(cold[:7].tolist())


@needs_faiss
def test_near_ties_past_the_spares_are_scored_exactly(data: Any) -> None:
    """Movies whose float32 rows are equal (one stored row) but whose float64 scores differ below
    float32's resolution: the index cannot order them, so users whose list edge falls among them are
    scored exactly and still get the exact lists."""
    from movierec.models.core.recommender import DotParts

    model = _fit("biased-mf-als", data)
    parts = model._dot_parts()
    n_items = len(model.items_)
    group = np.arange(0, n_items, 5)[:60]
    items = np.asarray(parts.items, np.float64).copy()
    offsets = np.asarray(parts.offsets, np.float64).copy()
    items[group] = 0.0
    offsets[group] = offsets.max() + 10 + np.random.default_rng(2).permutation(60) * 1e-12
    model._dot_parts = lambda: DotParts(parts.users, items, offsets, False)  # type: ignore[method-assign]
    model._score_users = lambda u: (np.asarray(parts.users[u], np.float64) @ items.T  # type: ignore
                                    + offsets)
    model._predict = lambda u, i: (np.einsum("nk,nk->n", np.asarray(parts.users[u], np.float64),  # type: ignore
                                             items[i]) + offsets[i])
    retriever = attach(model, ann="on", target_recall=1.0)
    _exhaustive(retriever)
    users = np.arange(30)
    got = model.recommend_indices(users, 10, exclude_seen=False)
    want = _exact(model, users, 10, exclude_seen=False)
    np.testing.assert_array_equal(got[0], want[0])
    assert retriever.exact_users == len(users)


class _Recording:
    """A faiss index that notes each search's depth and nprobe, answered by the index it wraps."""

    def __init__(self, index: Any) -> None:
        self.inner, self.searches = index, []

    def search(self, x: np.ndarray, k: int, params: Any = None) -> Any:
        self.searches.append((int(k), None if params is None else int(params.nprobe)))
        return self.inner.search(x, k, params=params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@needs_faiss
def test_the_gpu_copy_answers_what_its_k_selection_allows_and_the_cpu_index_the_rest(
        data: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    from movierec.retrieval import index as index_module

    model = _fit("ials", data)
    index = _exhaustive(attach(model, ann="on")).index
    # a CPU clone stands in for the GPU copy (this machine has none): what is checked is which
    # index answers which search, and that the lists are the same whichever does
    limit = index.nlist  # so that the exhaustive probe (every list) fits on the "GPU"
    monkeypatch.setattr(index_module, "GPU_MAX_K", limit)
    index.gpu, index.index = _Recording(faiss.clone_index(index.index)), _Recording(index.index)
    vectors = model._dot_parts().users[:5]
    shallow, deep = index.search(vectors, limit), index.search(vectors, limit + 1)
    wide = index.search(vectors, 8, nprobe=limit + 1)
    assert index.gpu.searches == [(limit, limit)]
    assert index.index.searches == [(limit + 1, limit), (8, limit + 1)]
    np.testing.assert_array_equal(shallow[0], deep[0][:, :limit])
    np.testing.assert_array_equal(wide[0], shallow[0][:, :8])
    # through the retriever: shallow fetches on the "GPU", deeper ones on the CPU, exact lists
    index.gpu.searches.clear()
    index.index.searches.clear()
    users = np.arange(len(model.users_))
    got_items, _ = model.recommend_indices(users, 10)
    np.testing.assert_array_equal(got_items, _exact(model, users, 10)[0])
    assert index.gpu.searches and all(k <= limit for k, _ in index.gpu.searches)
    assert index.index.searches and all(k > limit for k, _ in index.index.searches)


@needs_faiss
@pytest.mark.skipif(faiss_gpus() > 0, reason="faiss can use a GPU here")
def test_asking_for_a_gpu_index_without_gpu_faiss_is_one_clear_error(data: Any) -> None:
    model = _fit("biased-mf-als", data)
    with pytest.raises(ConfigError, match=r"faiss cannot use GPU 0 here \(0 GPU\(s\).*faiss-gpu-cu12"):
        attach(model, ann="on", gpu=True)
    assert model.retriever is None
    retriever = attach(model, ann="on")  # the default uses a GPU only where faiss has one
    assert retriever.index.gpu is None and " on GPU" not in describe(retriever)


@needs_faiss
@pytest.mark.skipif(faiss_gpus() == 0, reason="needs faiss built with CUDA (faiss-gpu-cu12) and a GPU")
@pytest.mark.parametrize("name", ["ials", "biased-mf-als"])
def test_a_gpu_index_gives_the_cpu_index_lists(name: str, data: Any) -> None:
    model = _fit(name, data)
    users = np.arange(len(model.users_))
    cpu = _exhaustive(attach(model, ann="on", gpu=False))
    cpu_items, cpu_scores = model.recommend_indices(users, 10)
    gpu = _exhaustive(attach(model, ann="on", gpu=True))
    assert gpu.index.gpu is not None and cpu.index.gpu is None
    assert describe(gpu).startswith("approximate top-k (faiss IVF on GPU 0,")
    items, scores = model.recommend_indices(users, 10)
    np.testing.assert_array_equal(items, cpu_items)
    np.testing.assert_array_equal(scores, cpu_scores)
    np.testing.assert_array_equal(items, _exact(model, users, 10)[0])
