"""add_squeeze_excite on keras.applications models and user models.

The expected SE counts come from the original graph (its ``Add`` layers, the layer names
a pattern matches), the weights from the original layers, and the closeness of
``gate_init="identity"`` from the original model's outputs.
"""

from __future__ import annotations

import os
import re

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, add_squeeze_excite
from keras_se.retrofit import IDENTITY_GATE

SMALL = dict(input_shape=(32, 32, 3), classes=3, classifier_activation=None)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _se_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


def _relative_change(reference, other):
    """Max over samples of max|other - reference| / max|reference| (per sample)."""
    diff = np.abs(other - reference).reshape(len(reference), -1).max(axis=1)
    scale = np.abs(reference).reshape(len(reference), -1).max(axis=1)
    return float((diff / scale).max())


def _snapshot(model):
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers}


def _assert_weights_equal(model, snapshot):
    for name, weights in snapshot.items():
        for got, want in zip(model.get_layer(name).get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)


def _images(n=4, size=32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def resnet50():
    return keras.applications.ResNet50(weights=None, **SMALL)


@pytest.fixture(scope="module")
def mobilenet_v2():
    return keras.applications.MobileNetV2(weights=None, **SMALL)


@pytest.mark.slow
def test_resnet50_residual(resnet50):
    original = _snapshot(resnet50)
    model = add_squeeze_excite(resnet50, "residual", gate_init="identity")
    assert model.name == "se_resnet50"
    adds = [layer.name for layer in resnet50.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 16
    assert [layer.name for layer in _se_layers(model)] == [f"{name}_se" for name in adds]
    for name in adds:
        se = model.get_layer(f"{name}_se")
        # On the residual branch (after the block's last BN), not on the shortcut.
        assert se.input is model.get_layer(name.replace("_add", "_3_bn")).output
        assert se.output in model.get_layer(name).input
        assert se.bottleneck_units == se.channels // 16
    # Every original layer is there, with its weights, and is a copy (not shared).
    assert {layer.name for layer in model.layers} - {layer.name for layer in resnet50.layers} == {
        f"{name}_se" for name in adds
    }
    _assert_weights_equal(model, original)
    assert all(
        model.get_layer(layer.name) is not layer for layer in resnet50.layers if layer.weights
    )

    x = _images()
    reference = _numpy(resnet50(x))
    change = _relative_change(reference, _numpy(model(x)))
    # Documented bound: each SE scales its branch by IDENTITY_GATE, so at most about
    # N * (1 - gate) = 1.6e-3 here; measured ~2e-4.
    assert change < len(adds) * (1 - IDENTITY_GATE)
    random_init = add_squeeze_excite(resnet50, "residual")
    assert _relative_change(reference, _numpy(random_init(x))) > 30 * change

    # Trains; the original model is untouched.
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", run_eagerly=True)
    loss = model.train_on_batch(x, np.zeros((4, 3), "float32"))
    assert np.isfinite(loss)
    assert not np.array_equal(
        model.get_layer("conv2_block1_add_se").get_weights()[1], np.zeros((16, 256))
    )
    _assert_weights_equal(resnet50, original)


@pytest.mark.slow
def test_mobilenet_v2_residual_trains_and_round_trips(mobilenet_v2, tmp_path):
    original = _snapshot(mobilenet_v2)
    model = add_squeeze_excite(mobilenet_v2, gate_init="identity", ratio=4)
    adds = [layer.name for layer in mobilenet_v2.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 10 and len(_se_layers(model)) == 10
    se = model.get_layer("block_2_add_se")
    assert se.input is model.get_layer("block_2_project_BN").output and se.channels == 24
    _assert_weights_equal(model, original)

    x = _images()
    change = _relative_change(_numpy(mobilenet_v2(x)), _numpy(model(x)))
    assert change < len(adds) * (1 - IDENTITY_GATE)  # measured ~1e-5

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", run_eagerly=True)
    assert np.isfinite(model.train_on_batch(x, np.zeros((4, 3), "float32")))
    _assert_weights_equal(mobilenet_v2, original)
    out = _numpy(model(x))
    path = os.path.join(tmp_path, "retrofit.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert len(_se_layers(loaded)) == 10
    np.testing.assert_allclose(_numpy(loaded(x)), out, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_block_output_pattern(resnet50):
    pattern = r"conv\d_block\d+_out"
    model = add_squeeze_excite(resnet50, "block_output", pattern=pattern, gate_init="identity")
    matched = [layer.name for layer in resnet50.layers if re.fullmatch(pattern, layer.name)]
    assert len(matched) == 16
    assert [layer.name for layer in _se_layers(model)] == [f"{name}_se" for name in matched]
    se = model.get_layer("conv2_block1_out_se")
    assert se.input is model.get_layer("conv2_block1_out").output
    # The next block reads the SE output, on both of its branches.
    assert model.get_layer("conv2_block2_1_conv").input is se.output
    assert se.output in model.get_layer("conv2_block2_add").input
    x = _images()
    change = _relative_change(_numpy(resnet50(x)), _numpy(model(x)))
    # Every block output is scaled by the gate in series: ~N * (1 - gate), measured 1.6e-3.
    assert change < 1.5 * len(matched) * (1 - IDENTITY_GATE)


def _user_model():
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    for i in range(2):
        y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=f"res{i}_a")(x)
        y = keras.layers.Conv2D(8, 1, name=f"res{i}_b")(y)
        x = x + y  # a keras.ops addition, not an Add layer
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(inputs, outputs, name="user")


def test_user_model_callable_residual_and_gate_value():
    model = _user_model()
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 3)).astype("float32")
    convs = add_squeeze_excite(
        model, lambda layer: isinstance(layer, keras.layers.Conv2D), ratio=2, gate_init=0.5
    )
    assert [layer.name for layer in _se_layers(convs)] == [
        "stem_se",
        "res0_a_se",
        "res0_b_se",
        "res1_a_se",
        "res1_b_se",
    ]
    se = convs.get_layer("res0_a_se")
    np.testing.assert_allclose(_numpy(se.excitation(np.ones((1, 4, 4, 8)))), 0.5, rtol=1e-6)

    residual = add_squeeze_excite(model, "residual", ratio=2)
    ses = _se_layers(residual)
    assert len(ses) == 2
    assert ses[0].input is residual.get_layer("res0_b").output  # the branch, not x
    assert ses[0].name.endswith("_se")

    # An addition of two branches of equal depth is a merge, not a residual unit.
    inputs = keras.Input((8, 8, 4))
    merge = keras.layers.Add()(
        [keras.layers.Conv2D(4, 1)(inputs), keras.layers.Conv2D(4, 3, padding="same")(inputs)]
    )
    unit = keras.layers.Add(name="unit")([merge, keras.layers.Conv2D(4, 1, name="branch")(merge)])
    mixed = add_squeeze_excite(keras.Model(inputs, unit), ratio=2)
    assert [layer.name for layer in _se_layers(mixed)] == ["unit_se"]
    assert mixed.get_layer("unit_se").input is mixed.get_layer("branch").output

    sequential = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c1"), keras.layers.Flatten()]
    )
    retrofit = add_squeeze_excite(sequential, "block_output", pattern="c1", ratio=2)
    sequential_x = x[:, :8, :8]
    assert [layer.name for layer in _se_layers(retrofit)] == ["c1_se"]
    np.testing.assert_array_equal(
        retrofit.get_layer("c1").get_weights()[0], sequential.get_layer("c1").get_weights()[0]
    )
    assert _numpy(retrofit(sequential_x)).shape == (3, 6 * 6 * 4)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        return self.conv(x)


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        (dict(where="bogus"), ValueError, "where='bogus'"),
        (dict(where="block_output"), ValueError, "pattern=None"),
        (dict(where="block_output", pattern="nope"), ValueError, "matched no layer"),
        (dict(where="block_output", pattern="("), ValueError, "pattern='('"),
        (dict(where="residual", pattern="stem"), ValueError, "pattern='stem'"),
        (dict(where="block_output", pattern="logits"), ValueError, "no channel axis"),
        (dict(gate_init="ones"), ValueError, "gate_init='ones'"),
        (dict(gate_init=1.0), ValueError, "gate_init=1.0"),
        (dict(gate_init="identity", gate="hard_sigmoid"), ValueError, "gate='hard_sigmoid'"),
        (dict(gate_init="identity", use_bias=False), ValueError, "use_bias=False"),
        (dict(ratio=0), ValueError, "ratio=0"),
        (dict(squeeze="median"), ValueError, "squeeze='median'"),
        (dict(foo=1), ValueError, "foo"),
    ],
)
def test_bad_arguments(kwargs, error, needle):
    model = _user_model()
    with pytest.raises(error) as info:
        add_squeeze_excite(model, **kwargs)
    assert needle in str(info.value)


def test_models_that_cannot_be_rewritten():
    subclassed = _Subclassed()
    subclassed(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed.*_Subclassed"):
        add_squeeze_excite(subclassed)
    with pytest.raises(TypeError, match="Sequential model without a defined input"):
        add_squeeze_excite(keras.Sequential([keras.layers.Conv2D(4, 3)]))
    with pytest.raises(TypeError, match="functional or Sequential"):
        add_squeeze_excite(keras.layers.Conv2D(4, 3))
    inputs = keras.Input((8, 8, 3))
    no_add = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    with pytest.raises(ValueError, match="matched no layer.*where='residual'"):
        add_squeeze_excite(no_add)
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, _user_model_nested()(inputs))
    with pytest.raises(ValueError, match="nested models"):
        add_squeeze_excite(outer)


def _user_model_nested():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(3, 1)(inputs)
    return keras.Model(inputs, keras.layers.Add()([inputs, x]), name="inner")
