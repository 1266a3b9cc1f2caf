"""Fidelity and behaviour tests for the SE-ResNet / SE-ResNeXt builders.

The parameter counts are the reference PyTorch models' (timm ``legacy_se*`` for SE,
torchvision for plain). Keras counts BatchNorm moving statistics
as (non-trainable) weights, PyTorch as buffers: the reference number is the
trainable count.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, models
from keras_se.utils import count_weights
from tests.conftest import shapes_only

REFERENCE_PARAMS = {
    "resnet18": 11_689_512,
    "se_resnet18": 11_778_592,
    "resnet34": 21_797_672,
    "se_resnet34": 21_958_868,
    "resnet50": 25_557_032,
    "se_resnet50": 28_088_024,
    "resnet101": 44_549_160,
    "se_resnet101": 49_326_872,
    "resnet152": 60_192_808,
    "se_resnet152": 66_821_848,
    "resnext50_32x4d": 25_028_904,
    "se_resnext50_32x4d": 27_559_896,
    "se_resnext101_32x4d": 48_955_416,
}


def trainable(model):
    return count_weights(model.trainable_weights)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_reference_parameter_counts(name):
    with shapes_only():
        assert trainable(models.get(name)) == REFERENCE_PARAMS[name]


@pytest.mark.slow
def test_se_resnet50_without_fc_biases_matches_paper_formula():
    with shapes_only():
        model = models.SEResNet50(se_kwargs={"use_bias": False})
    assert trainable(model) == 28_071_976
    # The paper's closed form: (2/r) * sum_s N_s * C_s^2 on top of ResNet-50.
    depths, channels = (3, 4, 6, 3), (256, 512, 1024, 2048)
    assert 28_071_976 - 25_557_032 == sum(2 * n * c * c // 16 for n, c in zip(depths, channels))


def _se_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


@pytest.mark.slow
def test_plain_twin_differs_only_in_se_blocks():
    """The textbook graph: SE-ResNet-50 is ResNet-50 plus 16 SqueezeExcite layers, every
    other layer with the same name and weight shapes."""
    kwargs = dict(input_shape=(32, 32, 3), classes=3)
    with shapes_only():
        se, plain = models.SEResNet50(**kwargs), models.ResNet50(**kwargs)
    se_names = {layer.name for layer in _se_layers(se)}
    assert len(se_names) == 16 and not _se_layers(plain)
    se_only = {layer.name for layer in se.layers} - {layer.name for layer in plain.layers}
    plain_only = {layer.name for layer in plain.layers} - {layer.name for layer in se.layers}
    assert se_only == se_names and not plain_only
    for layer in plain.layers:
        shapes = [w.shape for w in layer.weights]
        assert shapes == [w.shape for w in se.get_layer(layer.name).weights]


@pytest.mark.slow
def test_accelerated_se_resnext_computes_the_textbook_function():
    """`keras_se.speed.accelerate` on SE-ResNeXt-50 (grouped convs, 16 fused tails): same
    outputs in both modes, same moving statistics after a training-mode call."""
    from keras_se.speed import accelerate

    textbook = models.SEResNeXt50(input_shape=(64, 64, 3), classes=5)
    rng = np.random.default_rng(0)
    for w in textbook.weights:  # non-trivial BN statistics and gates
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 2.0, size=w.shape))
        elif "moving_mean" in w.path or "gamma" in w.path or "beta" in w.path:
            w.assign(rng.normal(0.0, 0.2, size=w.shape) + (1.0 if "gamma" in w.path else 0.0))
    fast = accelerate(textbook)
    bn = textbook.get_layer("conv4_block2_3_bn")
    x = rng.normal(size=(4, 64, 64, 3)).astype("float32")
    a = keras.ops.convert_to_numpy(textbook(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fast(x)), a, rtol=1e-4, atol=2e-6)
    stats = [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
    a = keras.ops.convert_to_numpy(textbook(x, training=True))
    after = [bn.moving_mean.numpy(), bn.moving_variance.numpy()]
    bn.moving_mean.assign(stats[0])
    bn.moving_variance.assign(stats[1])
    b = keras.ops.convert_to_numpy(fast(x, training=True))
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(bn.moving_mean.numpy(), after[0], atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), after[1], rtol=1e-4)


def test_layer_names_follow_keras_applications_scheme():
    model = models.SEResNet50(input_shape=(64, 64, 3), classes=3)
    for name in (
        "conv1_conv",
        "conv1_bn",
        "pool1_pool",
        "conv2_block1_0_conv",
        "conv2_block1_1_conv",
        "conv3_block2_se",
        "conv5_block3_3_conv",
        "conv5_block3_out",
        "avg_pool",
        "predictions",
    ):
        model.get_layer(name)
    assert [layer.name for layer in _se_layers(model)][-1] == "conv5_block3_se"
    ref = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=3)
    ours = {layer.name for layer in model.layers}
    shared = [layer.name for layer in ref.layers if layer.name in ours]
    assert len(shared) >= 0.9 * len([n for n in ref.layers if n.weights])


@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_placement(stride_in_1x1):
    model = models.SEResNet50(input_shape=(64, 64, 3), classes=3, stride_in_1x1=stride_in_1x1)
    conv1 = model.get_layer("conv3_block1_1_conv")
    conv2 = model.get_layer("conv3_block1_2_conv")
    assert conv1.strides == ((2, 2) if stride_in_1x1 else (1, 1))
    assert conv2.strides == ((1, 1) if stride_in_1x1 else (2, 2))
    assert all(
        not layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    )


def test_resnext_uses_grouped_convolution_and_reference_stride():
    model = models.SEResNeXt50(input_shape=(32, 32, 3), classes=3)
    conv = model.get_layer("conv3_block1_2_conv")
    assert conv.groups == 32 and conv.filters == 256 and conv.strides == (2, 2)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_stem_choice_by_input_size():
    small = models.SEResNet18(input_shape=(32, 32, 3), classes=3)
    large = models.SEResNet18(input_shape=(96, 96, 3), classes=3)
    assert small.get_layer("conv1_conv").kernel_size == (3, 3)
    assert "pool1_pool" not in {layer.name for layer in small.layers}
    assert large.get_layer("conv1_conv").kernel_size == (7, 7)
    assert small.get_layer("conv5_block2_out").output.shape[1:3] == (4, 4)
    assert large.get_layer("conv5_block2_out").output.shape[1:3] == (3, 3)
    forced = models.SEResNet18(input_shape=(32, 32, 3), classes=3, stem="imagenet")
    assert forced.get_layer("conv5_block2_out").output.shape[1:3] == (1, 1)


@pytest.mark.parametrize("se_mode", ["standard", "pre", "post", "identity"])
def test_se_modes(se_mode):
    model = models.SEResNet50(input_shape=(32, 32, 3), classes=3, se_mode=se_mode)
    se_blocks = _se_layers(model)
    assert len(se_blocks) == 16
    first = model.get_layer("conv2_block1_se")
    # pre: on the unit input (64 channels from the stem); others: on the 256-channel output.
    assert first.channels == (64 if se_mode == "pre" else 256)
    expected_parent = {
        "standard": "conv2_block1_3_bn",
        "pre": "conv1_relu",
        "post": "conv2_block1_out",
        "identity": "conv2_block1_0_bn",
    }[se_mode]
    assert first.input is model.get_layer(expected_parent).output
    out = model(np.zeros((2, 32, 32, 3), "float32"))
    assert out.shape == (2, 3)


@pytest.mark.slow
def test_speed_fuses_the_standard_bottleneck_tails_only():
    """`keras_se.speed.bottleneck_tails`: every SE-ResNet-50 unit's conv → BN → SE; none for
    the max squeeze, other placements, or basic blocks (a ReLU between their BN and SE)."""
    from keras_se.speed import bottleneck_tails

    model = models.SEResNet50(input_shape=(32, 32, 3), classes=3)
    tails = bottleneck_tails(model)
    assert [se.name for _, _, se in tails] == [layer.name for layer in _se_layers(model)]
    conv, bn, se = tails[0]
    assert (conv.name, bn.name, se.name) == (
        "conv2_block1_3_conv",
        "conv2_block1_3_bn",
        "conv2_block1_se",
    )
    for kwargs in (dict(se_kwargs={"squeeze": "max"}), dict(se_mode="post")):
        other = models.SEResNet50(input_shape=(32, 32, 3), classes=3, **kwargs)
        assert not bottleneck_tails(other)
    assert not bottleneck_tails(models.SEResNet18(input_shape=(32, 32, 3), classes=3))


def test_se_kwargs_and_ratio_reach_every_block():
    model = models.SEResNet18(
        input_shape=(32, 32, 3),
        classes=3,
        se_ratio=4,
        se_kwargs={"squeeze": "max", "gate": "hard_sigmoid"},
    )
    for layer in _se_layers(model):
        assert (
            layer.ratio == 4
            and layer.squeeze == "max"
            and layer.get_config()["gate"] == "hard_sigmoid"
        )
        assert layer.bottleneck_units == layer.channels // 4


def test_pooling_and_no_top():
    avg = models.SEResNet18(include_top=False, pooling="avg", input_shape=(32, 32, 3))
    assert avg.output_shape == (None, 512)
    none = models.SEResNet18(include_top=False)
    assert none.output_shape == (None, None, None, 512)
    logits = models.SEResNet18(input_shape=(32, 32, 3), classes=5, classifier_activation=None)
    out = keras.ops.convert_to_numpy(logits(np.random.rand(2, 32, 32, 3).astype("float32")))
    assert not np.allclose(out.sum(axis=1), 1.0)


def test_input_tensor():
    tensor = keras.Input((48, 48, 3))
    model = models.SEResNet18(input_tensor=tensor, classes=4)
    assert model.inputs[0] is tensor and model.output_shape == (None, 4)


def test_weights_file_round_trip(tmp_path):
    model = models.SEResNet18(input_shape=(32, 32, 3), classes=3)
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    loaded = models.SEResNet18(input_shape=(32, 32, 3), classes=3, weights=path)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )


def test_channels_first_builds():
    # TF on CPU has no channels_first conv kernels: check the graph, not a forward pass.
    keras.config.set_image_data_format("channels_first")
    model = models.SEResNet18(input_shape=(3, 32, 32), classes=3)
    se = model.get_layer("conv3_block1_se")
    assert se.data_format == "channels_first" and se.channels == 128
    assert model.get_layer("conv3_block1_out").output.shape[1:] == (128, 16, 16)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(weights="imagenet"), "weights='imagenet'"),
        (dict(weights="/no/such/file.h5"), "weights='/no/such/file.h5'"),
        (dict(pooling="sum", include_top=False), "pooling='sum'"),
        (dict(classes=0), "classes=0"),
        (dict(input_shape=(16, 16, 3), stem="imagenet"), "at least 32x32"),
        (dict(input_shape=(4, 4, 3)), "at least 8x8"),
        (dict(input_shape=(32, 32)), "input_shape=(32, 32)"),
        (dict(se_ratio=0), "se_ratio=0"),
        (dict(se_mode="inside"), "se_mode='inside'"),
        (dict(se_kwargs={"ratio": 4}), "se_kwargs"),
        (dict(stem="tiny"), "stem='tiny'"),
        (dict(classifier_activation="bogus"), "classifier_activation='bogus'"),
        (dict(include_top="yes"), "include_top='yes'"),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises((ValueError, TypeError)) as info:
        models.SEResNet18(**kwargs)
    assert needle in str(info.value)
