"""Tests for keras_se.layers.SqueezeExcite against a NumPy reference of the paper's formula."""

from __future__ import annotations

import json
import os
import re

import keras
import numpy as np
import pytest

from keras_se import BatchNormSqueezeExcite, SqueezeExcite, se_units
from keras_se.layers import BatchNormalization as FusedBatchNormalization
from keras_se.layers import Conv2D as GroupedConv2D  # grouped case on TF's kernels
from keras_se.layers import SEGate
from tests.conftest import assert_layer_roundtrip


def numpy_se(x, w1, b1, w2, b2, *, squeeze="avg", data_format="channels_last"):
    """Reference: z = pool(U); s = sigmoid(W2 relu(W1 z + b1) + b2); X~ = s * U."""
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    spatial = tuple(range(1, x.ndim - 1))
    z = x.mean(axis=spatial) if squeeze == "avg" else x.max(axis=spatial)
    h = np.maximum(z @ w1 + (0 if b1 is None else b1), 0.0)
    s = 1.0 / (1.0 + np.exp(-(h @ w2 + (0 if b2 is None else b2))))
    out = x * s.reshape((x.shape[0],) + (1,) * len(spatial) + (x.shape[-1],))
    if data_format == "channels_first":
        out = np.moveaxis(out, -1, 1)
    return out, s


def _random_weights(layer, rng):
    weights = [rng.normal(size=tuple(w.shape)).astype("float32") * 0.5 for w in layer.weights]
    layer.set_weights(weights)
    if layer.use_bias:
        w1, w2, b1, b2 = (
            dict(zip([w.name for w in layer.weights], weights))[n]
            for n in ("reduce_kernel", "expand_kernel", "reduce_bias", "expand_bias")
        )
        return w1, b1, w2, b2
    w1, w2 = weights
    return w1, None, w2, None


@pytest.mark.parametrize("rank", [3, 4, 5])
@pytest.mark.parametrize("squeeze", ["avg", "max"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_matches_numpy_reference(rank, squeeze, data_format, use_bias):
    rng = np.random.default_rng(rank)
    channels = 32
    spatial = (5, 6, 4)[: rank - 2]
    shape = (3, *spatial, channels) if data_format == "channels_last" else (3, channels, *spatial)
    x = rng.normal(size=shape).astype("float32")
    layer = SqueezeExcite(8, squeeze=squeeze, data_format=data_format, use_bias=use_bias)
    layer.build(shape)
    assert layer.bottleneck_units == 4
    w1, b1, w2, b2 = _random_weights(layer, rng)
    expected, expected_s = numpy_se(x, w1, b1, w2, b2, squeeze=squeeze, data_format=data_format)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, rtol=1e-5, atol=1e-5)
    s = keras.ops.convert_to_numpy(layer.excitation(x))
    assert s.shape == (3, channels)
    np.testing.assert_allclose(s, expected_s, rtol=1e-5, atol=1e-6)


def test_parameter_count_is_papers_formula():
    # 2·C²/r + C/r + C with biases, 2·C²/r without.
    for channels, ratio in [(64, 16), (256, 16), (2048, 16), (512, 4)]:
        layer = SqueezeExcite(ratio)
        layer.build((None, 7, 7, channels))
        assert (
            layer.count_params() == 2 * channels * channels // ratio + channels // ratio + channels
        )
        layer = SqueezeExcite(ratio, use_bias=False)
        layer.build((None, 7, 7, channels))
        assert layer.count_params() == 2 * channels * channels // ratio


def test_units_rounding():
    assert se_units(256, 16) == 16
    assert se_units(24, 16) == 1  # min_units=1 floor
    assert se_units(40, 16, min_units=8) == 8
    assert se_units(24, 4, divisor=8) == 8  # 6 -> nearest multiple of 8
    assert se_units(100, 4, divisor=8) == 24  # 25 -> 24 (not below 0.9 * 25)
    assert se_units(64, 16, units=7) == 7
    layer = SqueezeExcite(4, divisor=8)
    layer.build((None, 4, 4, 96))
    assert layer.bottleneck_units == 24


def test_output_shape_dtype_gradients_and_gate_range():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8, 8, 32)).astype("float32")
    layer = SqueezeExcite(4)
    y = layer(x)
    assert tuple(y.shape) == x.shape and keras.ops.convert_to_numpy(y).dtype == np.float32
    s = keras.ops.convert_to_numpy(layer.excitation(x))
    assert np.all(s > 0) and np.all(s < 1)

    grads = _gradients(layer, x)
    for name, g in grads.items():
        assert np.isfinite(g).all() and np.abs(g).sum() > 0, name


def _gradients(layer, x):
    """d sum(layer(x)^2) / d(input, W1, W2) on the active backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(layer(xt) ** 2)
        g = tape.gradient(loss, [xt, layer.reduce_kernel, layer.expand_kernel])
    elif backend == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]

        def loss(xv, tv):
            y, _ = layer.stateless_call(tv, [], xv)
            return (y**2).sum()

        gx, gt = jax.grad(loss, argnums=(0, 1))(x, trainable)
        names = [v.name for v in layer.trainable_variables]
        g = [gx, gt[names.index("reduce_kernel")], gt[names.index("expand_kernel")]]
    else:
        pytest.skip(f"gradient check not written for backend {backend}")
    return {n: keras.ops.convert_to_numpy(v) for n, v in zip(["input", "W1", "W2"], g)}


@pytest.mark.integration
def test_layer_suite_under_jax_backend():
    """The same layer tests pass under the JAX backend (the layer is backend-agnostic)."""
    if keras.backend.backend() == "jax":
        pytest.skip("already running under the JAX backend")
    pytest.importorskip("jax", reason="jax is in the dev extra; install keras-se[dev]")
    import os
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        # -n 0: one process (the suite around it already uses the cores)
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", __file__],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\b[1-9]\d* passed", summary) and "failed" not in summary, summary


def test_sequential_functional_fit_and_serialization(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=(16,))
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(16, 3, padding="same"),
            SqueezeExcite(4, name="se"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    before = keras.ops.convert_to_numpy(model.get_layer("se").reduce_kernel).copy()
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = keras.ops.convert_to_numpy(model.get_layer("se").reduce_kernel)
    assert not np.allclose(before, after)

    for kwargs in (
        {},
        {"squeeze": "max", "gate": "hard_sigmoid", "use_bias": False},
        {"units": 3, "activation": "swish"},
        {"ratio": 2.5, "divisor": 2},
    ):
        assert_layer_roundtrip(lambda kw=kwargs: SqueezeExcite(**kw), x[:2] * 1.0, tmp_path)


@pytest.mark.parametrize(
    "layer_class, extra",
    [
        (SqueezeExcite, {}),
        (BatchNormSqueezeExcite, dict(epsilon=1e-5, momentum=0.9, synchronized=True)),
    ],
)
def test_config_mirrors_constructor(layer_class, extra):
    arguments = dict(
        ratio=8,
        units=None,
        min_units=2,
        divisor=4,
        squeeze="max",
        activation="gelu",
        gate="hard_sigmoid",
        use_bias=False,
        data_format="channels_first",
        **extra,
    )
    layer = layer_class(**arguments, name="se")
    config = layer.get_config()
    assert {key: config[key] for key in arguments} == arguments
    assert layer_class.from_config(config).get_config() == config


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    layer = SqueezeExcite(4)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 16)).astype("float32")
    y = layer(x)
    compute = policy.split("_")[1]
    assert keras.backend.standardize_dtype(y.dtype) == compute
    assert all(keras.backend.standardize_dtype(w.dtype) == "float32" for w in layer.weights)
    s = layer.excitation(x)
    assert keras.backend.standardize_dtype(s.dtype) == compute
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")),
        x * keras.ops.convert_to_numpy(keras.ops.cast(s, "float32"))[:, None, None, :],
        rtol=2e-2,
        atol=2e-2,
    )


def test_follows_global_data_format():
    keras.config.set_image_data_format("channels_first")
    assert SqueezeExcite().data_format == "channels_first"


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(ratio=0), "ratio=0"),
        (dict(ratio=-2), "ratio=-2"),
        (dict(ratio="16"), "ratio='16'"),
        (dict(ratio=True), "ratio=True"),
        (dict(ratio=float("inf")), "ratio=inf"),
        (dict(ratio=float("-inf")), "ratio=-inf"),
        (dict(ratio=float("nan")), "ratio=nan"),
        (dict(ratio=np.float32("inf")), "ratio=np.float32(inf)"),
        (dict(units=0), "units=0"),
        (dict(units=2.5), "units=2.5"),
        (dict(min_units=-1), "min_units=-1"),
        (dict(divisor=0), "divisor=0"),
        (dict(use_bias="no"), "use_bias='no'"),
        (dict(squeeze="median"), "squeeze='median'"),
        (dict(gate="nope"), "gate='nope'"),
        (dict(activation="nope"), "activation='nope'"),
        (dict(data_format="NHWC"), "data_format='NHWC'"),
    ],
)
def test_bad_constructor_arguments(kwargs, needle):
    for layer_class in (SqueezeExcite, BatchNormSqueezeExcite):
        with pytest.raises(ValueError, match=None) as info:
            layer_class(**kwargs)
        assert needle in str(info.value)


def test_configs_are_strict_json():
    """Only finite numbers reach a config: `Infinity`/`NaN` are not JSON."""
    for layer in (SqueezeExcite(np.float64(2.5)), BatchNormSqueezeExcite(4, epsilon=1e-5)):
        text = json.dumps(layer.get_config(), allow_nan=False)
        assert type(layer).from_config(json.loads(text)).get_config() == layer.get_config()


def test_bad_build_inputs():
    with pytest.raises(ValueError, match=r"rank >= 3.*\(4, 16\)"):
        SqueezeExcite().build((4, 16))
    with pytest.raises(ValueError, match="known channel dimension"):
        SqueezeExcite().build((None, 8, 8, None))
    with pytest.raises(ValueError, match=r"0 bottleneck units for 8 channels.*ratio=16"):
        SqueezeExcite(16, min_units=0).build((None, 4, 4, 8))


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
    from keras_se import BatchNormSqueezeExcite

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
    from keras_se import BatchNormSqueezeExcite

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

    from keras_se import BatchNormSqueezeExcite

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
    from keras_se import BatchNormSqueezeExcite

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
    from keras_se import BatchNormSqueezeExcite

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
        from keras_se import BatchNormSqueezeExcite
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


# --------------------------------------------------------------------------- contracts
def _input(channels, data_format, batch=None, spatial=(5, 6)):
    if data_format == "channels_last":
        return (batch, *spatial, channels)
    return (batch, channels, *spatial)


@pytest.mark.parametrize("layer_class", [SqueezeExcite, BatchNormSqueezeExcite])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_built_layer_refuses_another_channel_count(layer_class, data_format):
    """Keras's own InputSpec message: names the layer, the channel axis and its value."""
    layer = layer_class(4, data_format=data_format, name="gate")
    layer(np.ones(_input(16, data_format, batch=2), "float32"))
    axis = -1 if data_format == "channels_last" else 1
    message = (
        rf"layer 'gate' is incompatible with the layer: expected axis {axis} of input shape "
        r"to have value 16"
    )
    wrong = np.ones(_input(8, data_format, batch=2), "float32")
    with pytest.raises(ValueError, match=message):
        layer(wrong)  # eager
    with pytest.raises(ValueError, match=message):
        layer(keras.Input(_input(8, data_format)[1:]))  # symbolic
    with pytest.raises(ValueError, match=message):
        layer.excitation(wrong)  # the method that bypasses __call__ checks it too
    if layer_class is BatchNormSqueezeExcite:
        with pytest.raises(ValueError, match=message):
            layer.features(wrong)
    # The spatial size and the batch are free.
    other = np.ones(_input(16, data_format, batch=3, spatial=(2, 3)), "float32")
    assert keras.ops.convert_to_numpy(layer(other)).shape == other.shape


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
    from keras_se.layers import Squeeze

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


# --------------------------------------------------------------------------- Squeeze
@pytest.mark.parametrize("squeeze", ["avg", "max"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_squeeze_layer_is_keepdims_global_pool(squeeze, data_format, tmp_path):
    from keras_se.layers import Squeeze

    x = np.random.default_rng(1).normal(size=(3, 5, 6, 4)).astype("float32")
    if data_format == "channels_first":
        x = np.moveaxis(x, -1, 1)
    axes = (1, 2) if data_format == "channels_last" else (2, 3)
    reduce = np.mean if squeeze == "avg" else np.max
    layer = Squeeze(squeeze, data_format=data_format)
    out = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(out, reduce(x, axis=axes, keepdims=True), rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape(x.shape) == out.shape
    assert Squeeze.from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="squeeze='sum'"):
        Squeeze("sum")
    with pytest.raises(ValueError, match="data_format='NHWC'"):
        Squeeze(data_format="NHWC")


def test_squeeze_gradient_is_a_broadcast_on_jax():
    """A full-window reduce_window pool (keras AveragePooling2D on JAX) has a gradient costing
    window x map (3.6x slower SE-ResNet-50 training step, BENCHMARKS.md): the squeeze's
    gradient must be a plain broadcast."""
    if keras.backend.backend() != "jax":
        pytest.skip("JAX-specific: runs in test_layer_suite_under_jax_backend's subprocess")
    import jax

    from keras_se.layers import Squeeze

    layer = Squeeze()
    x = np.ones((2, 8, 8, 4), "float32")
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda v: layer(v).sum()))(x))
    assert "reduce_window" not in jaxpr
    avg = keras.layers.AveragePooling2D(8)  # the counter-example the check would catch
    assert "reduce_window" in str(jax.make_jaxpr(jax.grad(lambda v: avg(v).sum()))(x))


# --------------------------------------------------------------------------- PointwiseConv2D
@pytest.mark.parametrize("use_bias", [True, False])
def test_pointwise_conv_equals_conv2d_on_maps_and_descriptors(use_bias, tmp_path):
    from keras_se.layers import PointwiseConv2D

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
    from keras_se.layers import PointwiseConv2D

    x = np.random.default_rng(1).normal(size=(2, 5, 1, 1)).astype("float32")
    layer = PointwiseConv2D(3, data_format="channels_first")
    out = keras.ops.convert_to_numpy(layer(x))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    expected = x[:, :, 0, 0] @ kernel[0, 0] + bias
    np.testing.assert_allclose(out, expected[:, :, None, None], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- layers.Conv2D (grouped)
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


def test_grouped_conv_keeps_keras_class_name_and_loads_under_its_first_name():
    """Weights files key layers by class name; ``.keras`` files of its first name still load."""
    from keras_se import layers

    assert layers.GroupedConv2D is GroupedConv2D and GroupedConv2D.__name__ == "Conv2D"
    config = keras.saving.serialize_keras_object(GroupedConv2D(8, 3, groups=2, name="g"))
    assert config["registered_name"] == "keras_se>Conv2D"
    first = dict(config, class_name="GroupedConv2D", registered_name="keras_se>GroupedConv2D")
    restored = keras.saving.deserialize_keras_object(first)
    assert type(restored) is GroupedConv2D and restored.groups == 2 and restored.name == "g"


# --------------------------------------------------------------------------- layers.BatchNormalization (fused)
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


@pytest.mark.parametrize("layer_class", [SqueezeExcite, BatchNormSqueezeExcite])
def test_integer_inputs_are_refused_by_name_and_low_precision_floats_work(layer_class):
    """An SE gate averages and scales a feature map: an int32 input is a TypeError naming the
    layer and the dtype, both when a functional model is built and when called eagerly; float16
    and bfloat16 inputs (autocast, or under the layer's own dtype) give the float32 result."""
    x = keras.Input((4, 4, 8), dtype="int32")
    with pytest.raises(TypeError, match=r"'gate_f'.*input dtype=int32"):
        keras.Model(x, layer_class(ratio=2, name="gate_f")(x))
    with pytest.raises(TypeError, match=r"'gate_e'.*input dtype=int32"):
        layer_class(ratio=2, name="gate_e")(np.ones((1, 4, 4, 8), "int32"))

    images = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    reference = layer_class(ratio=2)
    expected = keras.ops.convert_to_numpy(reference(images))
    for dtype, atol in (("float16", 1e-2), ("bfloat16", 5e-2)):
        x = keras.Input((4, 4, 8), dtype=dtype)
        layer = layer_class(ratio=2)
        model = keras.Model(x, layer(x))
        layer.set_weights(reference.get_weights())
        out = model(keras.ops.cast(images, dtype))  # autocast to the float32 policy
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, atol=atol)
        own = layer_class(ratio=2, dtype=dtype)  # computing in the low precision itself
        own.build(images.shape)
        own.set_weights(reference.get_weights())
        out = own(keras.ops.cast(images, dtype))
        assert keras.backend.standardize_dtype(out.dtype) == dtype
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), expected, atol=atol * 4
        )
