"""Keras layers computing what a Keras layer computes, faster under TensorFlow.

Each has the same arguments, config and weights as the Keras layer it stands for and can
be built on that layer's variables (`keras_se.speed.shared.SharedVariables.sharing`),
which is how `keras_se.speed.accelerate` puts them into a fast twin of a model:

* `GroupedConv2D` for ``keras.layers.Conv2D(groups > 1)``: TensorFlow's own grouped
  kernels instead of Keras's XLA path;
* `FusedBatchNormalization` for ``keras.layers.BatchNormalization``: TensorFlow's fused
  kernel in training;
* `PointwiseConv2D` for a 1x1, stride-1 ``Conv2D``: a (batch, 1, 1, C) input (a pooled
  descriptor) as one matmul.

Files saved by keras_se releases whose model graphs held keras_se subclasses under Keras's
class names (``keras_se>Conv2D``, ``keras_se>BatchNormalization``) load them as Keras's
layers; ``keras_se>GroupedConv2D`` (an earlier name) loads as `GroupedConv2D`.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_se.speed import kernels
from keras_se.speed.shared import SharedVariables


def _per_channel_shape(channels, data_format):
    return (-1, 1, 1, channels) if data_format == "channels_last" else (-1, channels, 1, 1)


@keras.saving.register_keras_serializable(package="keras_se")
class PointwiseConv2D(SharedVariables, keras.layers.Conv2D):
    """A 1x1, stride-1 ``Conv2D`` that runs a 1x1 map (a pooled descriptor) as one matmul.

    The fused BatchNorm+SE tail applies the branch's last 1x1 conv twice: to the feature
    map and to the spatial mean of its input (the squeeze, see `keras_se.speed.accelerate`).
    On CPU a convolution primitive on a (batch, 1, 1, C) input costs 2-3x a matmul of the
    same size (oneDNN sets up and reorders the kernel per call); this layer computes that
    call as ``reshape → matmul → reshape`` and every other input as ``Conv2D``. Same
    weights, config and arguments as ``Conv2D(filters, 1)``.

    Example:
        >>> import numpy as np
        >>> conv = PointwiseConv2D(8, use_bias=False)
        >>> tuple(conv(np.ones((2, 1, 1, 4), "float32")).shape)
        (2, 1, 1, 8)
    """

    def __init__(self, filters, kernel_size=1, strides=1, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, **kwargs)
        if tuple(self.kernel_size) != (1, 1) or tuple(self.strides) != (1, 1):
            raise ValueError(
                "PointwiseConv2D is a 1x1 convolution with stride 1. Received: "
                f"kernel_size={kernel_size!r}, strides={strides!r}"
            )
        if self.groups != 1 or tuple(self.dilation_rate) != (1, 1):
            raise ValueError(
                "PointwiseConv2D has no groups or dilation. Received: "
                f"groups={self.groups!r}, dilation_rate={self.dilation_rate!r}"
            )

    def call(self, inputs):
        channels_last = self.data_format == "channels_last"
        spatial = inputs.shape[1:3] if channels_last else inputs.shape[2:4]
        if tuple(spatial) != (1, 1):
            return super().call(inputs)
        kernel = ops.reshape(self.kernel, self.kernel.shape[-2:])  # (C_in, C_out)
        outputs = ops.matmul(ops.reshape(inputs, (-1, kernel.shape[0])), kernel)
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return ops.reshape(outputs, _per_channel_shape(self.filters, self.data_format))


@keras.saving.register_keras_serializable(package="keras_se")
class GroupedConv2D(SharedVariables, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose grouped case TensorFlow runs with its own kernels (ResNeXt's 3x3).

    Keras 3's TensorFlow backend compiles every grouped convolution with XLA (a
    workaround for TensorFlow versions whose CPU kernels lacked groups). On a CPU the
    XLA gradient of a grouped convolution is orders of magnitude slower than
    TensorFlow's own kernels: an SE-ResNeXt-50 training step (batch 8, 224x224, 2
    cores, oneDNN on) took 57 s with ``keras.layers.Conv2D(groups=32)`` and 1.7 s with
    this layer (BENCHMARKS.md). Under TensorFlow with ``groups > 1``, a channels-last
    input and kernels that differentiate grouped convolutions
    (`keras_se.speed.kernels.tf_grouped_gradients`) this layer calls
    ``tf.nn.convolution`` directly; otherwise, and on the other backends, it is
    ``Conv2D``. Same weights, config and arguments as ``Conv2D``.

    Example:
        >>> import numpy as np
        >>> conv = GroupedConv2D(8, 3, groups=4, padding="same", use_bias=False)
        >>> tuple(conv(np.ones((1, 5, 5, 8), "float32")).shape)
        (1, 5, 5, 8)
    """

    def convolution_op(self, inputs, kernel):
        if (
            self.groups == 1
            or keras.backend.backend() != "tensorflow"
            or self.data_format != "channels_last"
            or not kernels.tf_grouped_gradients()
        ):
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        return tf.nn.convolution(
            inputs,
            kernel,
            strides=list(self.strides),
            padding=self.padding.upper(),
            dilations=list(self.dilation_rate),
            data_format="NHWC",
        )


@keras.saving.register_keras_serializable(package="keras_se")
class FusedBatchNormalization(SharedVariables, keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step runs TensorFlow's fused kernel.

    Keras 3 normalises a batch with separate ops (two reductions for the moments, then
    the affine), and differentiates each; PyTorch (and Keras 2 with ``fused=True``) runs
    one fused kernel forward and one backward. Under TensorFlow, in training, on a 4-D
    channels-last input (no mask, no renorm, not synchronized) this layer calls
    ``FusedBatchNormV3`` and updates the moving statistics as Keras does, with the biased
    batch variance; everywhere else, and in inference, it is ``BatchNormalization``. Same
    weights, config and arguments. Built on a frozen layer's variables
    (``trainable=False``), it runs on the moving statistics in training too, as that
    layer does.

    Example:
        >>> import numpy as np
        >>> bn = FusedBatchNormalization(epsilon=1e-5)
        >>> y = bn(np.arange(16, dtype="float32").reshape(2, 2, 2, 2), training=True)
        >>> [round(float(v), 3) for v in bn.moving_mean.numpy()]
        [0.07, 0.08]
    """

    def _fusable(self, inputs, training, mask):
        return (
            training
            and mask is None
            and not self.renorm
            and not self.synchronized
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (3, -1)
            and inputs.dtype in ("float32", "float16", "bfloat16")
        )

    def call(self, inputs, training=None, mask=None):
        training = training and self.source_trainable()
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), "float32")
        beta = self.beta if self.center else tf.zeros((channels,), "float32")
        outputs, _, _ = kernels.fused_batch_norm_training(
            self, inputs, tf.cast(gamma, "float32"), tf.cast(beta, "float32")
        )
        return tf.cast(outputs, self.compute_dtype)


# Files of the releases whose model graphs held keras_se subclasses under Keras's class names
# (keras_se.layers.Conv2D, keras_se.layers.BatchNormalization) load them as Keras's layers:
# the saved state is keyed by class name, and the layers computed Keras's function.
keras.saving.get_custom_objects()["keras_se>Conv2D"] = keras.layers.Conv2D
keras.saving.get_custom_objects()["keras_se>BatchNormalization"] = keras.layers.BatchNormalization
