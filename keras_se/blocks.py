"""Building blocks with an SE switch: conv-BN, ResNet basic and bottleneck units.

Implements the SE-ResNet module of Hu et al. (2018), Section 4 and Fig. 3, and the
integration variants of the ablation in Section 6.5 / Fig. 5 (``se_mode``):

* ``"standard"``: SE on the residual branch, after its last BN, before the addition.
* ``"pre"``: SE on the unit's input, before the residual branch (the identity is untouched).
* ``"post"``: SE after the addition and its ReLU.
* ``"identity"``: SE on the identity (shortcut) branch, in parallel to the residual branch.

Layers are named in the keras.applications scheme (``conv3_block2_1_conv``,
``conv3_block2_se``, ``conv3_block2_add``) so ``model.get_layer`` finds them.
Only ``keras`` is imported: the blocks run on every Keras backend.
"""

from __future__ import annotations

import keras

from keras_se.layers import BatchNormSqueezeExcite, PointwiseConv2D, Squeeze, SqueezeExcite

SE_MODES = ("standard", "pre", "post", "identity")
BN_EPSILON = 1e-5  # PyTorch/Caffe-port default (keras.applications uses 1.001e-5)
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1 expressed the Keras way


def channel_axis():
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def conv_kernel_initializer():
    """He-normal with fan_out, as torchvision/timm initialise ResNet convolutions."""
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


def conv_bn(x, filters, kernel_size, *, name, strides=1, groups=1, activation="relu"):
    """Conv (no bias) → BatchNorm → optional ReLU, with PyTorch-style symmetric padding.

    A strided convolution with a kernel larger than 1 gets an explicit
    ``ZeroPadding2D(kernel_size // 2)`` and ``"valid"`` padding, so the output grid
    matches the reference (PyTorch/Caffe) models exactly; Keras's ``"same"`` would
    pad only on the bottom/right for even inputs.

    Args:
        x: input tensor.
        filters: output channels.
        kernel_size: square kernel size.
        name: prefix; layers are ``{name}_conv``, ``{name}_bn``, ``{name}_relu``.
        strides: convolution stride.
        groups: grouped convolution (ResNeXt cardinality).
        activation: ``"relu"`` or None.

    Returns:
        The output tensor.
    """
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=False,
        kernel_initializer=conv_kernel_initializer(),
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(
        axis=channel_axis(), epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn"
    )(x)
    if activation:
        x = keras.layers.Activation(activation, name=f"{name}_relu")(x)
    return x


def squeeze_excite(x, *, ratio, name, se_kwargs=None):
    """Applies a `SqueezeExcite` layer named ``name`` (``ratio=None`` → unchanged)."""
    if ratio is None:
        return x
    return SqueezeExcite(ratio, name=name, **(se_kwargs or {}))(x)


def fused_bottleneck_tail(x, filters, *, ratio, name, se_kwargs=None):
    """The bottleneck's last 1x1 conv → BN → SE as a conv and one `BatchNormSqueezeExcite`.

    Computes exactly ``SqueezeExcite(BatchNormalization(Conv1x1(x)))`` (the standard SE
    placement) at nearly the cost of the plain ``Conv1x1 → BatchNormalization``:

    * the BN and the SE scale are one affine (`BatchNormSqueezeExcite`);
    * the squeeze needs the spatial mean of the conv output, which for a linear 1x1 conv
      is the conv of the spatial mean of its input: ``{name}_se_pool`` averages the
      4x narrower input and ``{name}_3_conv`` (a `PointwiseConv2D`) is applied to it as
      well (shared kernel; on the (batch, 1, 1, C/4) descriptor it is one matmul).

    Layers: ``{name}_3_conv`` (called twice; its ``output`` is the feature map),
    ``{name}_se_pool`` and ``{name}_se`` (holding the BN's ``gamma``/``beta``/moving
    statistics and the SE weights).
    """
    conv3 = PointwiseConv2D(
        filters,
        use_bias=False,
        kernel_initializer=conv_kernel_initializer(),
        name=f"{name}_3_conv",
    )
    features = conv3(x)  # first call: conv3.output is the full map
    pool = Squeeze(name=f"{name}_se_pool")
    means = conv3(pool(x))
    return BatchNormSqueezeExcite(
        ratio,
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        name=f"{name}_se",
        **(se_kwargs or {}),
    )([features, means])


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
    se_ratio=16,
    se_mode="standard",
    se_kwargs=None,
    se_fused=True,
):
    """One ResNet/ResNeXt unit (basic or bottleneck) with an optional SE block.

    Args:
        x: input tensor.
        filters: the unit's "planes": basic → ``filters`` output channels,
            bottleneck → ``4 * filters`` output channels.
        name: prefix, e.g. ``"conv3_block1"``.
        block: ``"basic"`` (two 3x3 convs, ResNet-18/34) or ``"bottleneck"``
            (1x1 → 3x3 → 1x1, ResNet-50+ and ResNeXt).
        strides: downsampling stride of the unit.
        groups: cardinality of the 3x3 conv (ResNeXt: 32).
        base_width: width per group; the 3x3 conv has
            ``floor(filters * base_width / 64) * groups`` channels (ResNeXt 32x4d: 4).
        stride_in_1x1: bottleneck only; put the stride in the first 1x1 conv
            (original Caffe SENet/ResNet) instead of the 3x3 (torchvision "v1.5").
        se_ratio: SE reduction ratio, or None for a plain unit.
        se_mode: one of ``SE_MODES`` (see the module docstring).
        se_kwargs: extra `SqueezeExcite` arguments.
        se_fused: bottleneck with ``se_mode="standard"`` and the average squeeze only:
            build the branch's tail with `fused_bottleneck_tail` (same function and
            weights, no separate ``{name}_3_bn`` layer, ~2-6 % faster, less training
            memory); False keeps ``conv → BatchNormalization → SqueezeExcite``.

    Returns:
        The unit's output tensor.
    """
    bn_axis = channel_axis()
    in_channels = x.shape[bn_axis]
    out_channels = filters * (4 if block == "bottleneck" else 1)
    se = dict(ratio=se_ratio, se_kwargs=se_kwargs, name=f"{name}_se")
    fused = (  # the branch's last conv → BN → SE as one `fused_bottleneck_tail`
        se_fused
        and block == "bottleneck"
        and se_ratio is not None
        and se_mode == "standard"
        and (se_kwargs or {}).get("squeeze", "avg") == "avg"
    )

    unit_input = x
    if se_mode == "pre":
        x = squeeze_excite(x, **se)

    if strides != 1 or in_channels != out_channels:
        shortcut = conv_bn(
            unit_input, out_channels, 1, strides=strides, activation=None, name=f"{name}_0"
        )
    else:
        shortcut = unit_input

    if block == "basic":
        x = conv_bn(x, filters, 3, strides=strides, name=f"{name}_1")
        # The reference SE-ResNet-18/34 (timm legacy_seresnet18/34) apply a ReLU after
        # the second BN when the branch carries an SE block; the plain unit has none.
        relu = "relu" if (se_ratio is not None and se_mode == "standard") else None
        x = conv_bn(x, filters, 3, activation=relu, name=f"{name}_2")
    elif block == "bottleneck":
        width = int(filters * (base_width / 64.0)) * groups
        s1, s3 = (strides, 1) if stride_in_1x1 else (1, strides)
        x = conv_bn(x, width, 1, strides=s1, name=f"{name}_1")
        x = conv_bn(x, width, 3, strides=s3, groups=groups, name=f"{name}_2")
        if fused:
            x = fused_bottleneck_tail(
                x, out_channels, ratio=se_ratio, se_kwargs=se_kwargs, name=name
            )
        else:
            x = conv_bn(x, out_channels, 1, activation=None, name=f"{name}_3")
    else:
        raise ValueError(f"`block` must be 'basic' or 'bottleneck'. Received: block={block!r}")

    if se_mode == "standard" and not fused:
        x = squeeze_excite(x, **se)
    elif se_mode == "identity":
        shortcut = squeeze_excite(shortcut, **se)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    if se_mode == "post":
        x = squeeze_excite(x, **se)
    return x
