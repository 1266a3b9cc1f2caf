"""Tests for keras_se.speed: the speed layers against Keras's layers, NumPy and each other,
the rewrite `accelerate` against the textbook graph, and files of the fused era."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite
from keras_se.layers import SEGate, Squeeze
from keras_se.speed import (
    BatchNormSqueezeExcite,
    FusedBatchNormalization,
    GroupedConv2D,
    PointwiseConv2D,
)
from tests.conftest import assert_layer_roundtrip
from tests.test_layers import numpy_se


# --------------------------------------------------------------------------- BatchNormSqueezeExcite
def _fused_with_random_weights(layer, shape, rng):
    """Builds ``layer`` on ``shape`` and gives every variable a random value; returns them."""
    layer.build(shape)
    values = {}
    for w in layer.weights:
        value = rng.normal(size=tuple(w.shape)).astype("float32") * 0.5
        if w.name == "moving_variance":
            value = rng.uniform(0.5, 2.0, size=tuple(w.shape)).astype("float32")
        w.assign(value)
        values[w.name] = value
    return values


def numpy_batchnorm(x, gamma, beta, mean, variance, *, epsilon, data_format="channels_last"):
    shape = (1,) * (x.ndim - 1) + (-1,) if data_format == "channels_last" else (1, -1)
    shape = shape + (1,) * (x.ndim - 2) if data_format == "channels_first" else shape
    r = lambda v: v.reshape(shape)  # noqa: E731
    return r(gamma) * (x - r(mean)) / np.sqrt(r(variance) + epsilon) + r(beta)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("squeeze", ["avg", "max"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_batchnorm_se_is_batchnorm_then_se(training, squeeze, data_format):

    rng = np.random.default_rng(7)
    shape = (4, 6, 5, 32) if data_format == "channels_last" else (4, 32, 6, 5)
    x = (rng.normal(size=shape) * 3 + 1).astype("float32")
    layer = BatchNormSqueezeExcite(
        8, epsilon=1e-5, momentum=0.9, squeeze=squeeze, data_format=data_format
    )
    v = _fused_with_random_weights(layer, shape, rng)
    axes = (0, 2, 3) if data_format == "channels_first" else (0, 1, 2)
    if training:
        mean, variance = x.mean(axis=axes), x.var(axis=axes)
    else:
        mean, variance = v["moving_mean"], v["moving_variance"]
    u = numpy_batchnorm(
        x, v["gamma"], v["beta"], mean, variance, epsilon=1e-5, data_format=data_format
    )
    expected, expected_s = numpy_se(
        u,
        v["reduce_kernel"],
        v["reduce_bias"],
        v["expand_kernel"],
        v["expand_bias"],
        squeeze=squeeze,
        data_format=data_format,
    )
    out = keras.ops.convert_to_numpy(layer(x, training=training))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    if training:  # moving averages updated as keras BatchNormalization does
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_mean),
            0.9 * v["moving_mean"] + 0.1 * mean,
            rtol=1e-5,
            atol=1e-6,
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.moving_variance),
            0.9 * v["moving_variance"] + 0.1 * variance,
            rtol=1e-5,
            atol=1e-6,
        )
    else:  # excitation() and features() use the moving statistics
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.excitation(x)), expected_s, rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(layer.features(x)), u, rtol=1e-5, atol=1e-5
        )


def test_batchnorm_se_given_means_equal_its_own_squeeze():

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 7, 7, 16)).astype("float32")
    layer = BatchNormSqueezeExcite(4, momentum=0.5)
    _fused_with_random_weights(layer, x.shape, rng)
    means = x.mean(axis=(1, 2))
    for training in (False, True):
        start = [keras.ops.convert_to_numpy(w) for w in layer.non_trainable_weights]
        alone = keras.ops.convert_to_numpy(layer(x, training=training))
        after_alone = [keras.ops.convert_to_numpy(w) for w in layer.non_trainable_weights]
        for w, value in zip(layer.non_trainable_weights, start):
            w.assign(value)
        for given in (means, means[:, None, None, :]):
            out = keras.ops.convert_to_numpy(layer([x, given], training=training))
            np.testing.assert_allclose(out, alone, rtol=1e-5, atol=1e-5)
            for w, value, initial in zip(layer.non_trainable_weights, after_alone, start):
                np.testing.assert_allclose(keras.ops.convert_to_numpy(w), value, rtol=1e-6)
                w.assign(initial)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer.excitation([x, means])),
        keras.ops.convert_to_numpy(layer.excitation(x)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_batchnorm_se_gradients_equal_the_two_layers():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient comparison written with tf.GradientTape")
    import tensorflow as tf


    rng = np.random.default_rng(5)
    x = tf.constant((rng.normal(size=(4, 6, 6, 32)) * 2 + 0.5).astype("float32"))
    fused = BatchNormSqueezeExcite(4, epsilon=1e-5)
    v = _fused_with_random_weights(fused, x.shape, rng)
    bn, se = keras.layers.BatchNormalization(epsilon=1e-5), SqueezeExcite(4)
    bn.build(x.shape)
    se.build(x.shape)
    bn.set_weights([v[n] for n in ("gamma", "beta", "moving_mean", "moving_variance")])
    se.set_weights([v[n] for n in ("reduce_kernel", "expand_kernel", "reduce_bias", "expand_bias")])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        reference = tf.reduce_sum(tf.sin(se(bn(x, training=True))))
        ours = tf.reduce_sum(tf.sin(fused(x, training=True)))
    names = ("gamma", "beta", "reduce_kernel", "expand_kernel", "reduce_bias", "expand_bias")
    expected = tape.gradient(reference, [x, bn.gamma, bn.beta, *se.trainable_weights])
    by_name = {w.name: w for w in fused.trainable_weights}
    got = tape.gradient(ours, [x] + [by_name[n] for n in names])
    assert float(ours) == pytest.approx(float(reference), rel=1e-5)
    order = [0, 1, 2] + [3 + [w.name for w in se.trainable_weights].index(n) for n in names[2:]]
    for g, i in zip(got, order):
        np.testing.assert_allclose(g.numpy(), expected[i].numpy(), rtol=1e-4, atol=1e-5)


def _general_path(layer):
    """``layer`` with its TensorFlow kernel path switched off (the reference: the general ops)."""
    layer._fusable = lambda *args, **kwargs: False
    return layer


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_batchnorm_se_kernel_path_equals_general_path_with_means(policy, monkeypatch):
    """Training on TF runs ``FusedBatchNormV3``; outputs, statistics and every gradient (through
    ``means`` = mean_hw(x) taken inside the tape, as the fused bottleneck does) equal the general path."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the kernel path is TensorFlow's")
    import tensorflow as tf

    rng = np.random.default_rng(11)
    x = tf.constant((rng.normal(size=(4, 7, 6, 32)) * 2 + 0.5).astype("float32"))
    keras.config.set_dtype_policy(policy)
    try:
        ours, reference = (
            BatchNormSqueezeExcite(4, momentum=0.8),
            BatchNormSqueezeExcite(4, momentum=0.8),
        )
        _fused_with_random_weights(ours, x.shape, rng)
        _general_path(reference).build(x.shape)
        reference.set_weights(ours.get_weights())
        calls = []
        original = tf.raw_ops.FusedBatchNormV3

        def spy(**kwargs):
            calls.append((kwargs["x"].dtype.name, kwargs["is_training"]))
            return original(**kwargs)

        monkeypatch.setattr(tf.raw_ops, "FusedBatchNormV3", spy)
        results = []
        for layer in (ours, reference):
            with tf.GradientTape() as tape:
                tape.watch(x)
                means = tf.reduce_mean(x, axis=(1, 2))
                y = layer(x, means, training=True)
                loss = tf.reduce_sum(tf.sin(tf.cast(y, "float32")))
            grads = tape.gradient(loss, [x, *layer.trainable_variables])
            results.append((y, grads, [w.numpy() for w in layer.non_trainable_variables]))
    finally:
        keras.config.set_dtype_policy("float32")
    dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    assert calls == [(dtype, True)]  # the layer took the kernel, the reference did not
    (y, grads, stats), (y_ref, grads_ref, stats_ref) = results
    assert y.dtype == y_ref.dtype == dtype
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == "bfloat16" else dict(rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        tf.cast(y, "float32").numpy(), tf.cast(y_ref, "float32").numpy(), **tol
    )
    for ours_stat, ref_stat in zip(stats, stats_ref):
        # bfloat16: the kernel averages the bf16 input, the general path its float32 means
        stat_tol = dict(rtol=1e-2, atol=2e-3) if dtype == "bfloat16" else dict(rtol=1e-5)
        np.testing.assert_allclose(ours_stat, ref_stat, **stat_tol)
    for g, g_ref in zip(grads, grads_ref):
        g, g_ref = tf.cast(g, "float32").numpy(), tf.cast(g_ref, "float32").numpy()
        scale = np.abs(g_ref).max()
        assert np.abs(g - g_ref).max() <= (3e-2 if dtype == "bfloat16" else 1e-4) * scale


def test_batchnorm_se_takes_the_general_path_where_the_kernel_does_not_apply():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the kernel path is TensorFlow's")
    x = np.ones((2, 4, 4, 16), "float32")
    assert BatchNormSqueezeExcite(4)._fusable(x, True)
    assert not BatchNormSqueezeExcite(4)._fusable(x, False)  # inference: moving statistics
    assert not BatchNormSqueezeExcite(4, squeeze="max")._fusable(x, True)
    assert not BatchNormSqueezeExcite(4, synchronized=True)._fusable(x, True)
    assert not BatchNormSqueezeExcite(4, data_format="channels_first")._fusable(x, True)
    assert not BatchNormSqueezeExcite(4)._fusable(np.ones((2, 4, 16), "float32"), True)


def test_batchnorm_se_serialization_and_mixed_precision(tmp_path):

    x = np.random.default_rng(2).normal(size=(2, 6, 6, 16)).astype("float32")
    assert_layer_roundtrip(
        lambda: BatchNormSqueezeExcite(4, epsilon=1e-5, momentum=0.9, name="fused"), x, tmp_path
    )
    reference = BatchNormSqueezeExcite(4)
    expected = keras.ops.convert_to_numpy(reference(x, training=True))
    keras.config.set_dtype_policy("mixed_float16")
    layer = BatchNormSqueezeExcite(4)
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    y = layer(x, training=True)
    assert keras.backend.standardize_dtype(y.dtype) == "float16"
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in layer.weights)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")), expected, rtol=2e-2, atol=2e-2
    )


def test_batchnorm_se_bad_arguments():

    with pytest.raises(ValueError, match=r"epsilon=0"):
        BatchNormSqueezeExcite(epsilon=0)
    with pytest.raises(ValueError, match=r"epsilon=inf"):
        BatchNormSqueezeExcite(epsilon=float("inf"))
    with pytest.raises(ValueError, match=r"momentum=nan"):
        BatchNormSqueezeExcite(momentum=float("nan"))
    with pytest.raises(ValueError, match=r"synchronized=1"):
        BatchNormSqueezeExcite(synchronized=1)
    with pytest.raises(ValueError, match=r"momentum=1.5"):
        BatchNormSqueezeExcite(momentum=1.5)
    with pytest.raises(ValueError, match=r"ratio=0"):
        BatchNormSqueezeExcite(ratio=0)
    with pytest.raises(ValueError, match=r"squeeze='max'"):
        BatchNormSqueezeExcite(squeeze="max").build([(None, 4, 4, 32), (None, 32)])
    with pytest.raises(ValueError, match=r"one value per channel \(32\).*\(None, 16\)"):
        BatchNormSqueezeExcite().build([(None, 4, 4, 32), (None, 16)])


@pytest.mark.integration
def test_batchnorm_se_synchronized_uses_global_batch_statistics():
    """synchronized=True under a 2-replica MirroredStrategy (2 logical CPUs, fresh process):
    the statistics are the global batch's, not each replica's half."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute runs on the TensorFlow backend")
    import json
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from keras_se.speed import BatchNormSqueezeExcite
        x = np.random.default_rng(0).normal(size=(8, 4, 4, 16)).astype("float32")
        x += np.arange(8, dtype="float32")[:, None, None, None]  # halves differ in mean
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            layer = BatchNormSqueezeExcite(4, synchronized=True, momentum=0.0)
            layer.build(x.shape)
        data = tf.data.Dataset.from_tensor_slices(x).batch(8)
        batch = next(iter(strategy.experimental_distribute_dataset(data)))
        strategy.run(tf.function(lambda b: layer(b, training=True)), (batch,))
        print("JSON" + json.dumps({
            "mean": layer.moving_mean.numpy().tolist(),
            "variance": layer.moving_variance.numpy().tolist(),
        }))
        """
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(li for li in result.stdout.splitlines() if li.startswith("JSON"))
    stats = json.loads(line[4:])
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 16)).astype("float32")
    x += np.arange(8, dtype="float32")[:, None, None, None]
    np.testing.assert_allclose(stats["mean"], x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["variance"], x.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)


def test_the_two_layers_are_siblings_with_one_interface():
    """The fused layer is no SqueezeExcite (other inputs, another function); both are SEGates."""
    plain, fused = SqueezeExcite(4, name="gate"), BatchNormSqueezeExcite(4)
    assert isinstance(plain, SEGate) and isinstance(fused, SEGate)
    assert not isinstance(fused, SqueezeExcite) and not isinstance(plain, BatchNormSqueezeExcite)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 16)).astype("float32")
    for layer in (plain, fused):
        y = layer(x)
        assert layer.channels == 16 and layer.bottleneck_units == 4 and layer.ratio == 4
        assert tuple(layer.excitation(x).shape) == (2, 16)
        assert tuple(layer.features(x).shape) == tuple(y.shape) == x.shape
    # SqueezeExcite's call takes the feature map only: a pair is refused.
    pair = [x, x.mean(axis=(1, 2))]
    with pytest.raises(ValueError, match=r'"gate" expects 1 input\(s\), but it received 2'):
        plain(pair)
    with pytest.raises(ValueError, match=r"rank >= 3"):
        SqueezeExcite(4)(pair)


def test_batchnorm_se_means_argument_and_saved_pair_form(tmp_path):
    """``layer(x, means)`` equals the pair form ``layer([x, means])``; both save and load,
    and ``feature_input`` is ``x`` in either."""

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 5, 8)).astype("float32")
    outputs = []
    for form in ("argument", "pair"):
        keras.utils.clear_session()
        inputs = keras.Input((5, 5, 8))
        means = Squeeze()(inputs)
        layer = BatchNormSqueezeExcite(2, name="fused")
        y = layer(inputs, means) if form == "argument" else layer([inputs, means])
        assert layer.feature_input is inputs
        model = keras.Model(inputs, y)
        if not outputs:
            weights = [rng.normal(size=w.shape).astype("float32") for w in model.weights]
        model.set_weights(weights)
        out = keras.ops.convert_to_numpy(model(x))
        path = os.path.join(tmp_path, f"{form}.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), out, atol=1e-6)
        outputs.append(out)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-6)


def test_files_saved_by_the_previous_release_load():
    """tests/data/se_layers_v0.keras: SqueezeExcite (both data formats) and
    BatchNormSqueezeExcite (on x and on [x, means]) saved before SEGate existed
    (tests/data/make_se_layers_v0.py); same outputs as recorded then."""
    data = os.path.join(os.path.dirname(__file__), "data")
    model = keras.models.load_model(os.path.join(data, "se_layers_v0.keras"), safe_mode=True)
    recorded = np.load(os.path.join(data, "se_layers_v0_io.npz"))
    out = keras.ops.convert_to_numpy(model(recorded["inputs"], training=False))
    np.testing.assert_allclose(out, recorded["outputs"], rtol=1e-5, atol=1e-6)
    kinds = {layer.name: type(layer).__name__ for layer in model.layers}
    assert kinds["se"] == kinds["se_cf"] == "SqueezeExcite"
    assert kinds["fused"] == kinds["fused_means"] == "BatchNormSqueezeExcite"
    assert model.get_layer("fused_means").feature_input is model.get_layer("fused").output


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




# --------------------------------------------------------------------------- accelerate
def _fused_era_network():
    """tests/data/make_fused_era.py's network, built by today's builders (the textbook graph)."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "data", "make_fused_era.py")
    spec = importlib.util.spec_from_file_location("make_fused_era", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.normal(size=tuple(w.shape)) * 0.3
        if w.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, size=tuple(w.shape))
        w.assign(value.astype("float32"))


def test_accelerate_shares_variables_and_computes_the_textbook_function():
    """Two SE bottlenecks (one grouped): both tails fused, the BN and grouped conv swapped,
    every variable the textbook one; inference, training outputs, moving statistics and
    gradients equal the textbook graph's."""
    from keras_se.speed import accelerate, bottleneck_tails

    model = _fused_era_network()
    _randomize(model)
    fast = accelerate(model)
    kinds = [type(layer).__name__ for layer in fast.layers]
    assert kinds.count("BatchNormSqueezeExcite") == 2 == len(bottleneck_tails(model))
    assert "GroupedConv2D" in kinds and "FusedBatchNormalization" in kinds
    assert not {"BatchNormSqueezeExcite", "GroupedConv2D"} & {
        type(layer).__name__ for layer in model.layers
    }
    assert [id(v) for v in sorted(fast.weights, key=lambda v: v.path)] == [
        id(v) for v in sorted(model.weights, key=lambda v: v.path)
    ]
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(fast(x), model(x), rtol=1e-5, atol=1e-5)

    def train_call(net):
        before = [v.numpy() for v in model.non_trainable_weights]
        with _tape() as tape:
            y = net(x, training=True)
            loss = keras.ops.sum(y * np.arange(3, dtype="float32"))
        grads = tape.gradient(loss, model.trainable_weights)
        after = [v.numpy() for v in model.non_trainable_weights]
        for v, value in zip(model.non_trainable_weights, before):
            v.assign(value)
        return keras.ops.convert_to_numpy(y), after, [np.asarray(g) for g in grads]

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients through GradientTape: TensorFlow")
    y_fast, stats_fast, grads_fast = train_call(fast)
    y_book, stats_book, grads_book = train_call(model)
    np.testing.assert_allclose(y_fast, y_book, rtol=1e-4, atol=1e-4)
    for a, b in zip(stats_fast, stats_book):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_fast, grads_book):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)


def _tape():
    import tensorflow as tf

    return tf.GradientTape()


def test_accelerate_reads_freezing_from_the_textbook_layers():
    """A frozen BatchNorm (fine-tuning's --freeze-bn) keeps gamma, beta and its statistics
    through a training step of the fast twin, also where it is fused with an SE gate, whose
    weights still move; frozen, the twin's training output is its inference output."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a GradientTape step: TensorFlow")
    from keras_se import finetune
    from keras_se.speed import accelerate

    model = _fused_era_network()
    _randomize(model, seed=3)
    finetune.freeze_batchnorm(model)
    fast = accelerate(model)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    ses = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    frozen = [v.numpy() for layer in bns for v in layer.weights]
    gates = [v.numpy() for layer in ses for v in layer.weights]
    assert not any(v.trainable for layer in bns for v in layer.weights)
    assert {id(v) for v in fast.trainable_variables} == {id(v) for v in model.trainable_variables}
    x = np.random.default_rng(2).normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(fast(x, training=True), fast(x), rtol=1e-5, atol=1e-5)
    optimizer = keras.optimizers.SGD(0.5)
    with _tape() as tape:
        loss = keras.ops.sum(fast(x, training=True) ** 2)
    variables = fast.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    for before, v in zip(frozen, [v for layer in bns for v in layer.weights]):
        np.testing.assert_array_equal(before, v.numpy())
    assert all(
        not np.allclose(before, v.numpy())
        for before, v in zip(gates, [v for layer in ses for v in layer.weights])
    )


def test_accelerate_leaves_the_textbook_model_savable(tmp_path):
    """Saving after `accelerate` writes the textbook layers (no speed layer) and reloads."""
    from keras_se.speed import accelerate

    model = _fused_era_network()
    accelerate(model)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x = np.ones((1, 16, 16, 3), "float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="functional Keras model"):
        accelerate(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_files_of_the_fused_era_load():
    """tests/data/fused_era.* (written by e5f21c0, make_fused_era.py): the .keras file loads
    as saved, its weights file loads into today's textbook graph; both compute the recorded
    outputs."""
    from keras_se.speed import load_fused_weights

    data = os.path.join(os.path.dirname(__file__), "data")
    recorded = np.load(os.path.join(data, "fused_era_io.npz"))
    saved = keras.models.load_model(os.path.join(data, "fused_era.keras"), safe_mode=True)
    assert "BatchNormSqueezeExcite" in {type(layer).__name__ for layer in saved.layers}
    np.testing.assert_allclose(
        saved(recorded["inputs"]), recorded["outputs"], rtol=1e-5, atol=1e-5
    )
    model = _fused_era_network()
    load_fused_weights(model, os.path.join(data, "fused_era.weights.h5"))
    np.testing.assert_allclose(
        model(recorded["inputs"]), recorded["outputs"], rtol=1e-5, atol=1e-5
    )
