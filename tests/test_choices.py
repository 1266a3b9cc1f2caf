"""keras_se_core.choices: every shared choice is one the library accepts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, models
from keras_se_core import choices


@pytest.mark.parametrize("squeeze", choices.SQUEEZES)
@pytest.mark.parametrize("gate", choices.GATES)
def test_every_squeeze_and_gate_builds_the_layer(squeeze, gate):
    layer = SqueezeExcite(4, squeeze=squeeze, gate=gate)
    out = keras.ops.convert_to_numpy(layer(np.ones((1, 4, 4, 8), "float32")))
    assert out.shape == (1, 4, 4, 8)


@pytest.mark.parametrize("se_mode", choices.SE_MODES)
def test_every_se_mode_builds_a_model(se_mode):
    model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3, se_mode=se_mode)
    assert model.output_shape == (None, 3)


def test_ratios_and_reference_recipe():
    assert choices.DEFAULT_RATIO in choices.ABLATION_RATIOS == (2, 4, 8, 16, 32)
    assert choices.REFERENCE_LR * 256 / choices.REFERENCE_BATCH == pytest.approx(0.15)
