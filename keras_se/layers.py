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

import keras
from keras import ops

from keras_se_core.choices import DATA_FORMATS, DEFAULT_RATIO, SQUEEZES
from keras_se_core.validation import (
    check_bool,
    check_choice,
    check_int,
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


def se_units(channels, ratio=DEFAULT_RATIO, *, units=None, min_units=1, divisor=1):
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
    pooling kernel on TensorFlow, a plain mean on other backends (`keras_se.speed` pools
    the narrow input of a bottleneck's last 1x1 conv with it).

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



class SEGate(keras.layers.Layer):
    """The part every SE layer shares: the squeeze and the excitation (Sec. 3.1-3.2).

    Holds the gate's configuration and weights, ``W1`` (``reduce_kernel``, C x C/r),
    ``W2`` (``expand_kernel``, C/r x C) and their biases, and computes
    ``s = gate(W2 · act(W1 · z + b1) + b2)`` from a squeezed descriptor ``z``. It is
    not used on its own: a subclass says which feature map ``U`` the gate scales and
    what its ``call`` takes.

    * `SqueezeExcite`: ``U`` is the input, ``layer(x) = x · s``.
    * `keras_se.speed`'s fast tail: ``U = BN(x)`` (a BatchNorm and the gate as one layer).

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
        >>> from keras_se import SqueezeExcite
        >>> x = np.ones((2, 4, 4, 16), "float32")
        >>> gate = SqueezeExcite(ratio=4)
        >>> _ = gate(x)
        >>> isinstance(gate, SEGate), gate.channels, gate.bottleneck_units
        (True, 16, 4)
        >>> tuple(gate.excitation(x).shape)
        (2, 16)
    """

    def __init__(
        self,
        ratio=DEFAULT_RATIO,
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
        self._check_float(self._feature_map(inputs))
        return super().compute_output_spec(inputs, *args, **kwargs)

    @staticmethod
    def _feature_map(inputs):
        """The feature map among a call's inputs (a subclass may take more than one)."""
        return inputs

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
