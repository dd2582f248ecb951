"""The shared array idioms against their loop definitions."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from movierec._arrays import concat_ranges, run_positions


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
