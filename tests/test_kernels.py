"""Tests for keras_se.speed.kernels: the TensorFlow kernels and gradients against NumPy/autodiff."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se.speed import kernels

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow kernels"
)


def test_fused_batch_norm_training_is_numpy_batch_norm_with_keras_moving_averages():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3, 4, 5, 6)) * 2 + 1).astype("float32")
    bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    bn.build(x.shape)
    gamma, beta = rng.normal(size=6).astype("float32"), rng.normal(size=6).astype("float32")
    y, mean, variance = kernels.fused_batch_norm_training(bn, tf.constant(x), gamma, beta)
    mu, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # the biased variance
    np.testing.assert_allclose(y, gamma * (x - mu) / np.sqrt(var + 1e-3) + beta, atol=1e-4)
    np.testing.assert_allclose(mean, mu, atol=1e-5)
    np.testing.assert_allclose(variance, var, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mu, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)


def test_custom_gradients_equal_autodiff_of_what_they_stand_for():
    """pooled_through(u, mean_hw(u)) and scale_without_saving(a·x+b, s, ...) have the
    gradients of mean_hw(u) and u·s."""
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 3, 4, 5)).astype("float32"))
    a = tf.constant(rng.uniform(0.5, 2.0, size=5).astype("float32"))
    b = tf.constant(rng.normal(size=5).astype("float32"))
    s = tf.constant(rng.uniform(size=(2, 5)).astype("float32"))
    weights = tf.constant(rng.normal(size=(2, 3, 4, 5)).astype("float32"))

    def loss(fast):
        with tf.GradientTape() as tape:
            tape.watch([x, s])
            u = a * x + b
            if fast:
                pooled = kernels.pooled_through(u, tf.reduce_mean(tf.stop_gradient(u), (1, 2)))
                y = kernels.scale_without_saving(u, s * pooled, x, a, b)
            else:
                pooled = tf.reduce_mean(u, axis=(1, 2))
                y = u * (s * pooled)[:, None, None, :]
            total = tf.reduce_sum(y * weights)
        return [g.numpy() for g in tape.gradient(total, [x, s])]

    for fast, reference in zip(loss(True), loss(False)):
        np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-5)
    assert isinstance(kernels.tf_grouped_gradients(), bool)


def test_mean_squared_deviation():
    x = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(
        kernels.mean_squared_deviation(x, x.mean(axis=0), axes=(0,)), x.var(axis=0), rtol=1e-6
    )
