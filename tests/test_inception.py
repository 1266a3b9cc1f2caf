"""SE-Inception-v3 / SE-Inception-ResNet-v2 against keras.applications and the paper's closed form.

The plain twins are checked against the keras.applications models themselves (same
layer names in the same order, same parameter count, identical outputs once weights are
copied by name); the SE overhead against ``Σ (2·C²/r + C/r + C)`` over the module widths
of the Inception papers, written out below rather than read from the builder.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, models
from keras_se.models import inception
from tests.conftest import forward, shapes_only

SMALL = dict(input_shape=(75, 75, 3), classes=3)

KERAS_APPLICATIONS = {
    "inception_v3": keras.applications.InceptionV3,
    "inception_resnet_v2": keras.applications.InceptionResNetV2,
}
#: keras.applications' count_params() at 299x299, classes=1000.
REFERENCE_TOTAL_PARAMS = {"inception_v3": 23_851_784, "inception_resnet_v2": 55_873_736}
#: Width of every tensor that carries an SE block: Inception-v3 module outputs
#: (35x35: 256, 288, 288; 17x17: 768 x5; 8x8: 1280, 2048, 2048) and the residual
#: branches of Inception-ResNet-v2 (10 x block35: 320, 20 x block17: 1088, 10 x block8: 2080).
SE_CHANNELS = {
    "inception_v3": [256, 288, 288] + [768] * 5 + [1280, 2048, 2048],
    "inception_resnet_v2": [320] * 10 + [1088] * 20 + [2080] * 10,
}
SE_NAMES = {
    "inception_v3": [f"mixed{i}_se" for i in range(11)],
    "inception_resnet_v2": [f"block35_{i}_se" for i in range(1, 11)]
    + [f"block17_{i}_se" for i in range(1, 21)]
    + [f"block8_{i}_se" for i in range(1, 11)],
}


def closed_form_overhead(channels, ratio=16, use_bias=True):
    """The paper's SE parameters: 2·C·(C/r) weights, plus C/r + C biases, per block."""
    return sum(2 * c * (c // ratio) + (c // ratio + c if use_bias else 0) for c in channels)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def small_model():
    """``small_model(name)``: the registered model at 75x75, classes=3, built once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = models.get(name, **SMALL)
        return cache[name]

    return get


def _se_layers(model):
    return [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(KERAS_APPLICATIONS))
def test_plain_twin_is_keras_applications_model(arch, tmp_path):
    # keras.applications first: the global name counters are then advanced, and our
    # builder must still produce the names of a fresh session.
    reference = KERAS_APPLICATIONS[arch](weights=None, classifier_activation=None, **SMALL)
    ours = models.get(arch, classifier_activation=None, **SMALL)
    assert ours.layers[0].name == "image"
    assert [layer.name for layer in ours.layers[1:]] == [
        layer.name for layer in reference.layers[1:]
    ]
    assert ours.count_params() == reference.count_params()

    for layer in reference.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    expected = _numpy(reference(x))
    np.testing.assert_allclose(_numpy(ours(x)), expected, rtol=1e-6, atol=1e-7)

    if arch != "inception_v3":
        return  # (the 220 MB Inception-ResNet-v2 file takes longer than it teaches)
    # A weights file saved from keras.applications loads by name through `weights=`.
    path = str(tmp_path / "reference.weights.h5")
    reference.save_weights(path)
    loaded = models.get(arch, classifier_activation=None, weights=path, **SMALL)
    np.testing.assert_allclose(_numpy(loaded(x)), expected, rtol=1e-6, atol=1e-7)


#: keras.applications' layers at strides 4, 8, 16 and 32 (the last of each resolution).
PYRAMID_LAYERS = {
    "inception_v3": {"P2": "activation_4", "P3": "mixed2", "P4": "mixed7", "P5": "mixed10"},
    "inception_resnet_v2": {
        "P2": "activation_4",
        "P3": "block35_10_ac",
        "P4": "block17_20_ac",
        "P5": "conv_7b_ac",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(KERAS_APPLICATIONS))
def test_features_only_equals_keras_applications_intermediate_layers(arch):
    reference = KERAS_APPLICATIONS[arch](weights=None, include_top=False, input_shape=(75, 75, 3))
    ours = models.get(arch, features_only=True)
    assert ours.input.shape == (None, None, None, 3)
    for layer in reference.layers:
        if layer.weights:
            ours.get_layer(layer.name).set_weights(layer.get_weights())
    pyramid = keras.Model(
        reference.input,
        {key: reference.get_layer(name).output for key, name in PYRAMID_LAYERS[arch].items()},
    )
    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    want, got = forward(pyramid, x), forward(ours, x)
    assert list(got) == ["P2", "P3", "P4", "P5"]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(KERAS_APPLICATIONS))
def test_se_overhead_is_the_closed_form_and_placement(arch, small_model):
    se, plain = small_model(f"se_{arch}"), small_model(arch)
    assert se.count_params() - plain.count_params() == closed_form_overhead(SE_CHANNELS[arch])
    se_blocks = _se_layers(se)
    assert [layer.name for layer in se_blocks] == SE_NAMES[arch]
    assert [layer.channels for layer in se_blocks] == SE_CHANNELS[arch]
    assert not _se_layers(plain)
    # The twins differ only in the SE blocks.
    se_names = set(SE_NAMES[arch])
    assert [layer.name for layer in se.layers if layer.name not in se_names] == [
        layer.name for layer in plain.layers
    ]
    if arch == "inception_v3":
        for i in range(11):  # on the output of every Inception module
            assert se.get_layer(f"mixed{i}_se").input is se.get_layer(f"mixed{i}").output
        return
    # Inception-ResNet-v2: on the residual branch, after the 1x1 "up" conv, before the
    # scaled addition with the unit's input.
    scales = [layer for layer in se.layers if isinstance(layer, inception.ScaledResidual)]
    assert len(scales) == 40
    for layer, scale in zip(se_blocks, scales):
        unit = layer.name[: -len("_se")]
        assert layer.input is se.get_layer(f"{unit}_conv").output
        assert scale.input[1] is layer.output
    assert [s.scale for s in scales] == [0.17] * 10 + [0.1] * 20 + [0.2] * 9 + [1.0]
    assert scales[5].input[0] is se.get_layer("block35_5_ac").output
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in se.layers)


@pytest.mark.slow
def test_se_options_reach_every_block(small_model):
    model = models.SEInceptionV3(se_ratio=8, se_kwargs={"use_bias": False}, **SMALL)
    plain = small_model("inception_v3")
    overhead = model.count_params() - plain.count_params()
    assert overhead == closed_form_overhead(SE_CHANNELS["inception_v3"], 8, use_bias=False)
    assert all(layer.ratio == 8 and not layer.use_bias for layer in _se_layers(model))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["se_inception_v3", "inception_v3", "se_inception_resnet_v2", "inception_resnet_v2"]
)
def test_registered_models_train_one_step(name, small_model):
    assert models.builder(name).min_input_size == 75
    model = small_model(name)  # (the tests before this one only read the graph)
    assert model.name == name
    x = np.random.default_rng(0).uniform(-1, 1, (2, 75, 75, 3)).astype("float32")
    # Eager: tracing the 300-800-layer train step costs ~10x the step itself on a CPU.
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    before = model.get_layer("conv2d").get_weights()[0]
    loss = model.train_on_batch(x, np.array([0, 2]))
    assert np.isfinite(loss)
    assert not np.array_equal(model.get_layer("conv2d").get_weights()[0], before)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    # Training-mode output: at 75x75 the last modules are 1x1, and after one step on a
    # batch of 2 the barely-updated BN moving statistics can overflow inference (the
    # keras.applications models do the same); batch statistics are the meaningful check.
    out = _numpy(model(x, training=True))
    assert out.shape == (2, 3) and np.isfinite(out).all()


def test_inception_resnet_unit_round_trips_keras_file(tmp_path):
    # One SE-Inception-ResNet unit (ScaledResidual + SE), saved and loaded with safe_mode.
    inputs = keras.Input((9, 9, 320))
    names = inception.AutoNames()
    stage = inception.INCEPTION_RESNET_V2_STAGES[1]
    x = inception.inception_resnet_unit(
        inputs, stage.branches, name="block35_1", scale=stage.scale, names=names, se_ratio=16
    )
    model = keras.Model(inputs, x)
    data = np.random.default_rng(0).normal(size=(2, 9, 9, 320)).astype("float32")
    out = _numpy(model(data))
    path = os.path.join(tmp_path, "unit.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("custom_scale_layer"), inception.ScaledResidual)
    np.testing.assert_allclose(_numpy(loaded(data)), out, atol=1e-5)
    # x + 0.17 * residual, the residual being the SE output
    branch = keras.Model(inputs, model.get_layer("block35_1_se").output)
    expected = np.maximum(data + 0.17 * _numpy(branch(data)), 0.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def _next_auto_name(name):
    """The name Keras gives the next unnamed layer of the same class: conv2d → conv2d_1."""
    stem, _, number = name.rpartition("_")
    return f"{stem}_{int(number) + 1}" if number.isdigit() else f"{name}_1"


@pytest.mark.slow
def test_names_are_explicit_and_keras_counters_are_left_alone():
    """Every layer is named by the builder (`AutoNames`); Keras's process-wide name counters
    are neither read nor advanced (no keras.backend.get_uid), so layers added on top are
    named by the caller (module docstring). Before, the builder advanced the counters so
    that unnamed layers on top got free names; issue 28 asked for explicit names only."""
    before = keras.layers.Conv2D(8, 1).name
    base = models.SEInceptionV3(include_top=False, pooling=None, input_shape=(75, 75, 3))
    assert keras.layers.Conv2D(8, 1).name == _next_auto_name(before)  # not moved by the build
    assert base.output_shape == (None, 1, 1, 2048)
    assert base.get_layer("conv2d_93").name == "conv2d_93"  # a fresh session's last name
    x = keras.layers.Conv2D(8, 1, name="head_conv")(base.output)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Activation("relu", name="head_relu")(x)
    model = keras.Model(base.input, x)
    assert len({layer.name for layer in model.layers}) == len(model.layers)


@pytest.mark.slow
def test_pooling():
    avg = models.InceptionV3(include_top=False, pooling="avg", input_shape=(75, 75, 3))
    assert avg.output_shape == (None, 2048)


@pytest.mark.slow
def test_channels_first_builds():
    # TF on CPU has no channels_first conv kernels: check the graph, not a forward pass.
    keras.config.set_image_data_format("channels_first")
    model = models.SEInceptionV3(input_shape=(3, 75, 75), classes=3)
    se = model.get_layer("mixed9_se")
    assert se.data_format == "channels_first" and se.channels == 2048


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(input_shape=(74, 75, 3)), "at least 75x75"),
        (dict(weights="imagenet"), "weights='imagenet'"),
        (dict(pooling="sum", include_top=False), "pooling='sum'"),
        (dict(se_ratio=-1), "se_ratio=-1"),
        (dict(se_kwargs={"name": "x"}), "se_kwargs"),
        (dict(se_kwargs=[("squeeze", "max")]), "se_kwargs"),
        (dict(classes=0), "classes=0"),
    ],
)
def test_bad_arguments(kwargs, needle):
    with pytest.raises((ValueError, TypeError)) as info:
        models.SEInceptionV3(**kwargs)
    assert needle in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(KERAS_APPLICATIONS))
def test_reference_parameter_counts(arch):
    with shapes_only():
        plain, se = models.get(arch), models.get(f"se_{arch}")
    assert plain.count_params() == REFERENCE_TOTAL_PARAMS[arch]
    assert plain.output_shape == (None, 1000) and plain.input_shape == (None, 299, 299, 3)
    assert se.count_params() == REFERENCE_TOTAL_PARAMS[arch] + closed_form_overhead(
        SE_CHANNELS[arch]
    )
