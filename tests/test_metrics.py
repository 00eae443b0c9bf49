from __future__ import annotations

import numpy as np
import pytest

from hubroute.evaluation.metrics import backward_transfer, forgetting, hits, summarise, topk_accuracy
from hubroute.hub import ModelCard, Registry, RoutingExample

NAN = np.nan


def test_hits_levels():
    reg = Registry(
        [
            ModelCard("a", family="fa", domain="D1"),
            ModelCard("a2", family="fa", domain="D1"),
            ModelCard("b", family="fb", domain="D1"),
            ModelCard("c", family="fc", domain="D2"),
        ]
    )
    ex = [RoutingExample("p", "a", "D1", "fa")] * 4
    ranked = np.array([[0, 3], [1, 0], [2, 0], [3, 2]])
    h = hits(ranked, ex, reg)
    assert h["M"][:, 0].tolist() == [True, False, False, False]
    assert h["F"][:, 0].tolist() == [True, True, False, False]
    assert h["D"][:, 0].tolist() == [True, True, True, False]
    assert topk_accuracy(h["M"], 1) == 25.0
    assert topk_accuracy(h["M"], 2) == 75.0
    assert topk_accuracy(h["D"], 2) == 100.0


def test_gold_is_right_at_every_level_even_with_other_labels():
    # the example's domain label differs from the gold card's registered domain
    reg = Registry([ModelCard("a", family="fa", domain="D1"), ModelCard("b", family="fb", domain="D2")])
    h = hits(np.array([[0], [1]]), [RoutingExample("p", "a", "D2", "fx")] * 2, reg)
    assert h["D"][:, 0].tolist() == [True, True]
    assert h["F"][:, 0].tolist() == [True, False]


def test_matrix_summaries_by_hand():
    acc = np.array(
        [
            [80.0, NAN, NAN],
            [60.0, 70.0, NAN],
            [50.0, 65.0, 90.0],
        ]
    )
    s = summarise(acc)
    assert s["final_average"] == pytest.approx((50 + 65 + 90) / 3)
    assert s["stream_average"] == pytest.approx((80 + 70 + 90) / 3)
    # forgetting: exp1 best 80 -> 50 (30); exp2 best 70 -> 65 (5)
    assert forgetting(acc) == pytest.approx(17.5)
    assert backward_transfer(acc) == pytest.approx(((50 - 80) + (65 - 70)) / 2)


def test_forgetting_uses_best_earlier_not_diagonal():
    acc = np.array([[40.0, NAN, NAN], [60.0, 50.0, NAN], [45.0, 50.0, 10.0]])
    assert forgetting(acc) == pytest.approx(((60 - 45) + (50 - 50)) / 2)
    assert backward_transfer(acc) == pytest.approx(((45 - 40) + 0) / 2)


def test_single_experience():
    acc = np.array([[42.0]])
    assert forgetting(acc) == 0.0 and backward_transfer(acc) == 0.0
    assert summarise(acc)["final_average"] == 42.0
