"""Tests for keras_se.speed.fast_layers: PointwiseConv2D, GroupedConv2D and
FusedBatchNormalization against Keras's layers and NumPy, and their names in older files."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se.speed import (
    FusedBatchNormalization,
    GroupedConv2D,
    PointwiseConv2D,
)
from tests.conftest import assert_layer_roundtrip


# --------------------------------------------------------------------------- PointwiseConv2D
@pytest.mark.parametrize("use_bias", [True, False])
def test_pointwise_conv_equals_conv2d_on_maps_and_descriptors(use_bias, tmp_path):

    rng = np.random.default_rng(0)
    layer = PointwiseConv2D(6, use_bias=use_bias, activation="relu")
    reference = keras.layers.Conv2D(6, 1, use_bias=use_bias, activation="relu")
    for shape in ((3, 1, 1, 5), (3, 4, 4, 5)):  # matmul path, convolution path
        x = rng.normal(size=shape).astype("float32")
        if not layer.built:
            layer.build(shape)
            reference.build(shape)
            layer.set_weights([rng.normal(size=w.shape) for w in layer.weights])
            reference.set_weights(layer.get_weights())
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer(x)),
            keras.ops.convert_to_numpy(reference(x)),
            rtol=1e-5,
            atol=1e-6,
        )
    x = rng.normal(size=(2, 3, 3, 5)).astype("float32")
    assert_layer_roundtrip(lambda: PointwiseConv2D(5, name="pw"), x, tmp_path)
    with pytest.raises(ValueError, match=r"kernel_size=3"):
        PointwiseConv2D(4, kernel_size=3)
    with pytest.raises(ValueError, match=r"strides=2"):
        PointwiseConv2D(4, strides=2)
    with pytest.raises(ValueError, match=r"groups=2"):
        PointwiseConv2D(4, groups=2)


def test_pointwise_conv_channels_first_descriptor():

    x = np.random.default_rng(1).normal(size=(2, 5, 1, 1)).astype("float32")
    layer = PointwiseConv2D(3, data_format="channels_first")
    out = keras.ops.convert_to_numpy(layer(x))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    expected = x[:, :, 0, 0] @ kernel[0, 0] + bias
    np.testing.assert_allclose(out, expected[:, :, None, None], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- GroupedConv2D
def _numpy_grouped_conv(x, kernel, groups, stride):
    """NHWC, "valid" padding: each group's input channels convolved with its own kernels."""
    n, h, w, c = x.shape
    kh, kw, cin, cout = kernel.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    per_group = cout // groups
    out = np.zeros((n, oh, ow, cout))
    for g in range(groups):
        xs = x[..., g * cin : (g + 1) * cin]
        ks = kernel[..., g * per_group : (g + 1) * per_group]
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
                out[:, i, j, g * per_group : (g + 1) * per_group] = np.einsum(
                    "nhwc,hwco->no", patch, ks
                )
    return out


@pytest.mark.parametrize("strides", [1, 2])
def test_grouped_conv_equals_numpy_groups_and_keras_conv2d_with_gradients(strides, tmp_path):
    """Same function and gradients as ``Conv2D(groups=G)`` (Keras's XLA path on TF)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 9, 9, 8)).astype("float32")
    layer = GroupedConv2D(12, 3, strides=strides, groups=4, use_bias=False)
    reference = keras.layers.Conv2D(12, 3, strides=strides, groups=4, use_bias=False)
    layer.build(x.shape)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(
        out, _numpy_grouped_conv(x, kernel, 4, strides), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(reference(x)), rtol=1e-5, atol=1e-5)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        grads = []
        for conv in (layer, reference):
            xv = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xv)
                loss = tf.reduce_sum(conv(xv) ** 2)
            grads.append([g.numpy() for g in tape.gradient(loss, [xv, conv.kernel])])
        for ours, theirs in zip(*grads):
            np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert_layer_roundtrip(
        lambda: GroupedConv2D(8, 3, groups=2, padding="same", name="g"), x, tmp_path
    )


def test_speed_layers_load_under_the_names_of_earlier_releases():
    """``.keras`` files of earlier releases name keras_se>Conv2D and keras_se>BatchNormalization
    (Keras's layers, state keyed by their class names) and keras_se>GroupedConv2D; today's
    names are distinct from Keras's."""
    assert (GroupedConv2D.__name__, FusedBatchNormalization.__name__) == (
        "GroupedConv2D",
        "FusedBatchNormalization",
    )
    conv = keras.saving.serialize_keras_object(GroupedConv2D(8, 3, groups=2, name="g"))
    assert conv["registered_name"] == "keras_se>GroupedConv2D"
    for registered, cls in [
        ("keras_se>Conv2D", keras.layers.Conv2D),
        ("keras_se>GroupedConv2D", GroupedConv2D),
    ]:
        old = dict(conv, class_name=registered.split(">")[1], registered_name=registered)
        restored = keras.saving.deserialize_keras_object(old)
        assert type(restored) is cls and restored.groups == 2 and restored.name == "g"
    bn = keras.saving.serialize_keras_object(FusedBatchNormalization(name="b"))
    old = dict(bn, class_name="BatchNormalization", registered_name="keras_se>BatchNormalization")
    assert type(keras.saving.deserialize_keras_object(old)) is keras.layers.BatchNormalization


# --------------------------------------------------------------------------- FusedBatchNormalization
def _numpy_batch_norm(x, gamma, beta, eps):
    """Training-mode BN over N, H, W with the biased batch variance; (y, mean, variance)."""
    mean = x.mean(axis=(0, 1, 2))
    variance = x.var(axis=(0, 1, 2))
    return gamma * (x - mean) / np.sqrt(variance + eps) + beta, mean, variance


@pytest.mark.parametrize("scale_center", [(True, True), (False, True), (True, False)])
def test_fused_batch_norm_equals_numpy_and_keras_with_gradients(scale_center, monkeypatch):
    """Training: outputs and moving statistics of NumPy's BN, gradients of Keras's."""
    scale, center = scale_center
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 5, 4, 6)) * 3 + 1).astype("float32")
    kwargs = dict(epsilon=1e-5, momentum=0.9, scale=scale, center=center)
    layer, reference = FusedBatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    for bn in (layer, reference):
        bn.build(x.shape)
    weights = [rng.normal(size=6).astype("float32") for _ in range(scale + center)]
    weights += [rng.normal(size=6).astype("float32"), rng.uniform(0.5, 2, size=6).astype("float32")]
    layer.set_weights(weights)
    reference.set_weights(weights)
    gamma = weights[0] if scale else 1.0
    beta = weights[int(scale)] if center else 0.0
    expected, mean, variance = _numpy_batch_norm(x.astype("float64"), gamma, beta, 1e-5)

    if keras.backend.backend() != "tensorflow":
        out = keras.ops.convert_to_numpy(layer(x, training=True))
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        return
    import tensorflow as tf

    fused_calls = []
    original = tf.raw_ops.FusedBatchNormV3

    def spy(**kwargs):
        fused_calls.append(kwargs["data_format"])
        return original(**kwargs)

    monkeypatch.setattr(tf.raw_ops, "FusedBatchNormV3", spy)
    results = []
    for bn in (layer, reference):
        xv = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xv)
            y = bn(xv, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))  # a gradient that depends on y
        grads = tape.gradient(loss, [xv, *bn.trainable_variables])
        results.append((y.numpy(), [g.numpy() for g in grads]))
    assert fused_calls == ["NHWC"]  # the layer took the fused kernel, the reference did not
    np.testing.assert_allclose(results[0][0], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        layer.moving_mean.numpy(), 0.9 * weights[-2] + 0.1 * mean, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        layer.moving_variance.numpy(), 0.9 * weights[-1] + 0.1 * variance, rtol=1e-5, atol=1e-6
    )
    for ours, theirs in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_fused_batch_norm_inference_mixed_precision_and_roundtrip(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    layer, reference = FusedBatchNormalization(), keras.layers.BatchNormalization()
    for bn in (layer, reference):
        bn.build(x.shape)
    weights = [rng.uniform(0.5, 2, size=8).astype("float32") for _ in range(4)]
    layer.set_weights(weights)
    reference.set_weights(weights)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x, training=False)),
        keras.ops.convert_to_numpy(reference(x, training=False)),
        rtol=1e-6,
        atol=1e-6,
    )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        bf16 = FusedBatchNormalization()
        y = bf16(x, training=True)
        assert keras.backend.standardize_dtype(y.dtype) == "bfloat16"
        assert keras.backend.standardize_dtype(bf16.moving_mean.dtype) == "float32"
        expected, mean, _ = _numpy_batch_norm(x.astype("float64"), 1.0, 0.0, 1e-3)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(y).astype("float32"), expected, atol=0.05
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(bf16.moving_mean), 0.01 * mean, atol=1e-3
        )
    finally:
        keras.config.set_dtype_policy(previous)
    assert_layer_roundtrip(lambda: FusedBatchNormalization(epsilon=1e-5, name="bn"), x, tmp_path)
