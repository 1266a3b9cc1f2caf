"""``keras-se quickstart`` (keras_se/quickstart.py): training, export and the figure step.

A tiny run (16x16 digits, 2 steps, 1 epoch) checks the mechanics; the recipe's speed
and accuracy are measured, not tested (docs/getting-started.md).
"""

from __future__ import annotations

import json
import os

import pytest

from keras_se import models
from keras_se import quickstart as qs


def test_recipe_is_a_cifar_se_resnet():
    builder = models.builder(qs.QUICKSTART["model"])
    assert builder.se and qs.QUICKSTART["model"].endswith("_cifar")
    assert qs.QUICKSTART["dataset"] == "digits"


@pytest.mark.slow
@pytest.mark.xdist_group("quickstart_run")  # with test_visualize's: one run (tests/conftest.py)
def test_quickstart_trains_exports_and_ends_with_figures_1_to_3(quickstart_run):
    written = quickstart_run
    model = qs.QUICKSTART["model"]
    assert os.path.isfile(os.path.join(written["savedmodel"], "saved_model.pb"))
    assert os.path.basename(os.path.dirname(written["savedmodel"])) == model
    for key in ("excitation_by_depth", "specificity_by_depth", "walkthrough"):
        png = written[key]
        for path in (png, png[: -len(".png")] + ".svg"):
            assert os.path.getsize(path) > 1000, path
    with open(written["excitations"]) as f:
        data = json.load(f)
    # SE-ResNet-20: 3 stages x 3 units, every one with an SE block.
    assert data["num_images"] == 360 and len(data["blocks"]) == 9
    assert [b["depth"] for b in data["blocks"]] == list(range(1, 10))
    assert [b["stage"] for b in data["blocks"]] == [2] * 3 + [3] * 3 + [4] * 3
    assert all(0 <= b["specificity"] <= 1 for b in data["blocks"])
