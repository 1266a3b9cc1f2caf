"""The registry covers every builder; every registered model builds and predicts, and trains a
step and round-trips a .keras file unless a smaller row of the same blocks (or test_inception,
or for a plain twin its SE twin) does."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, models

ALL_NAMES = models.names()
#: Over 80M parameters: a train step and a save take tens of seconds on a CPU, so these
#: build and predict only.
HEAVY = {"senet154", "se_resnext101_32x8d", "se_resnext101_64x4d", "resnext101_32x8d",
         "resnext101_64x4d"}  # fmt: skip
#: The rows that build, train and round-trip in under 2 s: the only ones in the fast tier.
QUICK_ROWS = {"resnet20_cifar", "se_resnet20_cifar"}
#: Deeper stacks of a shallower row's blocks, which trains and round-trips: ResNet-34 of
#: ResNet-18's basic blocks, ResNet-101/152 of ResNet-50's bottlenecks, SE-ResNeXt-50/101 of
#: SE-ResNeXt-26's, CIFAR ResNet-32/56/110 of ResNet-20's units (with and without SE), and the
#: plain ResNeXt-50/101 of SE-ResNeXt-26's grouped bottlenecks. These build and predict only:
#: their train step and save took 2-27 s each in the suite; their parameter counts are in
#: test_resnet and test_cifar.
DEEP = {"resnet34", "se_resnet34", "resnet101", "se_resnet101", "resnet152", "se_resnet152",
        "resnext50_32x4d", "resnext101_32x4d", "se_resnext50_32x4d", "se_resnext101_32x4d",
        "resnet32_cifar", "se_resnet32_cifar", "resnet56_cifar", "se_resnet56_cifar",
        "resnet110_cifar", "se_resnet110_cifar"}  # fmt: skip
#: Plain twins of rows that train and round-trip here: a plain twin is its SE twin's graph
#: without the SE layers (test_resnet, test_cifar), so these build and predict only (1-5 s
#: each saved). The plain CIFAR ResNet-20 still trains (a quick row).
PLAIN_TWINS = {"resnet18", "resnet50", "resnet164_cifar", "wrn16_8"}
#: Trained a step in tests/test_inception.py (`test_registered_models_train_one_step`, at
#: their minimum size, with a check that the weights moved): here they build, predict
#: and round-trip.
TRAINED_IN_TEST_INCEPTION = {"inception_v3", "se_inception_v3", "inception_resnet_v2",
                             "se_inception_resnet_v2"}  # fmt: skip


def test_names_and_close_matches():
    for name in (
        "se_resnet18",
        "se_resnet50",
        "resnet50",
        "se_resnext50_32x4d",
        "resnext101_32x4d",
    ):
        assert name in ALL_NAMES
    assert set(models.names(se=True)) | set(models.names(se=False)) == set(ALL_NAMES)
    assert "senet154" in models.names(se=True) and "wrn16_8" in models.names(se=False)
    with pytest.raises(ValueError, match=r"Did you mean: se_resnet50.*name='se_resnet5O'"):
        models.get("se_resnet5O")
    rows = TRAINED_IN_TEST_INCEPTION | DEEP | HEAVY | QUICK_ROWS | PLAIN_TWINS
    assert rows <= set(ALL_NAMES)  # no stale names below


def test_check_name_is_the_one_registry_name_check():
    check_name = models.registry.check_name
    assert check_name("se_resnet50", argument="model") == "se_resnet50"
    # Unknown: the close matches, every known name, the caller's argument and the value.
    with pytest.raises(ValueError) as err:
        check_name("se_resnet5O", argument="model")
    message = str(err.value)
    assert message.startswith("Unknown model name. Did you mean: se_resnet50")
    assert message.endswith("Received: model='se_resnet5O'") and "resnet18" in message
    # builder() says the same, naming its own argument.
    with pytest.raises(ValueError) as err:
        models.builder("se_resnet5O")
    assert str(err.value) == message.replace("model='se_resnet5O'", "name='se_resnet5O'")
    # Registered, but not one the caller takes: the names it does take.
    se_models = models.names(se=True)
    with pytest.raises(ValueError, match=r"`model` must be one of \(.*'senet154'") as err:
        check_name("resnet50", argument="model", among=se_models)
    assert str(err.value).endswith("Received: model='resnet50'")
    with pytest.raises(ValueError, match="Did you mean: se_resnet50") as err:
        check_name("se_resnet5O", argument="model", among=se_models)
    assert "Known models: se_" in str(err.value) and " resnet50," not in str(err.value)
    assert check_name("senet154", among=se_models) == "senet154"


@pytest.mark.parametrize(
    "name",
    # every row but the CIFAR ResNet-20 pair takes 2 s or more (the slow tier)
    [n if n in QUICK_ROWS else pytest.param(n, marks=pytest.mark.slow) for n in ALL_NAMES],
)
def test_every_model_builds_trains_and_round_trips(name, tmp_path):
    size = max(32, getattr(models.builder(name), "min_input_size", 32))  # Inception: 75
    model = models.get(name, input_shape=(size, size, 3), classes=3)
    has_se = any(isinstance(layer, SqueezeExcite) for layer in model.layers)
    assert has_se == models.registry.is_se(name) == (name.startswith("se_") or name == "senet154")
    rng = np.random.default_rng(0)
    x = rng.random((2, size, size, 3)).astype("float32")
    y = np.array([0, 2])
    if name in HEAVY | DEEP | PLAIN_TWINS:
        # Their layers are those of the smaller rows (or of their SE twins), which train and
        # round-trip below; the train step and the save of these took 2-60 s each.
        out = keras.ops.convert_to_numpy(model(x, training=False))
        assert out.shape == (2, 3) and np.isfinite(out).all()
        return
    if name not in TRAINED_IN_TEST_INCEPTION:
        model.compile(
            optimizer=keras.optimizers.SGD(0.01),
            loss="sparse_categorical_crossentropy",
            run_eagerly=True,  # tracing the train step of a deep graph costs more than running it
        )
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)
    out = keras.ops.convert_to_numpy(model(x, training=False))
    assert out.shape == (2, 3) and np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    if not has_se:
        # A plain twin is its SE twin's graph without the SE layers (test_resnet, test_cifar,
        # test_inception), and the SE twin's file round-trips below: saving it adds nothing.
        return
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, training=False)), out, atol=1e-5
    )
