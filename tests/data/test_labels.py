"""Rating-to-label maps: hand-computed values on whole and half stars."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.data.labels import LABEL_MAPS, binarize, like, tri_class
from recforge.data.synthetic import make_interactions
from recforge.errors import DataError

STARS = np.array([1, 2, 3, 4, 5], dtype=np.float32)
HALF = np.arange(1, 11) / 2  # 0.5, 1.0, ..., 5.0


def test_like_is_strictly_above_three() -> None:
    assert like(STARS).tolist() == [False, False, False, True, True]
    assert like(HALF).tolist() == [False] * 6 + [True] * 4  # 3.5 and up
    assert like(STARS, threshold=4).tolist() == [False, False, False, False, True]
    assert like(STARS).dtype == np.bool_


def test_tri_class_whole_stars() -> None:
    out = tri_class(STARS)
    assert out.tolist() == [-1, -1, 0, 1, 1]
    assert out.dtype == np.int8


def test_tri_class_half_stars_follow_the_sign_rule() -> None:
    #            0.5 1.0 1.5 2.0 2.5 3.0 3.5 4.0 4.5 5.0
    expected = [-1, -1, -1, -1, -1, 0, 1, 1, 1, 1]
    assert tri_class(HALF).tolist() == expected
    assert tri_class(HALF, neutral=2.5).tolist() == [-1, -1, -1, -1, 0, 1, 1, 1, 1, 1]


def test_tri_class_agrees_with_like() -> None:
    r = np.array([0.5, 2.5, 3.0, 3.5, 5.0, 1.0, 4.0])
    assert np.array_equal(tri_class(r) == 1, like(r))
    assert np.array_equal(tri_class(r) == -1, r < 3)


def test_tri_class_rejects_nan() -> None:
    with pytest.raises(DataError, match="position 1 is nan"):
        tri_class([4.0, np.nan])


def test_binarize_is_at_least_four() -> None:
    assert binarize(STARS).tolist() == [False, False, False, True, True]
    assert binarize(HALF).tolist() == [False] * 7 + [True] * 3  # 4.0 and up
    assert binarize(STARS, threshold=3).tolist() == [False, False, True, True, True]
    assert binarize([np.nan]).tolist() == [False]


def test_shapes_and_scalars_are_kept() -> None:
    grid = np.array([[1, 5], [3, 4]])
    assert like(grid).tolist() == [[False, True], [False, True]]
    assert tri_class(grid).tolist() == [[-1, 1], [0, 1]]
    assert bool(binarize(4.0)) is True
    assert int(tri_class(2)) == -1


def test_inputs_are_not_modified() -> None:
    r = STARS.copy()
    for fn in LABEL_MAPS.values():
        fn(r)
    assert np.array_equal(r, STARS)


def test_relabel_interactions() -> None:
    data = make_interactions(30, 20, seed=1).interactions
    relabelled = data.with_ratings(binarize(data.rating), implicit=True)
    assert relabelled.rating_scale is None
    assert relabelled.rating.tolist() == (data.rating >= 4).astype(np.float32).tolist()
    assert sorted(LABEL_MAPS) == ["binarize", "like", "tri_class"]
