"""TensorFlow kernels and gradients behind keras_se's speed layers (TensorFlow imported lazily).

* `tf_grouped_gradients`: whether TensorFlow's own CPU/GPU kernels differentiate grouped
  convolutions on this machine (`keras_se.speed.fast_layers.GroupedConv2D` uses them only then).
* `fused_batch_norm_training`: ``FusedBatchNormV3`` in training, with the moving averages
  updated the way ``keras.layers.BatchNormalization`` updates them.
* `pooled_through` and `scale_without_saving`: the two custom gradients of the fused
  BatchNorm+SE tail (`keras_se.speed.tail.BatchNormSqueezeExcite`).
* `mean_squared_deviation`: ``mean((x - m)**2)`` as one op on TensorFlow.

Nothing outside `keras_se.speed` calls these.
"""

from __future__ import annotations

import keras
from keras import ops

_GROUPED_GRADIENTS = []  # one cached answer of `tf_grouped_gradients`


def tf_grouped_gradients():
    """Whether TensorFlow's own kernels differentiate grouped convolutions here.

    TensorFlow's CPU kernels do only with oneDNN, which TensorFlow turns on by itself
    only on some CPUs (``TF_ENABLE_ONEDNN_OPTS``; off on an AVX2-only AMD EPYC, for one):
    without it the backward pass fails ("Gradients for grouped convolutions are not
    supported on CPU"), so `GroupedConv2D` keeps Keras's XLA path. Probed once, eagerly,
    on a tiny convolution.

    Example:
        >>> isinstance(tf_grouped_gradients(), bool)
        True
    """
    if not _GROUPED_GRADIENTS:
        import tensorflow as tf

        with tf.init_scope():  # eagerly, also when first called while tracing a function
            try:  # the input gradient of a 2-group 3x3 convolution, 4 channels
                tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=[1, 3, 3, 4],
                    filter=tf.ones((3, 3, 2, 4)),
                    out_backprop=tf.ones((1, 3, 3, 4)),
                    strides=[1, 1, 1, 1],
                    padding="SAME",
                )
                _GROUPED_GRADIENTS.append(True)
            except tf.errors.InvalidArgumentError:
                _GROUPED_GRADIENTS.append(False)
    return _GROUPED_GRADIENTS[0]


def fused_batch_norm_training(layer, x, gamma, beta):
    """``FusedBatchNormV3`` in training on NHWC ``x`` (TensorFlow), and ``layer``'s moving averages.

    Returns ``(BN(x), batch mean, biased batch variance)``; updates ``layer.moving_mean`` and
    ``layer.moving_variance`` as Keras's BatchNormalization does (``layer.momentum``,
    ``layer.epsilon``).

    Example:
        >>> import keras, tensorflow as tf
        >>> bn = keras.layers.BatchNormalization(momentum=0.5)
        >>> bn.build((None, 2, 2, 3))
        >>> y, mean, variance = fused_batch_norm_training(
        ...     bn, tf.ones((1, 2, 2, 3)), tf.ones(3), tf.zeros(3))
        >>> [float(v) for v in bn.moving_mean.numpy()]
        [0.5, 0.5, 0.5]
    """
    import tensorflow as tf

    empty = tf.constant([], "float32")
    outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=gamma,
        offset=beta,
        mean=empty,
        variance=empty,
        epsilon=layer.epsilon,
        exponential_avg_factor=1.0,
        data_format="NHWC",
        is_training=True,
    )
    # The kernel returns the unbiased (n / (n - 1)) variance for running averages;
    # Keras's BatchNormalization averages the biased one.
    shape = tf.shape(x)
    count = tf.cast(shape[0] * shape[1] * shape[2], "float32")
    variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
    momentum = layer.momentum
    layer.moving_mean.assign(layer.moving_mean * momentum + mean * (1.0 - momentum))
    layer.moving_variance.assign(layer.moving_variance * momentum + variance * (1.0 - momentum))
    return outputs, mean, variance


def mean_squared_deviation(x, mean, axes):
    """``mean((x - mean)**2)`` over ``axes``; one fused op on TensorFlow.

    Example:
        >>> import numpy as np
        >>> float(mean_squared_deviation(np.array([1.0, 3.0]), 2.0, axes=(0,)))
        1.0
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.reduce_mean(tf.math.squared_difference(x, mean), axis=axes)
    return ops.mean(ops.square(x - mean), axis=axes)


def pooled_through(u, value):
    """``value`` (B, C), whose gradient is sent to ``u`` (B, H, W, C) as to ``mean_hw(u)``.

    For a ``value`` computed equal to ``mean_hw(u)`` by a cheaper route (TensorFlow only).

    Example:
        >>> import tensorflow as tf
        >>> u = tf.ones((1, 2, 2, 1))
        >>> with tf.GradientTape() as tape:
        ...     tape.watch(u)
        ...     z = pooled_through(u, tf.ones((1, 1)))
        >>> tape.gradient(z, u).numpy().ravel().tolist()
        [0.25, 0.25, 0.25, 0.25]
    """
    import tensorflow as tf

    @tf.custom_gradient
    def pooled(u, value):
        def grad(upstream):
            shape = tf.shape(u)
            per_position = upstream / tf.cast(shape[1] * shape[2], upstream.dtype)
            du = tf.broadcast_to(per_position[:, None, None, :], shape)
            return tf.cast(du, u.dtype), None

        return tf.identity(value), grad

    return pooled(u, value)


def scale_without_saving(u, s, x, a, b):
    """``u · s`` (s per sample and channel) for ``u = a·x + b``; the backward pass reads ``x``.

    The gradient of ``s``, ``Σ_hw g·u``, is computed as ``a·Σ_hw g·x + b·Σ_hw g``, so
    ``u`` need not be kept for it (TensorFlow only).

    Example:
        >>> import tensorflow as tf
        >>> x = tf.ones((1, 1, 2, 1))
        >>> y = scale_without_saving(2.0 * x + 1.0, tf.fill((1, 1), 0.5), x, 2.0, 1.0)
        >>> y.numpy().ravel().tolist()
        [1.5, 1.5]
    """
    import tensorflow as tf

    @tf.custom_gradient
    def scale(u, s):
        def grad(upstream):
            du = upstream * tf.cast(s[:, None, None, :], upstream.dtype)
            g = tf.cast(upstream, "float32")
            gx = tf.reduce_sum(g * tf.cast(x, "float32"), axis=(1, 2))
            ds = a * gx + b * tf.reduce_sum(g, axis=(1, 2))
            return du, tf.cast(ds, s.dtype)

        return u * tf.cast(s[:, None, None, :], u.dtype), grad

    return scale(u, s)
