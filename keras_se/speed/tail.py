"""The fused BatchNorm+SE tail: ``SqueezeExcite(BatchNormalization(x))`` as one layer.

`BatchNormSqueezeExcite` computes the standard SE placement after the residual branch's
last BatchNorm at nearly the cost of the BatchNorm alone. keras_se's model builders do not
use it: `keras_se.speed.accelerate` puts it, built on the textbook layers' variables, into
the fast twin of a model wherever ``Conv2D(1x1) → BatchNormalization → SqueezeExcite``
appears; models saved by releases whose builders used it load with it.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_se.layers import SEGate
from keras_se.speed import kernels
from keras_se.speed.shared import SharedVariables
from keras_se_core.choices import DEFAULT_RATIO
from keras_se_core.validation import check_bool, check_number, check_positive_number


def _is_pair(value):
    """True for ``[x, means]`` (tensors or arrays) or a pair of their shapes."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (list, tuple)) or hasattr(v, "shape") for v in value)
    )


@keras.saving.register_keras_serializable(package="keras_se")
class BatchNormSqueezeExcite(SharedVariables, SEGate):
    """BatchNormalization followed by Squeeze-and-Excitation, computed as one affine.

    The SE-ResNet block applies SE to the output of the residual branch's last
    BatchNorm, ``u = a·x + b`` with per-channel ``a = γ/√(σ²+ε)`` and ``b = β − μa``.
    The BatchNorm is affine, so the squeeze can be taken on the BN input
    (``mean_hw(u) = a·mean_hw(x) + b``) and the gate folded into the affine:

        ``SE(BN(x)) = u·s = x·(a·s) + b·s``

    This layer outputs exactly ``SqueezeExcite(BatchNormalization(x))`` while passing
    over the feature map once, like the BatchNorm alone: no separate scale pass, and no
    BatchNorm output kept for the backward pass (the gate's gradient ``Σ_hw ∂L/∂y·x``
    uses ``x``, which the normalisation's backward pass keeps anyway).

    The per-sample spatial means of ``x`` may be passed in, ``layer(x, means)``, when
    the caller has them cheaper than a pass over ``x``: `keras_se.speed.accelerate`
    computes them by applying the bottleneck's last (linear, 1x1) convolution to the
    average of its 4x narrower input. In training mode they also give the batch mean.

    Training mode uses the batch statistics and updates the moving averages as
    ``keras.layers.BatchNormalization`` does (statistics in float32 under mixed
    precision); inference uses the moving averages.

    A sibling of `SqueezeExcite` (both are `SEGate` layers), not a subclass: it takes
    other inputs and computes another function.

    Args:
        ratio: SE reduction ratio (see `SqueezeExcite`).
        epsilon: BatchNorm epsilon added to the variance.
        momentum: momentum of the moving mean and variance (Keras convention:
            ``moving = moving * momentum + batch * (1 - momentum)``).
        synchronized: batch statistics across all replicas of a tf.distribute strategy
            (as ``BatchNormalization(synchronized=True)``).
        batchnorm_trainable: False freezes the BatchNorm part alone (as
            ``BatchNormalization(trainable=False)``: moving statistics in training too,
            gamma and beta not trained) while the SE gate trains; fine-tuning's
            ``--freeze-bn``. ``trainable=False`` freezes the whole layer.
        gamma_initializer, beta_initializer, moving_mean_initializer,
        moving_variance_initializer: BatchNorm initializers.
        gamma_regularizer, beta_regularizer: BatchNorm regularizers.
        **kwargs: every other `SqueezeExcite` argument (``units``, ``squeeze``,
            ``gate``, ``data_format``, ...) and standard layer arguments.

    Call:
        ``layer(x, means=None, training=None)`` with ``means`` of shape
        ``(batch, channels)`` or broadcastable like ``(batch, 1, 1, channels)``
        (``squeeze="avg"`` only); returns ``SE(BN(x))``, the shape of ``x``, in the
        layer's compute dtype. The form ``layer([x, means])`` of models saved by
        earlier releases is accepted as well. ``layer.excitation(x, means)`` returns
        the gate ``s`` with the moving statistics, shape ``(batch, channels)``;
        ``layer.features(x)`` returns ``BN(x)``, the map the gate scales.

    Example:
        >>> import numpy as np
        >>> from keras_se.speed import BatchNormSqueezeExcite
        >>> x = np.random.rand(2, 8, 8, 32).astype("float32")
        >>> fused = BatchNormSqueezeExcite(ratio=4)
        >>> tuple(fused(x).shape)
        (2, 8, 8, 32)
        >>> fused.count_params()  # SE: 2*32*8 + 8 + 32, BatchNorm: 4*32
        680
    """

    def __init__(
        self,
        ratio=DEFAULT_RATIO,
        *,
        epsilon=1e-3,
        momentum=0.99,
        synchronized=False,
        gamma_initializer="ones",
        beta_initializer="zeros",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        gamma_regularizer=None,
        beta_regularizer=None,
        batchnorm_trainable=True,
        **kwargs,
    ):
        super().__init__(ratio, **kwargs)
        self._batchnorm_trainable = check_bool("batchnorm_trainable", batchnorm_trainable)
        self.epsilon = float(check_positive_number("epsilon", epsilon))
        self.momentum = float(check_number("momentum", momentum, minimum=0, maximum=1))
        self.synchronized = check_bool("synchronized", synchronized)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)

    @property
    def batchnorm_trainable(self):
        """Whether the BatchNorm part trains (batch statistics, gamma and beta updated).

        A layer built on a textbook model's variables (`keras_se.speed.accelerate`) follows
        that model's ``BatchNormalization`` layer: frozen when it is.
        """
        if self.shares_variables:
            return self.source_trainable(0)
        return self._batchnorm_trainable

    @batchnorm_trainable.setter
    def batchnorm_trainable(self, value):
        self._batchnorm_trainable = check_bool("batchnorm_trainable", value)
        if self.built and not self.shares_variables:
            self.gamma.trainable = self.beta.trainable = self._batchnorm_trainable

    def __call__(self, inputs, *args, **kwargs):
        # The pair form [x, means] (models saved before `means` was an argument): the
        # feature map alone is the first argument, the one Keras checks the InputSpec of.
        if _is_pair(inputs) and not args and "means" not in kwargs:
            inputs, means = inputs
            return super().__call__(inputs, means, **kwargs)
        return super().__call__(inputs, *args, **kwargs)

    def build(self, inputs_shape, means_shape=None):
        if means_shape is None and _is_pair(inputs_shape):
            inputs_shape, means_shape = inputs_shape
        if means_shape is not None and self.squeeze != "avg":
            raise ValueError(
                "Per-sample means replace the average squeeze only; this layer has "
                f"squeeze={self.squeeze!r}. Call it on the feature map alone."
            )
        # The gate's weights first: saved files list variables in creation order.
        self._build_gate(inputs_shape)
        if means_shape is not None:
            self._check_means_shape(means_shape, inputs_shape)
        shape = (self.channels,)
        # As in keras BatchNormalization: float32 variables, never autocast to float16.
        for part, trains in (
            ("gamma", self._batchnorm_trainable),
            ("beta", self._batchnorm_trainable),
            ("moving_mean", False),
            ("moving_variance", False),
        ):
            variable = self.add_weight(
                name=part,
                shape=shape,
                initializer=getattr(self, f"{part}_initializer"),
                regularizer=getattr(self, f"{part}_regularizer", None),
                trainable=trains,
                autocast=False,
            )
            setattr(self, part, variable)

    def _check_means_shape(self, means_shape, inputs_shape):
        if math.prod(d for d in tuple(means_shape)[1:] if d is not None) != self.channels:
            raise ValueError(
                f"`means` must hold one value per channel ({self.channels}). Received: "
                f"means shape {tuple(means_shape)} for input shape {tuple(inputs_shape)}"
            )

    # ------------------------------------------------------------------ compute
    def _prepare(self, inputs, means, *, cast=True):
        """``x`` (float32 or wider; as given with ``cast=False``) and the per-sample means
        (B, C, float32 or wider) or None.

        ``inputs`` may be the pair ``[x, means]`` (what ``layer.input`` is in a model).
        """
        if means is None and _is_pair(inputs):
            inputs, means = inputs
        x = ops.convert_to_tensor(inputs)
        self._check_input(x)
        if cast:
            x = self._float32(x)
        if means is not None:
            means = self._float32(ops.convert_to_tensor(means))
            self._check_means_shape(means.shape, x.shape)
            means = ops.reshape(means, (-1, self.channels))
        return x, means

    @staticmethod
    def _float32(x):
        # BatchNorm statistics overflow in float16: compute in float32 (as keras BN does).
        dtype = keras.backend.result_type(x.dtype, "float32")
        return x if x.dtype == dtype else ops.cast(x, dtype)

    def _affine(self, mean, variance):
        """The BatchNorm as ``u = a·x + b``: per-channel ``a`` and ``b``, shape (C,)."""
        a = ops.cast(self.gamma, mean.dtype) * ops.rsqrt(variance + self.epsilon)
        return a, ops.cast(self.beta, mean.dtype) - mean * a

    def _moving_affine(self, dtype):
        """``a`` and ``b`` of the BatchNorm with the moving statistics."""
        mean = ops.cast(self.moving_mean, dtype)
        return self._affine(mean, ops.cast(self.moving_variance, dtype))

    def _pooled(self, x, a, b, means):
        """The squeeze of the BatchNorm output ``a·x + b``, computed from ``x``: (B, C)."""
        if self.squeeze == "avg":
            return (self._squeeze(x) if means is None else means) * a + b
        axes = self._spatial_axes(len(x.shape))
        # max(a·x + b) is a·max(x) + b where a >= 0 and a·min(x) + b where a < 0.
        return ops.where(a >= 0, a * ops.max(x, axis=axes), a * ops.min(x, axis=axes)) + b

    def _statistics(self, x, means, training):
        """(mean, variance, per-sample means or None); updates the moving averages."""
        if not (training and self.trainable and self.batchnorm_trainable):
            return (
                ops.cast(self.moving_mean, x.dtype),
                ops.cast(self.moving_variance, x.dtype),
                means,
            )
        rank = len(x.shape)
        axes = (0, *self._spatial_axes(rank))
        if self.synchronized:
            mean, variance = ops.moments(x, axes, synchronized=True)
        else:
            if self.squeeze == "avg":
                # Every sample has as many positions: the batch mean is the mean of the
                # per-sample means, which the squeeze needs anyway.
                means = self._squeeze(x) if means is None else means
                mean = ops.mean(means, axis=0)
            else:
                mean = ops.mean(x, axis=axes)
            # d(variance)/d(mean) is 0, so the centre needs no gradient (as in tf.nn.moments).
            centre = self._broadcastable(ops.stop_gradient(mean)[None], rank)
            variance = kernels.mean_squared_deviation(x, centre, axes)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return mean, variance, means

    def _fusable(self, inputs, training):
        """True where training runs on TensorFlow's fused BatchNorm kernel (`_fused_call`)."""
        x = self._feature_map(inputs)
        return (
            training
            and self.trainable
            and self.batchnorm_trainable
            and not self.synchronized
            and self.squeeze == "avg"
            and keras.backend.backend() == "tensorflow"
            and len(x.shape) == 4
            and self.data_format == "channels_last"
            and x.dtype in ("float32", "float16", "bfloat16")
        )

    def _fused_call(self, inputs, means):
        """Training on TensorFlow: ``FusedBatchNormV3`` computes ``u = BN(x)``, the gate scales it.

        The same function and gradients as the general path (tests compare them), faster:
        the kernel normalises and differentiates in one pass each way where the separate
        moment and affine ops take several. Two custom gradients keep it exact and lean:

        * the gate's input ``mean_hw(u)`` is computed from the per-sample ``means`` of ``x``
          (``a·means + b``), and its gradient is sent into ``u`` (broadcast over the map,
          divided by H·W), so the kernel's own backward pass carries it to ``x``, γ and β
          through the batch statistics (TensorFlow's gradient of the kernel ignores its
          mean and variance outputs, so they cannot carry it);
        * ``u·s`` takes the gate's gradient ``Σ_hw g·u`` as ``a·Σ_hw g·x + b·Σ_hw g``, so
          ``u`` is not kept for the backward pass (``x`` is, for the kernel's).
        """
        import tensorflow as tf

        x, means = self._prepare(inputs, means, cast=False)  # the kernel takes bfloat16 as is
        if means is None:  # (the builders pass the means; a layer called alone squeezes here)
            means = self._squeeze(self._float32(x))
        gamma = tf.convert_to_tensor(self.gamma)
        beta = tf.convert_to_tensor(self.beta)
        u, batch_mean, variance = kernels.fused_batch_norm_training(self, x, gamma, beta)
        # u = a·x + b per channel, as values (gradients go through the kernel instead)
        a = tf.stop_gradient(gamma * tf.math.rsqrt(variance + self.epsilon))
        b = tf.stop_gradient(beta - batch_mean * a)
        s = self._gate_from_pooled(kernels.pooled_through(u, tf.stop_gradient(means) * a + b))
        return tf.cast(kernels.scale_without_saving(u, s, x, a, b), self.compute_dtype)

    @staticmethod
    def _feature_map(inputs):
        return inputs[0] if _is_pair(inputs) else inputs

    def call(self, inputs, means=None, training=None):
        self._check_float(self._feature_map(inputs))
        if self._fusable(inputs, training):
            return self._fused_call(inputs, means)
        x, means = self._prepare(inputs, means)
        mean, variance, means = self._statistics(x, means, training)
        a, b = self._affine(mean, variance)
        s = self._gate_from_pooled(self._pooled(x, a, b, means))
        rank = len(x.shape)
        outputs = x * self._broadcastable(a * s, rank) + self._broadcastable(b * s, rank)
        if outputs.dtype != self.compute_dtype:
            outputs = ops.cast(outputs, self.compute_dtype)
        return outputs

    def excitation(self, inputs, means=None):
        """The gate ``s`` for ``x`` (and its ``means``) with the moving statistics: (B, C).

        ``inputs`` may also be the pair ``[x, means]``, as ``layer.input`` is in a model
        where the layer was given the means.

        Example:
            >>> import numpy as np
            >>> layer = BatchNormSqueezeExcite(ratio=4)
            >>> tuple(layer.excitation(np.ones((2, 8, 8, 16), "float32")).shape)
            (2, 16)
        """
        x, means = self._prepare(inputs, means)
        a, b = self._moving_affine(x.dtype)
        return self._gate_from_pooled(self._pooled(x, a, b, means))

    def features(self, inputs):
        """``BN(x)`` with the moving statistics: the map ``U`` the gate scales.

        ``inputs`` is ``x`` or the pair ``[x, means]`` (the means are not needed).
        """
        x, _ = self._prepare(inputs, None)
        a, b = self._moving_affine(x.dtype)
        rank = len(x.shape)
        return x * self._broadcastable(a[None], rank) + self._broadcastable(b[None], rank)

    @property
    def feature_input(self):
        """The feature map ``x`` this layer was called on (without its ``means``)."""
        inputs = self.input
        return inputs[0] if isinstance(inputs, (list, tuple)) else inputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0] if _is_pair(input_shape) else input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"epsilon": self.epsilon, "momentum": self.momentum, "synchronized": self.synchronized}
        )
        if not self._batchnorm_trainable:  # only when set: files of earlier releases load as before
            config["batchnorm_trainable"] = False
        for part in ("gamma", "beta", "moving_mean", "moving_variance"):
            name = f"{part}_initializer"
            config[name] = keras.initializers.serialize(getattr(self, name))
        for part in ("gamma", "beta"):
            name = f"{part}_regularizer"
            config[name] = keras.regularizers.serialize(getattr(self, name))
        return config
