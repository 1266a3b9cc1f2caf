"""Building blocks (keras_se/blocks.py): padding, pre-activation units, shortcuts, argument errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, blocks
from keras_se_core import choices


def _run(build, x):
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, build(inputs))
    return model, keras.ops.convert_to_numpy(model(x, training=False))


def test_se_modes_are_the_shared_choices():
    assert blocks.SE_MODES is choices.SE_MODES


def test_strided_conv_pads_symmetrically_like_pytorch():
    x = np.arange(2 * 4 * 4, dtype="float32").reshape(2, 4, 4, 1)
    model, y = _run(lambda t: blocks.conv2d(t, 1, 3, strides=2, name="c_conv"), x)
    model.get_layer("c_conv").kernel.assign(np.ones((3, 3, 1, 1), "float32"))
    y = keras.ops.convert_to_numpy(model(x))
    padded = np.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)))  # PyTorch padding=1
    expected = np.array(
        [[[padded[b, i : i + 3, j : j + 3].sum() for j in (0, 2)] for i in (0, 2)] for b in range(2)]
    )
    np.testing.assert_array_equal(y[..., 0], expected)
    assert model.get_layer("c_pad").padding == ((1, 1), (1, 1))


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_preact_unit_identity_and_projection_shortcuts(block):
    rng = np.random.default_rng(0)
    out_channels = 8 if block == "basic" else 32
    x = rng.standard_normal((2, 8, 8, out_channels)).astype("float32")
    last = "2" if block == "basic" else "3"

    def zero_branch(model, name):
        conv = model.get_layer(f"{name}_{last}_conv")
        conv.kernel.assign(np.zeros(conv.kernel.shape, "float32"))

    # Same shape: the shortcut is the raw input; a zero branch leaves it unchanged.
    model, _ = _run(lambda t: blocks.preact_unit(t, 8, name="u", block=block, se_ratio=None), x)
    zero_branch(model, "u")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x, training=False)), x, atol=1e-6)
    assert not any(layer.name == "u_0_conv" for layer in model.layers)

    # Stride 2: a 1x1/2 projection (no BN) of the pre-activated input, BN → ReLU first.
    model, _ = _run(
        lambda t: blocks.preact_unit(t, 8, name="d", block=block, strides=2, se_ratio=None), x
    )
    zero_branch(model, "d")
    bn = model.get_layer("d_preact_bn")
    gamma, beta = rng.uniform(0.5, 1.5, out_channels), rng.standard_normal(out_channels)
    bn.gamma.assign(gamma.astype("float32")), bn.beta.assign(beta.astype("float32"))
    kernel = rng.standard_normal((1, 1, out_channels, out_channels)).astype("float32")
    model.get_layer("d_0_conv").kernel.assign(kernel)
    pre = np.maximum(x / np.sqrt(1 + blocks.BN_EPSILON) * gamma + beta, 0)  # moving stats 0/1
    expected = pre[:, ::2, ::2, :] @ kernel[0, 0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)), expected, rtol=1e-4, atol=1e-4
    )
    assert model.get_layer("d_0_conv").input is model.get_layer("d_preact_relu").output


def test_preact_unit_se_and_dropout():
    x = np.zeros((1, 8, 8, 16), "float32")
    model, _ = _run(lambda t: blocks.preact_unit(t, 16, name="w", block="basic", dropout=0.3), x)
    se = model.get_layer("w_se")
    assert isinstance(se, SqueezeExcite) and se.input is model.get_layer("w_2_conv").output
    assert model.get_layer("w_dropout").rate == 0.3
    assert model.get_layer("w_dropout").input is model.get_layer("w_2_relu").output


def test_residual_unit_options():
    x = np.zeros((1, 16, 16, 64), "float32")
    model, y = _run(
        lambda t: blocks.residual_unit(
            t, 64, name="s", strides=2, groups=8, base_width=8,
            first_width_ratio=0.5, shortcut_kernel_size=3,
        ),
        x,
    )  # fmt: skip
    assert model.get_layer("s_1_conv").filters == 32  # half of the 3x3's 64
    assert model.get_layer("s_2_conv").filters == 64 and model.get_layer("s_2_conv").groups == 8
    assert model.get_layer("s_0_conv").kernel_size == (3, 3) and y.shape == (1, 8, 8, 256)
    model, y = _run(
        lambda t: blocks.residual_unit(t, 128, name="a", block="basic", strides=2,
                                       shortcut="zero_pad", relu_before_se=False), x
    )  # fmt: skip
    assert isinstance(model.get_layer("a_0_pad"), blocks.ZeroPadShortcut) and y.shape == (1, 8, 8, 128)
    assert model.get_layer("a_se").input is model.get_layer("a_2_bn").output


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(block="wide"), "block='wide'"),
        (dict(shortcut="none"), "shortcut='none'"),
        (dict(se_mode="inside"), "se_mode='inside'"),
    ],
)
def test_unit_arguments_are_checked(kwargs, needle):
    x = keras.Input((8, 8, 16))
    with pytest.raises(ValueError, match=needle):
        blocks.residual_unit(x, 16, name="u", **kwargs)
    if "shortcut" not in kwargs:
        with pytest.raises(ValueError, match=needle):
            blocks.preact_unit(x, 16, name="p", **kwargs)


# Which layer classes the builders use (structure only; the layers' numerics are in test_layers.py).
def test_builders_make_keras_layers_and_squeeze_excite_only():
    """The textbook graph: grouped convolutions and BatchNorms are Keras's own classes (the
    speed layers of keras_se.speed appear only in `accelerate`'s twin)."""
    from keras_se import models

    model = models.SEResNeXt26(input_shape=(32, 32, 3), classes=3)
    grouped = [layer for layer in model.layers if getattr(layer, "groups", 1) > 1]
    assert len(grouped) == 8 and all(layer.groups == 32 for layer in grouped)
    assert all(layer.name.endswith("_2_conv") for layer in grouped)
    assert {type(layer) for layer in grouped} == {keras.layers.Conv2D}
    resnet = models.SEResNet18(input_shape=(32, 32, 3), classes=3)
    norms = [layer for layer in resnet.layers if "normalization" in type(layer).__name__.lower()]
    assert len(norms) == 20  # 16 in the blocks, 3 projection shortcuts, the stem
    assert {type(layer) for layer in norms} == {keras.layers.BatchNormalization}
    modules = {type(layer).__module__.split(".")[0] for layer in model.layers + resnet.layers}
    assert modules == {"keras", "keras_se"}
    assert {type(layer).__name__ for layer in model.layers if type(layer).__module__.startswith(
        "keras_se")} == {"SqueezeExcite"}
