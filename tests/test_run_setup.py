"""Tests for keras_se.run_setup: the learning-rate schedules (paper, cosine, CIFAR multistep)
and the synchronised-BatchNorm clone."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se.run_setup import learning_rate_schedule, synchronize_batchnorm
from keras_se_core.configs import TrainConfig


def test_learning_rate_follows_paper_recipe():
    config = TrainConfig(batch_size=256, epochs=100)
    assert config.peak_learning_rate() == pytest.approx(0.6 * 256 / 1024)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)
    lr = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert lr(0) == pytest.approx(0.15) and lr(299) == pytest.approx(0.15)
    assert lr(301) == pytest.approx(0.015) and lr(601) == pytest.approx(0.0015)
    cosine = learning_rate_schedule(
        TrainConfig(batch_size=1024, epochs=10, schedule="cosine", warmup_epochs=2), 10
    )
    values = [float(keras.ops.convert_to_numpy(cosine(s))) for s in (0, 10, 20, 60, 100)]
    assert (
        values[0] == pytest.approx(0.0)
        and values[1] == pytest.approx(0.3)
        and values[2] == pytest.approx(0.6)
    )
    assert values[3] < 0.6 and values[4] == pytest.approx(0.0, abs=1e-6)


def test_sync_bn_clone_synchronizes_every_batchnorm_also_in_the_fast_twin():
    """``sync_bn``: every BatchNorm computes cross-replica statistics, also those the trainer's
    fast twin (`keras_se.speed.accelerate`) fuses with an SE gate, and the clone computes the
    same function."""
    from keras_se import models, speed

    model = models.SEResNet50(input_shape=(32, 32, 3), classes=3)
    clone = synchronize_batchnorm(model)
    clone.set_weights(model.get_weights())
    norms = [layer for layer in clone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 53 and all(layer.synchronized for layer in norms)
    fused = [layer for layer in speed.accelerate(clone).layers if hasattr(layer, "synchronized")]
    assert len(fused) == 53 and all(layer.synchronized for layer in fused)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )


def test_cifar_recipe_schedule_divides_at_half_and_three_quarters():
    """--recipe cifar: lr 0.1, batch 128, 164 epochs, x0.1 at epochs 82 and 123 (He et al.)."""
    from keras_se_core.cli import parse_args

    config = TrainConfig.from_args(
        parse_args(["train", "--recipe", "cifar", "--model", "se_resnet18"])
    )
    assert (config.learning_rate, config.batch_size, config.epochs, config.schedule) == (
        0.1,
        128,
        164,
        "multistep",
    )
    assert (config.momentum, config.weight_decay) == (0.9, 1e-4)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)
    lr = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert [
        lr(s) for s in (0, 820, 821, 1230, 1231, 1639)
    ] == pytest.approx(  # boundaries inclusive
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    override = TrainConfig.from_args(
        parse_args(["train", "--recipe", "cifar", "--lr", "0.05", "--epochs", "4"])
    )
    assert (override.learning_rate, override.epochs, override.batch_size) == (0.05, 4, 128)
