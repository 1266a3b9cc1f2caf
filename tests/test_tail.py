"""Tests for keras_se.speed.tail.BatchNormSqueezeExcite: SE(BN(x)) against the two layers, NumPy
and its own general path; serialization, including files of earlier releases."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite
from keras_se.layers import SEGate, Squeeze
from keras_se.speed import (
    BatchNormSqueezeExcite,
)
from tests import prefork
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
    result = prefork.run(
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
