"""keras_se.ratio_figures: the figures of a reduction-ratio search."""

from __future__ import annotations

import os

import numpy as np
import pytest

from keras_se import ratio_figures as rf
from tests.test_figures import _assert_written


@pytest.mark.slow  # 2 s or more on 2 cores
def test_ratio_tradeoff_one_labelled_point_per_ratio(tmp_path):
    def trial(ratio, accuracy, params, status="COMPLETED"):
        return {
            "hyperparameters": {"se_ratio": ratio, "squeeze": "avg"},
            "best_val_accuracy": accuracy,
            "params": params,
            "status": status,
        }

    results = [
        trial(16, 0.90, 1_100_000),
        trial(4, 0.91, 1_400_000),
        trial(4, 0.93, 1_400_000),  # the better trial of r=4 is drawn
        trial(8, None, None, status="FAILED"),
        trial(32, 0.70, 1_050_000, status="RUNNING"),
    ]
    paths = rf.plot_ratio_tradeoff(results, str(tmp_path / "ratio_tradeoff"))
    _assert_written(paths)
    ax = rf.ratio_tradeoff_figure(results).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["r=16", "r=4"]
    np.testing.assert_allclose(ax.get_lines()[0].get_xydata(), [[1.4, 0.93], [1.1, 0.90]])
    with pytest.raises(ValueError, match="no completed trial"):
        rf.plot_ratio_tradeoff(results[3:4], str(tmp_path / "none"))


@pytest.mark.slow  # 2 s or more on 2 cores
def test_specificity_by_ratio_draws_one_line_per_ratio(tmp_path):
    trials = [
        {
            "hyperparameters": {"se_ratio": r},
            "specificity": s,
            "blocks": ["SE_2_1", "SE_3_1", "SE_4_1"],
            "status": "COMPLETED",
        }
        for r, s in [(16, [0.3, None, 0.7]), (4, [0.35, 0.5, 0.8])]
    ] + [{"hyperparameters": {"se_ratio": 8}, "status": "FAILED"}]
    fig = rf.specificity_by_ratio_figure(trials)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [
        "r=4",
        "r=16",
    ]  # sorted, failed left out
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.3, np.nan, 0.7])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SE_2_1", "SE_3_1", "SE_4_1"]
    png, svg = rf.plot_specificity_by_ratio(trials, str(tmp_path / "specificity_by_ratio"))
    assert os.path.getsize(png) > 0 and os.path.getsize(svg) > 0
    with pytest.raises(ValueError, match="no completed trial with per-block specificity"):
        rf.specificity_by_ratio_figure([{"hyperparameters": {"se_ratio": 4}}])
