"""CIFAR SE-ResNets and SE-WRN (keras_se/models/cifar.py): sizes, shortcuts, SE placement, recipe.

Parameter counts are checked against closed forms written here from the papers'
architecture descriptions (He et al. 2016 Sec. 4.2; "Identity Mappings"; Zagoruyko &
Komodakis 2016), independently of the builders, and against published numbers:
akamaster/pytorch_resnet_cifar10 (the common PyTorch port of He et al.'s option-A CIFAR
ResNets) prints 269,722 / 464,154 / 853,018 / 1,727,962 parameters for ResNet-20/32/56/110
with 10 classes; the papers' tables give ResNet-164 1.7M and WRN-16-8 11.0M.
Keras counts BatchNorm moving statistics as (non-trainable) weights, PyTorch as buffers:
the reference number is the trainable count.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, models
from keras_se.blocks import ZeroPadShortcut
from keras_se.models import cifar
from keras_se.utils import count_weights
from tests.conftest import shapes_only

TINY = dict(input_shape=(32, 32, 3), classes=3)


def trainable(model):
    return count_weights(model.trainable_weights)


def bn(c):
    return 2 * c  # gamma and beta


def se_overhead(c, r=16):
    """The paper's SE cost per block with FC biases: 2C²/r + C/r + C (C/r floored)."""
    units = c // r
    return 2 * c * units + units + c


def post_activation_params(n, *, classes=10, r=None):
    """ResNet-(6n+2), option A: 3x3 stem (16), 3 stages of n basic units (16/32/64)."""
    total, cin = 9 * 3 * 16 + bn(16), 16
    for c in (16, 32, 64):
        for _ in range(n):
            total += 9 * cin * c + bn(c) + 9 * c * c + bn(c)  # zero-padded shortcut: free
            total += se_overhead(c, r) if r else 0
            cin = c
    return total + 64 * classes + classes


def resnet164_params(*, classes=10, r=None):
    """Pre-activation ResNet-164: 18 bottlenecks per stage, 1x1 projections (no BN)."""
    total, cin = 9 * 3 * 16, 16
    for p in (16, 32, 64):
        out = 4 * p
        for i in range(18):
            total += bn(cin) + cin * p + bn(p) + 9 * p * p + bn(p) + p * out
            total += cin * out if i == 0 else 0
            total += se_overhead(out, r) if r else 0
            cin = out
    return total + bn(cin) + cin * classes + classes


def wrn_params(depth=16, k=8, *, classes=10, r=None):
    """WRN-depth-k: (depth - 4) / 6 pre-activation basic units per stage of 16k/32k/64k."""
    n = (depth - 4) // 6
    total, cin = 9 * 3 * 16, 16
    for c in (16 * k, 32 * k, 64 * k):
        for i in range(n):
            total += bn(cin) + 9 * cin * c + bn(c) + 9 * c * c
            total += cin * c if i == 0 else 0
            total += se_overhead(c, r) if r else 0
            cin = c
    return total + bn(cin) + cin * classes + classes


EXPECTED = {
    **{f"resnet{6 * n + 2}_cifar": post_activation_params(n) for n in (3, 5, 9, 18)},
    **{f"se_resnet{6 * n + 2}_cifar": post_activation_params(n, r=16) for n in (3, 5, 9, 18)},
    "resnet164_cifar": resnet164_params(),
    "se_resnet164_cifar": resnet164_params(r=16),
    "wrn16_8": wrn_params(),
    "se_wrn16_8": wrn_params(r=16),
}


def test_closed_forms_match_the_published_sizes():
    # akamaster/pytorch_resnet_cifar10's printed counts (ResNet-20: 269,722, option A).
    assert [post_activation_params(n) for n in (3, 5, 9, 18)] == [
        269_722, 464_154, 853_018, 1_727_962
    ]  # fmt: skip
    assert round(resnet164_params() / 1e6, 1) == 1.7  # He et al., "Identity Mappings", Table 2
    assert round(wrn_params() / 1e6, 1) == 11.0  # Zagoruyko & Komodakis, Table 3 (WRN-16-8)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_counts(name):
    with shapes_only():
        model = models.get(name)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert trainable(model) == EXPECTED[name]


def test_resnet20_option_a_count_and_public_names():
    assert trainable(models.ResNet20()) == 269_722
    assert trainable(models.SEResNet20()) - 269_722 == 3 * (
        se_overhead(16) + se_overhead(32) + se_overhead(64)
    )
    assert models.SEResNet20.registry_name == "se_resnet20_cifar"
    assert models.WideResNet16_8.registry_name == "wrn16_8"
    # The ImageNet ResNet builders keep their names.
    assert models.ResNet50.registry_name == "resnet50"


def test_zero_pad_shortcut_is_the_subsampled_identity_with_zero_channels():
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 16)).astype("float32")
    y = keras.ops.convert_to_numpy(ZeroPadShortcut(32, strides=2)(x))
    expected = np.concatenate([x[:, ::2, ::2, :], np.zeros((2, 4, 4, 16), "float32")], axis=-1)
    np.testing.assert_array_equal(y, expected)
    layer = ZeroPadShortcut.from_config(ZeroPadShortcut(32, strides=2).get_config())
    assert (layer.filters, layer.strides) == (32, 2)


def test_downsampling_unit_adds_its_branch_to_the_padded_identity():
    model = models.ResNet20(**TINY)
    shortcut = model.get_layer("conv3_block1_0_pad")
    assert isinstance(shortcut, ZeroPadShortcut) and not shortcut.weights
    assert shortcut.input is model.get_layer("conv2_block3_out").output
    # Zero the branch's last BN (gamma, beta): the unit's output is ReLU(padded identity).
    bn2 = model.get_layer("conv3_block1_2_bn")
    bn2.gamma.assign(np.zeros(bn2.gamma.shape, "float32"))
    bn2.beta.assign(np.zeros(bn2.beta.shape, "float32"))
    probe = keras.Model(
        model.input,
        [model.get_layer("conv2_block3_out").output, model.get_layer("conv3_block1_out").output],
    )
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    before, after = (keras.ops.convert_to_numpy(t) for t in probe(x, training=False))
    padded = np.concatenate([before[:, ::2, ::2, :], np.zeros_like(before[:, ::2, ::2, :])], -1)
    np.testing.assert_allclose(after, np.maximum(padded, 0), atol=1e-6)


def _se(model):
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


@pytest.mark.parametrize(
    "name, units, feeds",
    [
        ("se_resnet20_cifar", 9, "_2_bn"),  # post-activation: after the last BN, no ReLU
        pytest.param(  # pre-activation: after the last conv
            "se_resnet164_cifar", 54, "_3_conv", marks=pytest.mark.slow
        ),
        ("se_wrn16_8", 6, "_2_conv"),
    ],
)
def test_se_sits_on_every_residual_branch_before_the_addition(name, units, feeds):
    model = models.get(name, **TINY)
    se_layers = _se(model)
    assert len(se_layers) == units
    for layer in se_layers:
        unit = layer.name[: -len("_se")]
        assert layer.input is model.get_layer(unit + feeds).output
        add = model.get_layer(unit + ("_add" if name.startswith("se_resnet20") else "_out"))
        assert any(tensor is layer.output for tensor in add.input)
    plain = models.get(name[len("se_") :], **TINY)
    assert not _se(plain)
    # Twins: the same layers apart from the SE blocks.
    names = {layer.name for layer in model.layers}
    assert names - {layer.name for layer in plain.layers} == {layer.name for layer in se_layers}


@pytest.mark.parametrize("se_mode", ["pre", "post", "identity"])
@pytest.mark.parametrize(
    "name", ["se_resnet20_cifar", pytest.param("se_resnet164_cifar", marks=pytest.mark.slow)]
)
def test_se_modes_build_and_run(name, se_mode):
    model = models.get(name, se_mode=se_mode, **TINY)
    assert len(_se(model)) == (9 if "20" in name else 54)
    out = model(np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32"))
    assert out.shape == (2, 3) and np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_wrn_dropout_and_options():
    model = models.SEWideResNet16_8(dropout=0.3, **TINY)
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(drops) == 6 and all(d.rate == 0.3 for d in drops)
    assert not any(isinstance(x, keras.layers.Dropout) for x in models.WideResNet16_8(**TINY).layers)
    with pytest.raises(TypeError, match="dropout"):
        models.SEResNet20(dropout=0.3)  # post-activation ResNets have no dropout option
    with pytest.raises(ValueError, match=r"dropout=1\.5"):
        models.SEWideResNet16_8(dropout=1.5)


def test_analysis_finds_the_stages():
    from keras_se.analysis import find_se_blocks

    blocks = find_se_blocks(models.SEResNet20(**TINY))
    assert [(b.stage, b.index) for b in blocks][:4] == [(2, 1), (2, 2), (2, 3), (3, 1)]
    assert [b.channels for b in blocks] == [16] * 3 + [32] * 3 + [64] * 3


@pytest.mark.slow
def test_small_inputs_and_headless():
    model = models.SEResNet56(include_top=False, pooling="avg", input_shape=(8, 8, 3))
    assert model.output_shape == (None, 64)
    model = models.ResNet164(include_top=False, input_shape=(16, 16, 3))
    assert model.output_shape == (None, 4, 4, 256)
    with pytest.raises(ValueError, match="at least 4x4"):
        models.SEResNet20(input_shape=(2, 2, 3))


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(stackwise_num_blocks=(1, 1, 1), dropout=0.3), "dropout=0.3"),
        (dict(stackwise_num_blocks=(1, 1), stackwise_filters=(16, 32, 64)), "stackwise_filters"),
        (dict(stackwise_num_blocks=(1, 1, 1), unit="mid"), "unit='mid'"),
        (dict(stackwise_num_blocks=(1, 1, 1), shortcut="none"), "shortcut='none'"),
    ],
)
def test_build_cifar_resnet_arguments(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        cifar.build_cifar_resnet(**kwargs)
