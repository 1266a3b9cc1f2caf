"""keras_se.visualize: `keras-se visualize`, the quickstart's figure step, and the re-exported figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_se import figures, fonts, ratio_figures
from keras_se import visualize as vz
from tests.conftest import assert_usage_error, run_main
from tests.test_figures import _assert_written, _svg_panels
from tests.test_fonts import CJK_NAMES, _glyph_warnings, no_cjk_font  # noqa: F401 (a fixture)


def test_every_figure_is_importable_from_visualize():
    for module in (figures, fonts, ratio_figures):
        for name in vars(module):
            if not name.startswith("_") and name in vz.__all__:
                assert getattr(vz, name) is getattr(module, name), name
    assert {"plot_walkthrough", "plot_ratio_tradeoff", "MissingGlyphWarning"} <= set(vz.__all__)
    assert all(hasattr(vz, name) for name in vz.__all__)


# The tests that use `quickstart_run` (tests/conftest.py: the quickstart's SE-ResNet-20, stages
# 2-4 of 3 blocks, 16/32/64 channels) share one xdist worker, so the run is trained once.
@pytest.mark.slow
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
        pytest.param(["resnet18"], ["no SqueezeExcite layers", "resnet18"], marks=pytest.mark.slow),
        pytest.param(
            ["RUN", "--classes", "0,10"], ["out of range", "classes='10'"], marks=pytest.mark.slow
        ),
        pytest.param(
            ["RUN", "--image-index", "360"],
            ["image_index", "360 images", "image_index=360"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["RUN", "--blocks", "conv9_block1_se"],
            ["unknown SE block", "conv9_block1_se"],
            marks=pytest.mark.slow,
        ),
        (["/nonexistent/run"], ["does not exist", "/nonexistent/run"]),
    ],
)
def test_cli_visualize_user_errors(capsys, tmp_path, quickstart_run, args, needles):
    args = [quickstart_run["run_dir"] if a == "RUN" else a for a in args]
    result = run_main(capsys, "visualize", *args, "--out", str(tmp_path), "--quiet")
    assert_usage_error(result, *needles)


@pytest.mark.slow
@pytest.mark.usefixtures("no_cjk_font")
def test_visualize_on_cjk_classes_without_a_cjk_font_warns_once(tmp_path, capsys):
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
