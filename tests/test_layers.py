"""Tests for keras_se.layers.SqueezeExcite against a NumPy reference of the paper's formula."""

from __future__ import annotations

import json
import os
import re

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, se_units
from keras_se.speed import BatchNormSqueezeExcite
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
    import subprocess
    import sys

    # No fast-tier budget inside: beside the suite's other worker its first tests (JAX's
    # compiles) ran over 8 s, a verdict on the load rather than on the tests.
    env = dict(
        os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", KERAS_SE_FAST_TEST_BUDGET_S="0"
    )
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
