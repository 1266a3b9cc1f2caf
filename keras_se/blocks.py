"""Building blocks with an SE switch: conv-BN, ResNet units (post- and pre-activation).

Implements the SE-ResNet module of Hu et al. (2018), Section 4 and Fig. 3, and the
integration variants of the ablation in Section 6.5 / Fig. 5 (``se_mode``):

* ``"standard"``: SE on the residual branch, after its last BN, before the addition.
* ``"pre"``: SE on the unit's input, before the residual branch (the identity is untouched).
* ``"post"``: SE after the addition and its ReLU.
* ``"identity"``: SE on the identity (shortcut) branch, in parallel to the residual branch.

Two unit families: `residual_unit` (post-activation, He et al. 2016: ImageNet ResNets,
ResNeXt, SENet-154 and the CIFAR ResNet-20...110) and `preact_unit` (pre-activation,
He et al. "Identity Mappings": ResNet-164 and the wide ResNets). Their shortcut is a
projection (1x1 or 3x3 conv, "option B") or, for `residual_unit`, the parameter-free
zero-padded identity of `ZeroPadShortcut` ("option A").

Layers are named in the keras.applications scheme (``conv3_block2_1_conv``,
``conv3_block2_se``, ``conv3_block2_add``; ``..._preact_bn`` for pre-activation units)
so ``model.get_layer`` finds them. Only ``keras`` is imported: the blocks run on every
Keras backend.
"""

from __future__ import annotations

import keras

from keras_se.layers import SqueezeExcite
from keras_se_core import choices
from keras_se_core.choices import DEFAULT_RATIO, SE_MODES
from keras_se_core.validation import check_choice

BLOCKS = ("basic", "bottleneck")
#: Shortcut of a unit whose shape changes: a conv + BN ("projection", option B of He et al.)
#: or the parameter-free subsampled identity padded with zero channels ("zero_pad", option A).
SHORTCUTS = ("projection", "zero_pad")
BN_EPSILON, BN_MOMENTUM = choices.BN_EPSILON, choices.BN_MOMENTUM  # PyTorch's


def channel_axis():
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def conv_kernel_initializer():
    """He-normal with fan_out, as torchvision/timm initialise ResNet convolutions."""
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


def conv2d(x, filters, kernel_size, *, name, strides=1, groups=1):
    """Conv2D without bias, with PyTorch-style symmetric padding; the layer is ``name``.

    A strided convolution with a kernel larger than 1 gets an explicit
    ``ZeroPadding2D(kernel_size // 2)`` (``{name}_pad`` without the ``_conv`` suffix)
    and ``"valid"`` padding, so the output grid matches the reference (PyTorch/Caffe)
    models exactly; Keras's ``"same"`` would pad only on the bottom/right for even inputs.
    """
    padding = "same"
    if strides > 1 and kernel_size > 1:
        pad_name = name[: -len("_conv")] if name.endswith("_conv") else name
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{pad_name}_pad")(x)
        padding = "valid"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=conv_kernel_initializer(),
        name=name,
    )(x)


def batch_norm(x, *, name, activation=None):
    """BatchNorm with the PyTorch epsilon/momentum (``name``), then an optional activation.

    The activation layer is ``name`` with its ``_bn`` suffix replaced by ``_relu``.
    """
    x = keras.layers.BatchNormalization(
        axis=channel_axis(), epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name
    )(x)
    if activation:
        base = name[: -len("_bn")] if name.endswith("_bn") else name
        x = keras.layers.Activation(activation, name=f"{base}_relu")(x)
    return x


def conv_bn(x, filters, kernel_size, *, name, strides=1, groups=1, activation="relu"):
    """Conv (no bias) → BatchNorm → optional ReLU, with PyTorch-style symmetric padding.

    See `conv2d` for the padding of strided convolutions.

    Args:
        x: input tensor.
        filters: output channels.
        kernel_size: square kernel size.
        name: prefix; layers are ``{name}_conv``, ``{name}_bn``, ``{name}_relu``
            (and ``{name}_pad`` for a strided kernel > 1).
        strides: convolution stride.
        groups: grouped convolution (ResNeXt cardinality).
        activation: ``"relu"`` or None.

    Returns:
        The output tensor.
    """
    x = conv2d(x, filters, kernel_size, strides=strides, groups=groups, name=f"{name}_conv")
    return batch_norm(x, name=f"{name}_bn", activation=activation)


@keras.saving.register_keras_serializable(package="keras_se")
class ZeroPadShortcut(keras.layers.Layer):
    """The option-A shortcut of He et al. (2016): subsampled identity plus zero channels.

    ``x[:, ::s, ::s, :]`` (every ``strides``-th pixel, as a strided 1x1 identity conv)
    with ``filters - C`` zero channels appended, so a unit that doubles its width and
    halves its resolution keeps a parameter-free shortcut (the CIFAR ResNets' choice).

    Args:
        filters: output channels (at least the input channels).
        strides: spatial subsampling.
        **kwargs: standard layer arguments.

    Example:
        >>> import numpy as np
        >>> y = ZeroPadShortcut(4, strides=2)(np.ones((1, 4, 4, 2), "float32"))
        >>> tuple(y.shape), float(y[0, 0, 0, 1]), float(y[0, 0, 0, 2])
        ((1, 2, 2, 4), 1.0, 0.0)
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def _channels_last(self):
        return keras.config.image_data_format() == "channels_last"

    def call(self, inputs):
        s = self.strides
        if self._channels_last():
            x = inputs[:, ::s, ::s, :]
            pad = [[0, 0], [0, 0], [0, 0], [0, self.filters - inputs.shape[-1]]]
        else:
            x = inputs[:, :, ::s, ::s]
            pad = [[0, 0], [0, self.filters - inputs.shape[1]], [0, 0], [0, 0]]
        return keras.ops.pad(x, pad)

    def compute_output_shape(self, input_shape):
        def sub(size):
            return None if size is None else -(-size // self.strides)

        if self._channels_last():
            return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.filters)
        return (input_shape[0], self.filters, sub(input_shape[2]), sub(input_shape[3]))

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "strides": self.strides})
        return config


def squeeze_excite(x, *, ratio, name, se_kwargs=None):
    """Applies a `SqueezeExcite` layer named ``name`` (``ratio=None`` → unchanged)."""
    if ratio is None:
        return x
    return SqueezeExcite(ratio, name=name, **(se_kwargs or {}))(x)


def _check_unit_args(block, shortcut, se_mode):
    check_choice("block", block, BLOCKS)
    check_choice("shortcut", shortcut, SHORTCUTS)
    check_choice("se_mode", se_mode, SE_MODES)


def residual_unit(
    x,
    filters,
    *,
    name,
    block="bottleneck",
    strides=1,
    groups=1,
    base_width=64,
    stride_in_1x1=True,
    first_width_ratio=1.0,
    shortcut="projection",
    shortcut_kernel_size=1,
    relu_before_se=None,
    se_ratio=DEFAULT_RATIO,
    se_mode="standard",
    se_kwargs=None,
):
    """One post-activation ResNet/ResNeXt unit (basic or bottleneck) with an optional SE block.

    Args:
        x: input tensor.
        filters: the unit's "planes": basic → ``filters`` output channels,
            bottleneck → ``4 * filters`` output channels.
        name: prefix, e.g. ``"conv3_block1"``.
        block: ``"basic"`` (two 3x3 convs, ResNet-18/34 and the CIFAR ResNets) or
            ``"bottleneck"`` (1x1 → 3x3 → 1x1, ResNet-50+ and ResNeXt).
        strides: downsampling stride of the unit.
        groups: cardinality of the 3x3 conv (ResNeXt: 32).
        base_width: width per group; the 3x3 conv has
            ``floor(filters * base_width / 64) * groups`` channels (ResNeXt 32x4d: 4).
        stride_in_1x1: bottleneck only; put the stride in the first 1x1 conv
            (original Caffe SENet/ResNet) instead of the 3x3 (torchvision "v1.5").
        first_width_ratio: bottleneck only; channels of the first 1x1 conv as a fraction
            of the 3x3 conv's (SENet-154: 0.5, its ``SEBottleneck`` has ``planes * 2``
            then ``planes * 4`` channels).
        shortcut: when the shape changes, ``"projection"`` (conv + BN, option B) or
            ``"zero_pad"`` (`ZeroPadShortcut`, parameter-free, option A).
        shortcut_kernel_size: kernel of a strided projection (SENet-154: 3, padding 1);
            a projection without stride is always 1x1.
        relu_before_se: basic units with the standard SE placement: apply a ReLU after the
            second BN, before the SE block. None → True, as the reference SE-ResNet-18/34
            (timm ``legacy_seresnet18/34``); the plain unit never has it.
        se_ratio: SE reduction ratio, or None for a plain unit.
        se_mode: one of ``SE_MODES`` (see the module docstring).
        se_kwargs: extra `SqueezeExcite` arguments.

    Returns:
        The unit's output tensor.
    """
    _check_unit_args(block, shortcut, se_mode)
    bn_axis = channel_axis()
    in_channels = x.shape[bn_axis]
    out_channels = filters * (4 if block == "bottleneck" else 1)
    se = dict(ratio=se_ratio, se_kwargs=se_kwargs, name=f"{name}_se")

    unit_input = x
    if se_mode == "pre":
        x = squeeze_excite(x, **se)

    if strides == 1 and in_channels == out_channels:
        residual_shortcut = unit_input
    elif shortcut == "zero_pad":
        residual_shortcut = ZeroPadShortcut(out_channels, strides, name=f"{name}_0_pad")(
            unit_input
        )
    else:
        residual_shortcut = conv_bn(
            unit_input,
            out_channels,
            shortcut_kernel_size if strides > 1 else 1,
            strides=strides,
            activation=None,
            name=f"{name}_0",
        )

    if block == "basic":
        x = conv_bn(x, filters, 3, strides=strides, name=f"{name}_1")
        # The reference SE-ResNet-18/34 (timm legacy_seresnet18/34) apply a ReLU after
        # the second BN when the branch carries an SE block; the plain unit has none.
        if relu_before_se is None:
            relu_before_se = True
        relu = "relu" if (relu_before_se and se_ratio is not None and se_mode == "standard") else None
        x = conv_bn(x, filters, 3, activation=relu, name=f"{name}_2")
    else:
        width = int(filters * (base_width / 64.0)) * groups
        s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
        x = conv_bn(x, int(width * first_width_ratio), 1, strides=s1, name=f"{name}_1")
        x = conv_bn(x, width, 3, strides=s3, groups=groups, name=f"{name}_2")
        x = conv_bn(x, out_channels, 1, activation=None, name=f"{name}_3")

    if se_mode == "standard":
        x = squeeze_excite(x, **se)
    elif se_mode == "identity":
        residual_shortcut = squeeze_excite(residual_shortcut, **se)
    x = keras.layers.Add(name=f"{name}_add")([residual_shortcut, x])
    x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    if se_mode == "post":
        x = squeeze_excite(x, **se)
    return x


def preact_unit(
    x,
    filters,
    *,
    name,
    block="bottleneck",
    strides=1,
    dropout=0.0,
    se_ratio=DEFAULT_RATIO,
    se_mode="standard",
    se_kwargs=None,
):
    """One pre-activation unit (He et al., "Identity Mappings", 2016) with an optional SE block.

    The residual branch is ``BN → ReLU → conv`` repeated: basic (two 3x3 convs, the wide
    ResNets of Zagoruyko & Komodakis) or bottleneck (1x1 → 3x3 → 1x1 to ``4 * filters``,
    ResNet-164). When the shape changes the shortcut is a 1x1 projection conv (no BN)
    of the pre-activated input, which both branches then share, as in the authors' code
    (with ``se_mode="pre"`` that input has passed the SE block); otherwise the identity of
    the unit's raw input. Nothing follows the addition.

    SE placement (``se_mode``): ``"standard"`` on the branch's output (its last conv; there
    is no last BN to follow), before the addition; ``"pre"`` on the unit's input before the
    branch; ``"post"`` after the addition; ``"identity"`` on the shortcut.

    Args:
        x: input tensor.
        filters: basic → output channels; bottleneck → ``filters`` in the 3x3 conv,
            ``4 * filters`` out.
        name: prefix; layers ``{name}_preact_bn``/``_preact_relu``, ``{name}_0_conv``
            (projection), ``{name}_{k}_conv``, ``{name}_{k}_bn``/``_relu`` (k ≥ 2: the
            pre-activation of conv k), ``{name}_dropout``, ``{name}_se``, ``{name}_out``.
        block: ``"basic"`` or ``"bottleneck"``.
        strides: downsampling stride (in the 3x3 conv; basic: the first one).
        dropout: basic only; dropout rate between the two convs (wide ResNets: 0.3).
        se_ratio: SE reduction ratio, or None for a plain unit.
        se_mode: one of ``SE_MODES``.
        se_kwargs: extra `SqueezeExcite` arguments.

    Returns:
        The unit's output tensor.
    """
    _check_unit_args(block, "projection", se_mode)
    in_channels = x.shape[channel_axis()]
    out_channels = filters * (4 if block == "bottleneck" else 1)
    se = dict(ratio=se_ratio, se_kwargs=se_kwargs, name=f"{name}_se")
    unit_input = x
    if se_mode == "pre":
        x = squeeze_excite(x, **se)
    preact = batch_norm(x, name=f"{name}_preact_bn", activation="relu")
    if strides == 1 and in_channels == out_channels:
        shortcut = unit_input  # "pre" too: the identity is untouched
    else:
        shortcut = conv2d(preact, out_channels, 1, strides=strides, name=f"{name}_0_conv")

    if block == "basic":
        kernels = ((filters, 3, strides), (filters, 3, 1))
    else:
        kernels = ((filters, 1, 1), (filters, 3, strides), (out_channels, 1, 1))
    y = preact
    for index, (width, kernel, stride) in enumerate(kernels, start=1):
        if index > 1:
            y = batch_norm(y, name=f"{name}_{index}_bn", activation="relu")
            if block == "basic" and dropout:
                y = keras.layers.Dropout(dropout, name=f"{name}_dropout")(y)
        y = conv2d(y, width, kernel, strides=stride, name=f"{name}_{index}_conv")
    if se_mode == "standard":
        y = squeeze_excite(y, **se)
    elif se_mode == "identity":
        shortcut = squeeze_excite(shortcut, **se)
    x = keras.layers.Add(name=f"{name}_out")([shortcut, y])
    if se_mode == "post":
        x = squeeze_excite(x, **se)
    return x
