"""keras_se.figures: the excitation figures 1–3 (their panels, lines and files)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from keras_se import analysis as an
from keras_se import figures as fg


def _synthetic_analysis(stages=(2, 2, 3), channels=(8, 16, 80), classes=6):
    """An ExcitationAnalysis with known layout: stages of 2, 2 and 3 blocks."""
    rng = np.random.default_rng(0)
    blocks, depth = [], 0
    for stage, (count, width) in enumerate(zip(stages, channels), start=1):
        for index in range(1, count + 1):
            depth += 1
            means = rng.uniform(0.2, 0.9, size=(classes, width))
            blocks.append(
                an.BlockStatistics(
                    name=f"block{depth}",
                    stage=stage,
                    index=index,
                    depth=depth,
                    channels=width,
                    class_counts=np.full(classes, 10.0),
                    class_means=means,
                    mean=means.mean(axis=0),
                    std=np.full(width, 0.1),
                    channel_specificity=np.full(width, depth / 10),
                    specificity=depth / 10,
                    class_spread=0.01 * depth,
                )
            )
    return an.ExcitationAnalysis(
        model_name="synthetic",
        class_names=[f"c{i}" for i in range(classes)],
        class_counts=np.full(classes, 10.0),
        num_images=10 * classes,
        blocks=blocks,
    )


def _svg_panels(path):
    with open(path) as f:
        return f.read().count('<g id="axes_')


def _assert_written(paths):
    png, svg = paths
    assert png.endswith(".png") and svg.endswith(".svg")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000 and os.path.getsize(svg) > 5000


@pytest.mark.slow  # 2 s or more on 2 cores
def test_excitation_and_specificity_figures_have_one_panel_per_block(tmp_path):
    result = _synthetic_analysis()
    paths = fg.plot_excitation_by_depth(result, tmp_path / "fig1")
    _assert_written(paths)
    # Default: last of stages 1 and 2, then the last stage's three blocks.
    assert _svg_panels(paths[1]) == 5
    fig = fg.excitation_by_depth_figure(result, blocks="all", classes=["c1", 5])
    assert len(fig.axes) == 7
    first = fig.axes[0]
    assert [line.get_label() for line in first.get_lines()] == ["class c1", "class c5", "all"]
    last = fig.axes[-1]  # 80 channels: 50 uniformly spaced ones, including both ends
    x = last.get_lines()[0].get_xdata()
    assert len(x) == 50 and x[0] == 0 and x[-1] == 79
    np.testing.assert_allclose(last.get_lines()[1].get_ydata(), result.blocks[-1].class_means[5, x])

    paths = fg.plot_specificity_by_depth(result, tmp_path / "fig2.png")
    _assert_written(paths)
    assert paths[0] == str(tmp_path / "fig2.png") and _svg_panels(paths[1]) == 1
    ax = fg.specificity_by_depth_figure(result).axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(sorted(points[:, 1]), [d / 10 for d in range(1, 8)])


@pytest.mark.slow  # 2 s or more on 2 cores
def test_walkthrough_figure_panels(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(6, 6, 20)).astype("float32")
    s = rng.uniform(size=20).astype("float32")
    block = an.SEBlock("se", 3, 2, 4, 20, layer=None)
    walk = an.Walkthrough(
        block, rng.uniform(size=(12, 12, 3)), features, features.mean((0, 1)), s, features * s
    )
    paths = fg.plot_walkthrough(walk, tmp_path / "walk", title="class 7")
    _assert_written(paths)
    # input + 16 maps of U + z + s + 5 most and 5 least excited channels
    assert fg.walkthrough_panels(20) == 29 == _svg_panels(paths[1])
    titles = [ax.get_title() for ax in fg.walkthrough_figure(walk).axes]
    top = int(np.argmax(s))
    assert f"X~[{top}] s={s[top]:.2f}" in titles


def test_class_selection():
    names = [str(i) for i in range(10)]
    assert fg.resolve_classes(None, names) == [0, 2, 4, 7, 9]
    assert fg.resolve_classes(None, ["a", "b"]) == [0, 1]
    assert fg.resolve_classes(["3", 1, "3"], names) == [3, 1]
    with pytest.raises(ValueError, match="out of range.*0..9.*classes=10"):
        fg.resolve_classes([10], names)
    with pytest.raises(ValueError, match="at most 5"):
        fg.resolve_classes(range(6), names)
