"""The shared array idioms against their loop definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec import _arrays
from movierec._arrays import concat_ranges, run_positions, stable_argsort


@given(st.lists(st.tuples(st.integers(-50, 50), st.integers(0, 6)), max_size=20))
def test_ranges_and_positions_are_the_concatenated_aranges(pairs):
    starts = np.array([s for s, _ in pairs], dtype=np.int64)
    lengths = np.array([n for _, n in pairs], dtype=np.int64)
    want = [np.arange(s, s + n) for s, n in pairs]
    got = concat_ranges(starts, lengths)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.concatenate([np.empty(0, np.int64), *want]))
    positions = run_positions(lengths.astype(np.int32))  # any integer counts
    np.testing.assert_array_equal(positions, np.concatenate([np.empty(0, np.int64),
                                                             *(np.arange(n) for _, n in pairs)]))


def test_positions_by_hand():
    np.testing.assert_array_equal(run_positions(np.array([2, 0, 3, 1])), [0, 1, 0, 1, 2, 0])
    np.testing.assert_array_equal(concat_ranges(np.array([5, 9]), np.array([2, 3])), [5, 6, 9, 10, 11])


_DTYPES = [np.int8, np.int32, np.int64, np.uint16, np.uint64, np.bool_]


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(_DTYPES), n=st.integers(0, 300),
       span=st.sampled_from([1, 3, 50, 2**20, 2**62]), block=st.sampled_from([1, 7, 1 << 22]), data=st.data())
def test_stable_argsort_is_numpys_stable_argsort(dtype, n, span, block, data):
    """Packed (every array here, with the size floor lowered), in blocks of any size, falling back
    where key range and row numbers need more than 63 bits: the order of numpy's stable sort."""
    info = np.iinfo(dtype) if dtype is not np.bool_ else None
    if info is None:
        keys = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=np.bool_)
    else:
        low = data.draw(st.integers(info.min, info.max))
        high = min(info.max, low + span)
        keys = np.array(data.draw(st.lists(st.integers(low, high), min_size=n, max_size=n)), dtype=dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_arrays, "_PACKED_MIN", 0)
        patch.setattr(_arrays, "_PACK_BLOCK", block)
        got = stable_argsort(keys)
    np.testing.assert_array_equal(got, np.argsort(keys, kind="stable"))
    assert got.dtype == np.int64


def test_stable_argsort_by_hand_and_its_fallbacks():
    keys = np.array([3, -1, 3, 0, -1, 3], dtype=np.int64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_arrays, "_PACKED_MIN", 0)
        np.testing.assert_array_equal(stable_argsort(keys), [1, 4, 3, 0, 2, 5])
        # the key range alone takes 64 bits: numpy's stable sort
        wide = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min, 0])
        np.testing.assert_array_equal(stable_argsort(wide), [1, 2, 0])
        np.testing.assert_array_equal(stable_argsort(np.array([2.5, 1.0, 2.5])), [1, 0, 2])  # floats
    big = np.random.default_rng(0).integers(0, 1000, 200_000)  # above the floor: packed
    np.testing.assert_array_equal(stable_argsort(big), np.argsort(big, kind="stable"))
