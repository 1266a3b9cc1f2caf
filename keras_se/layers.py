"""The Squeeze-and-Excitation block as a Keras layer (Hu et al., 2018, Section 3).

Squeeze (Sec. 3.1): ``z_c = mean_{h,w} U_c`` (or max), one number per channel.
Excitation (Sec. 3.2): ``s = gate(W2 · act(W1 · z + b1) + b2)`` with ``W1 ∈ R^{C/r × C}``,
``W2 ∈ R^{C × C/r}``; the paper uses ``act = ReLU``, ``gate = sigmoid`` and ``r = 16``.
Scale: ``X~_c = s_c · U_c``.

The two fully connected layers are stored as plain 2-D kernels and applied with one
matmul each on the pooled ``(batch, C)`` vector, which is what the authors' 1×1
convolutions compute on a 1×1 map. Only ``keras.ops`` is used, so the layer runs on
every Keras 3 backend.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from keras_se_core.choices import DATA_FORMATS, SQUEEZES
from keras_se_core.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_optional,
    check_positive_int,
    check_positive_number,
)


def _check_activation(name, value):
    """Resolves a Keras activation, raising a ValueError that names the argument."""
    if value is None:
        raise ValueError(
            f"`{name}` must be a Keras activation name or callable. Received: {name}=None"
        )
    try:
        return keras.activations.get(value)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"`{name}` must be a Keras activation name or callable (e.g. 'sigmoid', "
            f"'hard_sigmoid', 'relu'). Received: {name}={value!r}"
        ) from err


def _serialize_activation(value):
    return value if isinstance(value, str) else keras.activations.serialize(value)


def se_units(channels, ratio=16, *, units=None, min_units=1, divisor=1):
    """Width of the SE bottleneck for ``channels`` input channels.

    ``divisor=1`` (the paper, timm's legacy SENet): ``channels // ratio``.
    ``divisor > 1`` (MobileNet/EfficientNet ``make_divisible``): ``channels / ratio``
    rounded to the nearest multiple of ``divisor``, never more than 10 % below it.
    In both cases the result is at least ``min_units``. ``units`` overrides the ratio.

    Example:
        >>> se_units(256, 16), se_units(24, 4, divisor=8), se_units(40, 16, min_units=8)
        (16, 8, 8)
    """
    if units is not None:
        return int(units)
    raw = channels / ratio
    if divisor == 1:
        n = int(raw)
    else:
        n = max(divisor, int(raw + divisor / 2) // divisor * divisor)
        if n < 0.9 * raw:
            n += divisor
    return max(n, min_units)


def _resolve_data_format(data_format):
    """``data_format`` or the Keras default, validated."""
    if data_format is None:
        data_format = keras.config.image_data_format()
    return check_choice("data_format", data_format, DATA_FORMATS)


def _channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def _spatial_axes(rank, data_format):
    return tuple(range(1, rank - 1)) if data_format == "channels_last" else tuple(range(2, rank))


def _per_channel_shape(batch, channels, rank, data_format):
    """Shape of one value per (sample, channel) broadcastable over the spatial axes."""
    ones = (1,) * (rank - 2)
    return (batch, *ones, channels) if data_format == "channels_last" else (batch, channels, *ones)


def global_pool(inputs, *, squeeze="avg", data_format="channels_last", keepdims=False):
    """The SE squeeze: average (or max) over all spatial axes, (B, ..., C) -> (B, C).

    ``keepdims=True`` keeps the spatial axes with length 1.

    On the TensorFlow backend, a channels-last 2-D map of known size is pooled with one
    full-window ``average_pool``/``max_pool`` (oneDNN's pooling kernel, about 2x faster on
    CPU than ``reduce_mean`` over two non-contiguous axes: see BENCHMARKS.md); elsewhere,
    and for unknown sizes, ``mean``/``max`` over the axes (on JAX a full-window
    ``reduce_window`` pool has a gradient that costs window x map: far slower).
    """
    rank = len(inputs.shape)
    axes = _spatial_axes(rank, data_format)
    spatial = tuple(inputs.shape[a] for a in axes)
    if (
        rank == 4
        and None not in spatial
        and data_format == "channels_last"  # TF has no NCHW pooling kernel on CPU
        and keras.backend.backend() == "tensorflow"
    ):
        pool = ops.average_pool if squeeze == "avg" else ops.max_pool
        z = pool(
            inputs, pool_size=spatial, strides=spatial, padding="valid", data_format=data_format
        )
        return z if keepdims else ops.reshape(z, (-1, inputs.shape[-1]))
    if squeeze == "avg":
        return ops.mean(inputs, axis=axes, keepdims=keepdims)
    return ops.max(inputs, axis=axes, keepdims=keepdims)


@keras.saving.register_keras_serializable(package="keras_se")
class Squeeze(keras.layers.Layer):
    """The SE squeeze as a layer: each sample's spatial mean (or max), spatial axes kept as 1.

    ``GlobalAveragePooling2D(keepdims=True)`` computed with `global_pool`: one oneDNN
    pooling kernel on TensorFlow, a plain mean on other backends. keras_se's fused SE
    bottleneck (`keras_se.blocks.fused_bottleneck_tail`) uses it to pool the narrow map
    its 1x1 conv expands.

    Args:
        squeeze: ``"avg"`` or ``"max"``.
        data_format: ``"channels_last"``, ``"channels_first"`` or None (the Keras default).

    Example:
        >>> import numpy as np
        >>> tuple(Squeeze()(np.ones((2, 5, 5, 8), "float32")).shape)
        (2, 1, 1, 8)
    """

    def __init__(self, squeeze="avg", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZES)
        self.data_format = _resolve_data_format(data_format)

    def call(self, inputs):
        return global_pool(
            inputs, squeeze=self.squeeze, data_format=self.data_format, keepdims=True
        )

    def compute_output_shape(self, input_shape):
        channels = input_shape[_channel_axis(self.data_format)]
        return _per_channel_shape(input_shape[0], channels, len(input_shape), self.data_format)

    def get_config(self):
        return {**super().get_config(), "squeeze": self.squeeze, "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="keras_se")
class PointwiseConv2D(keras.layers.Conv2D):
    """A 1x1, stride-1 ``Conv2D`` that runs a 1x1 map (a pooled descriptor) as one matmul.

    keras_se's fused SE bottleneck applies its last 1x1 conv twice: to the feature map and
    to that map's spatial mean (the squeeze, `keras_se.blocks.fused_bottleneck_tail`). On
    CPU a convolution primitive on a (batch, 1, 1, C) input costs 2-3x a matmul of the same
    size (oneDNN sets up and reorders the kernel per call); this layer computes that call as
    ``reshape → matmul → reshape`` and every other input as ``Conv2D``. Same weights, same
    config and arguments as ``Conv2D(filters, 1)``.

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
        return ops.reshape(outputs, _per_channel_shape(-1, self.filters, 4, self.data_format))


_GROUPED_GRADIENTS = []  # one cached answer of `_tf_grouped_gradients`


def _tf_grouped_gradients():
    """Whether TensorFlow's own kernels differentiate grouped convolutions here.

    TensorFlow's CPU kernels do only with oneDNN, which TensorFlow turns on by itself
    only on some CPUs (``TF_ENABLE_ONEDNN_OPTS``; off on an AVX2-only AMD EPYC, for one):
    without it the backward pass fails ("Gradients for grouped convolutions are not
    supported on CPU"), so `Conv2D` keeps Keras's XLA path. Probed once, eagerly, on a
    tiny convolution.
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


@keras.saving.register_keras_serializable(package="keras_se")
class Conv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose grouped case TensorFlow runs with its own kernels (ResNeXt's 3x3).

    Keras 3's TensorFlow backend compiles every grouped convolution with XLA (a
    workaround for TensorFlow versions whose CPU kernels lacked groups). On a CPU the
    XLA gradient of a grouped convolution is orders of magnitude slower than
    TensorFlow's own kernels: an SE-ResNeXt-50 training step (batch 8, 224x224, 2
    cores) took 57 s with ``keras.layers.Conv2D(groups=32)`` and 1.7 s with this layer
    (BENCHMARKS.md). Under TensorFlow with ``groups > 1`` and a channels-last input this
    layer calls ``tf.nn.convolution`` directly; otherwise, and on the other backends, it
    is ``Conv2D``. Same weights, config and arguments as ``Conv2D``; tests check its
    outputs and gradients against ``Conv2D`` and a NumPy per-group reference.

    It keeps Keras's class name on purpose, as `BatchNormalization` does: Keras files of
    weights (``.weights.h5``) name a model's layers by class, so a weights file of a
    ResNeXt built with ``keras.layers.Conv2D(groups=...)`` (keras_se's own before this
    layer, or a hand-written one with the same layers) loads into keras_se's builders,
    and theirs back. ``GroupedConv2D`` is the same class under the name it first had
    (``.keras`` files that name it still load).

    Example:
        >>> import numpy as np
        >>> conv = Conv2D(8, 3, groups=4, padding="same", use_bias=False)
        >>> tuple(conv(np.ones((1, 5, 5, 8), "float32")).shape)
        (1, 5, 5, 8)
    """

    def convolution_op(self, inputs, kernel):
        if (
            self.groups == 1
            or keras.backend.backend() != "tensorflow"
            or self.data_format != "channels_last"
            or not _tf_grouped_gradients()
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


#: The name `Conv2D` had when it came (its own class name then; see `Conv2D`).
GroupedConv2D = Conv2D
keras.saving.get_custom_objects()["keras_se>GroupedConv2D"] = Conv2D


@keras.saving.register_keras_serializable(package="keras_se")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step runs TensorFlow's fused kernel.

    Keras 3 normalises a batch with separate ops (two reductions for the moments, then
    the affine), and differentiates each; PyTorch (and Keras 2 with ``fused=True``) runs
    one fused kernel forward and one backward. Under TensorFlow, in training, on a 4-D
    channels-last input (no mask, no renorm, not synchronized) this layer calls
    ``FusedBatchNormV3`` (oneDNN on CPU) and updates the moving statistics as Keras does,
    with the biased batch variance; everywhere else, and in inference, it is
    ``BatchNormalization``. Same weights, config and arguments; tests check outputs,
    moving statistics and gradients against ``BatchNormalization`` and a NumPy reference.

    It keeps Keras's class name on purpose: Keras files of weights (``.weights.h5``) name a
    model's layers by class, so a weights file of a keras_se model from before this layer,
    or of a ``keras.applications`` model, still loads into the same architecture.

    Example:
        >>> import numpy as np
        >>> bn = BatchNormalization(epsilon=1e-5)
        >>> y = bn(np.arange(16, dtype="float32").reshape(2, 2, 2, 2), training=True)
        >>> [round(float(v), 3) for v in bn.moving_mean.numpy()]
        [0.07, 0.08]
    """

    def _fusable(self, inputs, training, mask):
        return (
            training
            and self.trainable
            and mask is None
            and not self.renorm
            and not self.synchronized
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (3, -1)
            and inputs.dtype in ("float32", "float16", "bfloat16")
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones((channels,), "float32")
        beta = self.beta if self.center else tf.zeros((channels,), "float32")
        outputs, _, _ = _fused_batch_norm_training(
            self, inputs, tf.cast(gamma, "float32"), tf.cast(beta, "float32")
        )
        return tf.cast(outputs, self.compute_dtype)


def _fused_batch_norm_training(layer, x, gamma, beta):
    """``FusedBatchNormV3`` in training on NHWC ``x`` (TensorFlow), and ``layer``'s moving averages.

    Returns ``(BN(x), batch mean, biased batch variance)``; updates ``layer.moving_mean`` and
    ``layer.moving_variance`` as Keras's BatchNormalization does (``layer.momentum``,
    ``layer.epsilon``). Shared by `BatchNormalization` and `BatchNormSqueezeExcite`.
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


class SEGate(keras.layers.Layer):
    """The part every SE layer shares: the squeeze and the excitation (Sec. 3.1-3.2).

    Holds the gate's configuration and weights, ``W1`` (``reduce_kernel``, C x C/r),
    ``W2`` (``expand_kernel``, C/r x C) and their biases, and computes
    ``s = gate(W2 · act(W1 · z + b1) + b2)`` from a squeezed descriptor ``z``. It is
    not used on its own: a subclass says which feature map ``U`` the gate scales and
    what its ``call`` takes.

    * `SqueezeExcite`: ``U`` is the input, ``layer(x) = x · s``.
    * `BatchNormSqueezeExcite`: ``U = BN(x)``, ``layer(x)`` or ``layer(x, means)``.

    Every subclass offers the same read-only interface, so code that inspects SE
    layers (excitation statistics, weight conversion, FLOP counts) finds them all with
    ``isinstance(layer, SEGate)``: ``channels`` and ``bottleneck_units`` (after
    building), ``ratio``, ``squeeze``, ``data_format``, `excitation`, `features` and
    `feature_input`.

    A built layer has an ``InputSpec`` on its channel axis: an input with another
    channel count is refused with Keras's message, naming the layer and the axis.

    Args: see `SqueezeExcite`.

    Example:
        >>> import numpy as np
        >>> from keras_se import BatchNormSqueezeExcite, SqueezeExcite
        >>> x = np.ones((2, 4, 4, 16), "float32")
        >>> gates = [SqueezeExcite(ratio=4), BatchNormSqueezeExcite(ratio=4)]
        >>> for gate in gates:
        ...     _ = gate(x)
        >>> [(isinstance(g, SEGate), g.channels, g.bottleneck_units) for g in gates]
        [(True, 16, 4), (True, 16, 4)]
        >>> tuple(gates[0].excitation(x).shape)
        (2, 16)
    """

    def __init__(
        self,
        ratio=16,
        *,
        units=None,
        min_units=1,
        divisor=1,
        squeeze="avg",
        activation="relu",
        gate="sigmoid",
        use_bias=True,
        data_format=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        gate_bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        ratio = check_positive_number("ratio", ratio)
        self.ratio = ratio if isinstance(ratio, int) else float(ratio)
        self.units = check_optional(check_positive_int, "units", units)
        self.min_units = check_int("min_units", min_units, minimum=0)
        self.divisor = check_positive_int("divisor", divisor)
        self.squeeze = check_choice("squeeze", squeeze, SQUEEZES)
        self.activation = _check_activation("activation", activation)
        self.gate = _check_activation("gate", gate)
        self._activation_config = _serialize_activation(activation)
        self._gate_config = _serialize_activation(gate)
        self.use_bias = check_bool("use_bias", use_bias)
        self.data_format = _resolve_data_format(data_format)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.gate_bias_initializer = keras.initializers.get(gate_bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.channels = None
        self.bottleneck_units = None

    # ------------------------------------------------------------------ build
    def _build_gate(self, input_shape):
        """Reads the channel count from ``input_shape``; creates W1, W2 (and biases)."""
        name = type(self).__name__
        rank = len(input_shape)
        if rank < 3:
            raise ValueError(
                f"{name} needs a feature map of rank >= 3 (batch, spatial..., channels). "
                f"Received: input_shape={tuple(input_shape)}"
            )
        axis = _channel_axis(self.data_format)
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(
                f"{name} needs a known channel dimension at build time. "
                f"Received: input_shape={tuple(input_shape)} with data_format={self.data_format!r}"
            )
        units = se_units(
            channels, self.ratio, units=self.units, min_units=self.min_units, divisor=self.divisor
        )
        if units < 1:
            raise ValueError(
                f"`ratio` leaves 0 bottleneck units for {channels} channels. "
                f"Received: ratio={self.ratio!r}, min_units={self.min_units!r}; use a smaller "
                "ratio, `units`, or `min_units>=1`."
            )
        self.channels = int(channels)
        self.bottleneck_units = int(units)
        self.input_spec = keras.layers.InputSpec(min_ndim=3, axes={axis: self.channels})
        # (C, C/r) and (C/r, C): the paper's W1 and W2, transposed for x @ W.
        self.reduce_kernel = self.add_weight(
            name="reduce_kernel",
            shape=(self.channels, self.bottleneck_units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.expand_kernel = self.add_weight(
            name="expand_kernel",
            shape=(self.bottleneck_units, self.channels),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.reduce_bias = self.add_weight(
                name="reduce_bias",
                shape=(self.bottleneck_units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
            self.expand_bias = self.add_weight(
                name="expand_bias",
                shape=(self.channels,),
                initializer=self.gate_bias_initializer,
                regularizer=self.bias_regularizer,
            )
        else:
            self.reduce_bias = None
            self.expand_bias = None

    def _check_float(self, x):
        """A gate averages and scales its input: refuse integer/bool inputs by name, at
        build time of a functional model (its symbolic call) rather than inside a kernel."""
        dtype = keras.backend.standardize_dtype(x.dtype)
        if not keras.backend.is_float_dtype(dtype):
            raise TypeError(
                f"Layer '{self.name}' ({self.__class__.__name__}) needs a floating-point input "
                f"(a feature map); cast it first, e.g. keras.ops.cast(x, 'float32'). "
                f"Received: input dtype={dtype}"
            )

    def compute_output_spec(self, inputs, *args, **kwargs):
        # The symbolic call of a functional model: refuse a non-float input here, at build.
        self._check_float(inputs[0] if _is_pair(inputs) else inputs)
        return super().compute_output_spec(inputs, *args, **kwargs)

    def _check_input(self, x):
        """For the methods that bypass ``__call__``: builds the layer on ``x`` if needed,
        else refuses another channel count as the ``InputSpec`` does in ``__call__``."""
        self._check_float(x)
        if not self.built:
            self.build(tuple(x.shape))
            return
        axis = _channel_axis(self.data_format)
        if len(x.shape) < 3 or x.shape[axis] not in (self.channels, None):
            raise ValueError(
                f"Input 0 of layer '{self.name}' is incompatible with the layer: expected "
                f"axis {axis} of input shape to have value {self.channels}, but received "
                f"input with shape {tuple(x.shape)}"
            )

    # ------------------------------------------------------------------ compute
    def _spatial_axes(self, rank):
        return _spatial_axes(rank, self.data_format)

    def _squeeze(self, inputs):
        """Global average (or max) pooling over all spatial axes: (B, ..., C) -> (B, C)."""
        return global_pool(inputs, squeeze=self.squeeze, data_format=self.data_format)

    def _gate_from_pooled(self, z):
        """The excitation ``s`` (B, C) from the squeezed descriptor ``z`` (B, C)."""
        # Explicit casts: outside __call__ (excitation()) no autocast scope is active.
        dtype = z.dtype

        def weight(variable):
            value = variable.value if hasattr(variable, "value") else variable
            return value if value.dtype == dtype else ops.cast(value, dtype)

        h = ops.matmul(z, weight(self.reduce_kernel))  # (B, C/r)
        if self.use_bias:
            h = h + weight(self.reduce_bias)
        h = self.activation(h)
        s = ops.matmul(h, weight(self.expand_kernel))  # (B, C)
        if self.use_bias:
            s = s + weight(self.expand_bias)
        return self.gate(s)

    def _broadcastable(self, values, rank):
        """(B, C) -> (B, 1, ..., 1, C) or (B, C, 1, ..., 1) to broadcast over space.

        One reshape: fewer ops matter in eager mode, where each op is dispatched alone.
        """
        return ops.reshape(values, _per_channel_shape(-1, self.channels, rank, self.data_format))

    # ------------------------------------------------------------------ interface
    def excitation(self, inputs):
        """The gate ``s`` for what ``call`` accepts, shape ``(batch, channels)``."""
        raise NotImplementedError

    def features(self, inputs):
        """The feature map ``U`` that the gate scales, for what ``call`` accepts."""
        raise NotImplementedError

    @property
    def feature_input(self):
        """The symbolic input feature map this layer was called on in its model."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ratio": self.ratio,
                "units": self.units,
                "min_units": self.min_units,
                "divisor": self.divisor,
                "squeeze": self.squeeze,
                "activation": self._activation_config,
                "gate": self._gate_config,
                "use_bias": self.use_bias,
                "data_format": self.data_format,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "gate_bias_initializer": keras.initializers.serialize(self.gate_bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_se")
class SqueezeExcite(SEGate):
    """Squeeze-and-Excitation block: recalibrates channels by a learned gate.

    Works on the output of a Conv1D, Conv2D or Conv3D (inputs of rank 3, 4 or 5),
    in either data format. The channel count is read from the input in ``build()``;
    the built layer refuses inputs with another channel count (``InputSpec``).

    Args:
        ratio: reduction ratio ``r``; the bottleneck has ``channels // r`` units
            (paper default 16). Any positive finite number.
        units: bottleneck width; overrides ``ratio`` when given.
        min_units: lower bound for the bottleneck width (default 1). With
            ``min_units=0`` a ratio larger than the channel count is an error.
        divisor: round the width to a multiple of this (MobileNet/EfficientNet
            style, e.g. ``divisor=8``); 1 keeps the paper's ``channels // r``.
        squeeze: ``"avg"`` (global average pooling, the paper) or ``"max"``.
        activation: activation between the two FC layers (paper: ``"relu"``).
        gate: activation producing the excitation (paper: ``"sigmoid"``).
        use_bias: whether the two FC layers have biases (timm's reference models do).
        data_format: ``"channels_last"``, ``"channels_first"`` or None
            (``keras.config.image_data_format()``).
        kernel_initializer, bias_initializer: initializers of both FC layers.
        gate_bias_initializer: initializer of the second FC bias (the gate's
            pre-activation); a large constant starts the gate near 1 (identity).
        kernel_regularizer, bias_regularizer: regularizers of both FC layers.
        **kwargs: standard layer arguments (``name``, ``dtype``, ...).

    Call:
        ``layer(x)`` returns ``x * s`` with ``s`` broadcast over the spatial axes:
        same shape and dtype as ``x``. ``layer.excitation(x)`` returns ``s``,
        shape ``(batch, channels)``.

    Example:
        >>> import keras, numpy as np
        >>> from keras_se import SqueezeExcite
        >>> inputs = keras.Input((32, 32, 64))
        >>> x = keras.layers.Conv2D(64, 3, padding="same")(inputs)
        >>> outputs = SqueezeExcite(ratio=16)(x)      # 64 -> 4 -> 64 gate
        >>> model = keras.Model(inputs, outputs)
        >>> model.get_layer(index=-1).count_params()  # 2*64*4 + 4 + 64
        580
    """

    def build(self, input_shape):
        self._build_gate(input_shape)

    def call(self, inputs):
        self._check_float(inputs)
        s = self._gate_from_pooled(self._squeeze(inputs))
        s = self._broadcastable(s, len(inputs.shape))
        if s.dtype != inputs.dtype:
            s = ops.cast(s, inputs.dtype)
        return inputs * s

    def excitation(self, inputs):
        """The gate values ``s`` for ``inputs``, shape ``(batch, channels)``.

        Runs the squeeze and excitation steps only (no scaling), in the layer's
        compute dtype, building the layer first if needed.

        Example:
            >>> import numpy as np
            >>> se = SqueezeExcite(ratio=4)
            >>> s = se.excitation(np.ones((2, 8, 8, 16), "float32"))
            >>> tuple(s.shape)
            (2, 16)
        """
        x = ops.convert_to_tensor(inputs)
        self._check_input(x)
        x = ops.cast(x, self.compute_dtype)
        return self._gate_from_pooled(self._squeeze(x))

    def features(self, inputs):
        """The feature map ``U`` the block recalibrates: ``inputs`` itself."""
        return ops.convert_to_tensor(inputs)

    @property
    def feature_input(self):
        """The symbolic feature map this layer was called on in its model."""
        return self.input

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)


def _mean_squared_deviation(x, mean, axes):
    """``mean((x - mean)**2)`` over ``axes``; one fused op on TensorFlow."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.reduce_mean(tf.math.squared_difference(x, mean), axis=axes)
    return ops.mean(ops.square(x - mean), axis=axes)


def _pooled_through(u, value):
    """``value`` (B, C), whose gradient is sent to ``u`` (B, H, W, C) as to ``mean_hw(u)``.

    For a ``value`` computed equal to ``mean_hw(u)`` by a cheaper route (TensorFlow only).
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


def _scale_without_saving(u, s, x, a, b):
    """``u · s`` (s per sample and channel) for ``u = a·x + b``; the backward pass reads ``x``.

    The gradient of ``s``, ``Σ_hw g·u``, is computed as ``a·Σ_hw g·x + b·Σ_hw g``, so
    ``u`` need not be kept for it (TensorFlow only).
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


def _is_pair(value):
    """True for ``[x, means]`` (tensors or arrays) or a pair of their shapes."""
    return (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (list, tuple)) or hasattr(v, "shape") for v in value)
    )


@keras.saving.register_keras_serializable(package="keras_se")
class BatchNormSqueezeExcite(SEGate):
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
    the caller has them cheaper than a pass over ``x``: keras_se's SE-ResNet/SE-ResNeXt
    bottleneck computes them by applying the last (linear, 1x1) convolution to the
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
        >>> from keras_se import BatchNormSqueezeExcite
        >>> x = np.random.rand(2, 8, 8, 32).astype("float32")
        >>> fused = BatchNormSqueezeExcite(ratio=4)
        >>> tuple(fused(x).shape)
        (2, 8, 8, 32)
        >>> fused.count_params()  # SE: 2*32*8 + 8 + 32, BatchNorm: 4*32
        680
    """

    def __init__(
        self,
        ratio=16,
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
        """Whether the BatchNorm part trains (batch statistics, gamma and beta updated)."""
        return self._batchnorm_trainable

    @batchnorm_trainable.setter
    def batchnorm_trainable(self, value):
        self._batchnorm_trainable = check_bool("batchnorm_trainable", value)
        if self.built:
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
        self.gamma = self.add_weight(
            name="gamma",
            shape=shape,
            initializer=self.gamma_initializer,
            regularizer=self.gamma_regularizer,
            trainable=self._batchnorm_trainable,
            autocast=False,
        )
        self.beta = self.add_weight(
            name="beta",
            shape=shape,
            initializer=self.beta_initializer,
            regularizer=self.beta_regularizer,
            trainable=self._batchnorm_trainable,
            autocast=False,
        )
        self.moving_mean = self.add_weight(
            name="moving_mean",
            shape=shape,
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=shape,
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )

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
        if not (training and self.trainable and self._batchnorm_trainable):
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
            variance = _mean_squared_deviation(x, centre, axes)
        momentum = self.momentum
        self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        return mean, variance, means

    def _fusable(self, inputs, training):
        """True where training runs on TensorFlow's fused BatchNorm kernel (`_fused_call`)."""
        x = inputs[0] if _is_pair(inputs) else inputs
        return (
            training
            and self.trainable
            and self._batchnorm_trainable
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
        u, batch_mean, variance = _fused_batch_norm_training(self, x, gamma, beta)
        # u = a·x + b per channel, as values (gradients go through the kernel instead)
        a = tf.stop_gradient(gamma * tf.math.rsqrt(variance + self.epsilon))
        b = tf.stop_gradient(beta - batch_mean * a)
        s = self._gate_from_pooled(_pooled_through(u, tf.stop_gradient(means) * a + b))
        return tf.cast(_scale_without_saving(u, s, x, a, b), self.compute_dtype)

    def call(self, inputs, means=None, training=None):
        self._check_float(inputs[0] if _is_pair(inputs) else inputs)
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
