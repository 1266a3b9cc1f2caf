"""keras_se.models.naming: the residual units' layer names, built and parsed in one place."""

from __future__ import annotations

import pytest

from keras_se import models
from keras_se.models.naming import UnitName, parse_unit_name, unit_name


def test_unit_names_are_keras_applications_and_round_trip():
    # keras.applications.ResNet50 names its first unit conv2_block1 and its last conv5_block3.
    assert unit_name(0, 0) == "conv2_block1" and unit_name(3, 2) == "conv5_block3"
    for stage_index in range(4):
        for unit_index in range(40):
            name = unit_name(stage_index, unit_index)
            for suffix in ("", "_se", "_1_conv", "_0_bn", "_out_se_2"):
                assert parse_unit_name(name + suffix) == (stage_index + 2, unit_index + 1)
    assert UnitName(5, 3).prefix == "conv5_block3"


@pytest.mark.parametrize(
    "name",
    [
        "conv1_conv",
        "pool1_pool",
        "avg_pool",
        "se_1",
        "conv2_block",
        "conv2_block1x_se",
        "xconv2_block1_se",
    ],
)
def test_other_names_are_not_units(name):
    assert parse_unit_name(name) is None


@pytest.mark.parametrize("bad", [-1, 1.0, True, "0", None])
def test_positions_must_be_non_negative_integers(bad):
    with pytest.raises(ValueError, match=f"Received: stage_index={bad!r}"):
        unit_name(bad, 0)


def test_every_se_layer_of_a_builder_parses_to_its_stage():
    model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
    se = [layer.name for layer in model.layers if layer.name.endswith("_se")]
    assert [tuple(parse_unit_name(n)) for n in se] == [
        (stage, index) for stage in (2, 3, 4, 5) for index in (1, 2)
    ]
