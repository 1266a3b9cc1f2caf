"""keras_se.visualize: figures 1–4, `keras-se visualize` and the quickstart's figure step."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from keras_se import analysis as an
from keras_se import visualize as vz
from tests.conftest import assert_usage_error, run_main


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


def test_excitation_and_specificity_figures_have_one_panel_per_block(tmp_path):
    result = _synthetic_analysis()
    paths = vz.plot_excitation_by_depth(result, tmp_path / "fig1")
    _assert_written(paths)
    # Default: last of stages 1 and 2, then the last stage's three blocks.
    assert _svg_panels(paths[1]) == 5
    fig = vz.excitation_by_depth_figure(result, blocks="all", classes=["c1", 5])
    assert len(fig.axes) == 7
    first = fig.axes[0]
    assert [line.get_label() for line in first.get_lines()] == ["class c1", "class c5", "all"]
    last = fig.axes[-1]  # 80 channels: 50 uniformly spaced ones, including both ends
    x = last.get_lines()[0].get_xdata()
    assert len(x) == 50 and x[0] == 0 and x[-1] == 79
    np.testing.assert_allclose(last.get_lines()[1].get_ydata(), result.blocks[-1].class_means[5, x])

    paths = vz.plot_specificity_by_depth(result, tmp_path / "fig2.png")
    _assert_written(paths)
    assert paths[0] == str(tmp_path / "fig2.png") and _svg_panels(paths[1]) == 1
    ax = vz.specificity_by_depth_figure(result).axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(sorted(points[:, 1]), [d / 10 for d in range(1, 8)])


def test_walkthrough_figure_panels(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(6, 6, 20)).astype("float32")
    s = rng.uniform(size=20).astype("float32")
    block = an.SEBlock("se", 3, 2, 4, 20, layer=None)
    walk = an.Walkthrough(
        block, rng.uniform(size=(12, 12, 3)), features, features.mean((0, 1)), s, features * s
    )
    paths = vz.plot_walkthrough(walk, tmp_path / "walk", title="class 7")
    _assert_written(paths)
    # input + 16 maps of U + z + s + 5 most and 5 least excited channels
    assert vz.walkthrough_panels(20) == 29 == _svg_panels(paths[1])
    titles = [ax.get_title() for ax in vz.walkthrough_figure(walk).axes]
    top = int(np.argmax(s))
    assert f"X~[{top}] s={s[top]:.2f}" in titles


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
    paths = vz.plot_ratio_tradeoff(results, str(tmp_path / "ratio_tradeoff"))
    _assert_written(paths)
    ax = vz.ratio_tradeoff_figure(results).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["r=16", "r=4"]
    np.testing.assert_allclose(ax.get_lines()[0].get_xydata(), [[1.4, 0.93], [1.1, 0.90]])
    with pytest.raises(ValueError, match="no completed trial"):
        vz.plot_ratio_tradeoff(results[3:4], str(tmp_path / "none"))


def test_class_selection():
    names = [str(i) for i in range(10)]
    assert vz.resolve_classes(None, names) == [0, 2, 4, 7, 9]
    assert vz.resolve_classes(None, ["a", "b"]) == [0, 1]
    assert vz.resolve_classes(["3", 1, "3"], names) == [3, 1]
    with pytest.raises(ValueError, match="out of range.*0..9.*classes=10"):
        vz.resolve_classes([10], names)
    with pytest.raises(ValueError, match="at most 5"):
        vz.resolve_classes(range(6), names)


# The tests that use `quickstart_run` (tests/conftest.py: the quickstart's SE-ResNet-20, stages
# 2-4 of 3 blocks, 16/32/64 channels) share one xdist worker, so the run is trained once.
@pytest.mark.xdist_group("quickstart_run")
def test_cli_visualize_writes_json_figures_and_table(capsys, tmp_path, quickstart_run):
    out = tmp_path / "figs"
    result = run_main(
        capsys,
        "visualize",
        quickstart_run["run_dir"],
        "--out",
        str(out),
        "--blocks",
        "SE_3_1,conv4_block2_se",
        "--classes",
        "1,7",
        "--max-images",
        "40",
        "--image-index",
        "5",
        "--walkthrough-block",
        "conv2_block1_se",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if "_se " in line]
    assert [(r[0], r[2]) for r in rows] == [("conv3_block1_se", "4"), ("conv4_block2_se", "8")]
    with open(out / "excitations.json") as f:
        data = json.load(f)
    assert data["num_images"] == 40 and [b["name"] for b in data["blocks"]] == [
        "conv3_block1_se",
        "conv4_block2_se",
    ]
    assert float(rows[0][4]) == pytest.approx(data["blocks"][0]["specificity"], abs=1e-4)
    assert _svg_panels(out / "excitation_by_depth.svg") == 2
    assert _svg_panels(out / "specificity_by_depth.svg") == 1
    assert _svg_panels(out / "walkthrough.svg") == vz.walkthrough_panels(16)


@pytest.mark.xdist_group("quickstart_run")
@pytest.mark.parametrize(
    "args, needles",
    [
        (["resnet18"], ["no SqueezeExcite layers", "resnet18"]),
        (["RUN", "--classes", "0,10"], ["out of range", "classes='10'"]),
        (["RUN", "--image-index", "360"], ["image_index", "360 images", "image_index=360"]),
        (["RUN", "--blocks", "conv9_block1_se"], ["unknown SE block", "conv9_block1_se"]),
        (["/nonexistent/run"], ["does not exist", "/nonexistent/run"]),
    ],
)
def test_cli_visualize_user_errors(capsys, tmp_path, quickstart_run, args, needles):
    args = [quickstart_run["run_dir"] if a == "RUN" else a for a in args]
    result = run_main(capsys, "visualize", *args, "--out", str(tmp_path), "--quiet")
    assert_usage_error(result, *needles)


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
    fig = vz.specificity_by_ratio_figure(trials)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == [
        "r=4",
        "r=16",
    ]  # sorted, failed left out
    np.testing.assert_allclose(ax.get_lines()[1].get_ydata(), [0.3, np.nan, 0.7])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SE_2_1", "SE_3_1", "SE_4_1"]
    png, svg = vz.plot_specificity_by_ratio(trials, str(tmp_path / "specificity_by_ratio"))
    assert os.path.getsize(png) > 0 and os.path.getsize(svg) > 0
    with pytest.raises(ValueError, match="no completed trial with per-block specificity"):
        vz.specificity_by_ratio_figure([{"hyperparameters": {"se_ratio": 4}}])


# --------------------------------------------------------------------------- fonts
CJK_NAMES = ["猫", "犬", "c2"]


def _cjk_analysis():
    result = _synthetic_analysis(stages=(1,), channels=(8,), classes=3)  # one panel: fast
    result.class_names = list(CJK_NAMES)
    return result


def _glyph_warnings(records):
    """(our MissingGlyphWarnings, matplotlib's own per-glyph warnings)."""
    ours = [w for w in records if issubclass(w.category, vz.MissingGlyphWarning)]
    theirs = [w for w in records if "missing from font" in str(w.message)]
    return ours, theirs


@pytest.fixture
def no_cjk_font(monkeypatch):
    """DejaVu Sans (shipped with matplotlib) as the default, and no fallback font to find."""
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "font.family", ["DejaVu Sans"])
    monkeypatch.setattr(vz, "FALLBACK_FAMILIES", ())
    monkeypatch.setattr(vz, "FALLBACK_FILES", ())


def test_cjk_class_names_without_a_cjk_font_warn_once(tmp_path, no_cjk_font):
    import warnings

    assert vz.fonts_for_text(["cat", "dog"]) is None  # Latin names: nothing changes, silently
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        paths = vz.plot_excitation_by_depth(_cjk_analysis(), tmp_path / "fig1", classes=[0, 1, 2])
    _assert_written(paths)  # the figure is still written
    ours, theirs = _glyph_warnings(records)
    assert len(ours) == 1 and not theirs, [str(w.message) for w in records]
    message = str(ours[0].message)
    assert "'犬猫'" in message and "fonts-noto-cjk" in message and "\n" not in message


@pytest.mark.slow
def test_visualize_on_cjk_classes_without_a_cjk_font_warns_once(tmp_path, no_cjk_font, capsys):
    """`keras-se visualize`'s path: figures 1 and 3 both draw the names, one warning in all."""
    import warnings

    from PIL import Image

    for split in ("train", "val"):
        for label, name in enumerate(CJK_NAMES[:2]):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((16, 16, 3), 60 * label + 10 * i, "uint8")).save(
                    folder / f"{i}.png"
                )
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        result = vz.visualize_model(
            "se_resnet18", dataset=str(tmp_path / "data"), out=str(tmp_path / "figs"), verbose=1
        )
    # An untrained model on an image folder: the inferred input size is said once.
    assert "image size 16x16 inferred from the median of 6 training images" in (
        capsys.readouterr().out
    )
    ours, theirs = _glyph_warnings(records)
    assert len(ours) == 1 and not theirs, [str(w.message) for w in records]
    assert result.analysis.class_names == ["犬", "猫"]  # sorted folder names
    for key in ("excitation_by_depth", "walkthrough"):
        _assert_written(result.files[key])


def _system_cjk_font():
    """A font file with 猫 (U+732B) according to fontconfig, independently of keras_se."""
    import shutil
    import subprocess

    if not shutil.which("fc-list"):
        return None
    out = subprocess.run(
        ["fc-list", ":charset=732b 72ac", "file"], capture_output=True, text=True
    ).stdout
    return out.split(":")[0].strip() or None


@pytest.mark.skipif(
    _system_cjk_font() is None,
    reason="no CJK font installed (fontconfig finds none with 猫/犬; e.g. apt-get install fonts-noto-cjk)",
)
def test_an_installed_cjk_font_draws_cjk_class_names(tmp_path, monkeypatch):
    import warnings

    import matplotlib
    from matplotlib import font_manager

    monkeypatch.setitem(matplotlib.rcParams, "font.family", ["DejaVu Sans"])
    families = vz.fonts_for_text(["猫", "犬"])
    assert families is not None and families[0] == "DejaVu Sans"  # Latin text as before
    path = font_manager.findfont(
        font_manager.FontProperties(family=families[-1]), fallback_to_default=False
    )
    font = font_manager.get_font(path)
    assert font.get_char_index(ord("猫")) != 0 and font.get_char_index(ord("犬")) != 0
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        paths = vz.plot_excitation_by_depth(_cjk_analysis(), tmp_path / "fig1", classes=[0, 1])
    _assert_written(paths)
    assert _glyph_warnings(records) == ([], []), [str(w.message) for w in records]
    assert matplotlib.rcParams["font.family"] == ["DejaVu Sans"]  # restored afterwards
