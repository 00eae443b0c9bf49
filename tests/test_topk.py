from __future__ import annotations

import numpy as np
import pytest

from hubroute.index.topk import topk


def test_topk_sorted_and_masked():
    s = np.array([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    rows, vals = topk(s, 2)
    assert rows.tolist() == [[1, 3], [0, 1]]
    assert np.allclose(vals, [[0.9, 0.7], [0.4, 0.3]])
    rows, _ = topk(s, 3, active=np.array([True, False, True, True]))
    assert rows.tolist() == [[3, 2, 0], [0, 2, 3]]


def test_topk_clips_to_active_rows():
    s = np.ones((1, 3), dtype=np.float32)
    rows, _ = topk(s, 10, active=np.array([False, True, False]))
    assert rows.tolist() == [[1]]
    rows, _ = topk(s, 2, active=np.zeros(3, bool))
    assert rows.shape == (1, 0)


def test_topk_validates():
    with pytest.raises(ValueError):
        topk(np.ones((1, 3)), 0)
    with pytest.raises(ValueError, match="mask"):
        topk(np.ones((1, 3)), 1, active=np.ones(2, bool))
