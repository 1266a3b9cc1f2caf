"""SE-ResNet and SE-ResNeXt (Hu et al., 2018, Section 4, Table 1) and their plain twins.

One generic builder, `build_resnet`, takes the architecture as data
(``stackwise_num_blocks``, block type, cardinality); every public model is a row
of ``ARCHITECTURES`` plus the SE switch, so SE-ResNet-50 and ResNet-50 differ only
in their SE blocks. Parameter counts equal the reference PyTorch models (timm
``legacy_se*`` converted from the authors' Caffe release, torchvision for the plain
models): see ``tests/test_resnet.py`` for the asserted numbers.

Layer names follow keras.applications: ``conv1_conv``, ``pool1_pool``,
``conv{stage}_block{i}_{1,2,3}_{conv,bn,relu}``, the shortcut ``..._0_conv``,
the SE block ``conv{stage}_block{i}_se``, ``avg_pool`` and ``predictions``.
"""

from __future__ import annotations

import functools

import keras

from keras_se.blocks import conv_bn, residual_unit
from keras_se.models import common

#: Architectures as data: block type, units per stage, cardinality, width per group,
#: and where the reference puts the stride of a downsampling bottleneck.
ARCHITECTURES = {
    "resnet18": dict(block="basic", stackwise_num_blocks=(2, 2, 2, 2)),
    "resnet34": dict(block="basic", stackwise_num_blocks=(3, 4, 6, 3)),
    "resnet50": dict(block="bottleneck", stackwise_num_blocks=(3, 4, 6, 3)),
    "resnet101": dict(block="bottleneck", stackwise_num_blocks=(3, 4, 23, 3)),
    "resnet152": dict(block="bottleneck", stackwise_num_blocks=(3, 8, 36, 3)),
    # The reference SE-ResNeXt (Caffe release → Cadene → timm legacy_seresnext*) strides
    # in the grouped 3x3 conv, unlike SE-ResNet; the default follows the reference.
    "resnext50_32x4d": dict(
        block="bottleneck",
        stackwise_num_blocks=(3, 4, 6, 3),
        groups=32,
        base_width=4,
        stride_in_1x1=False,
    ),
    "resnext101_32x4d": dict(
        block="bottleneck",
        stackwise_num_blocks=(3, 4, 23, 3),
        groups=32,
        base_width=4,
        stride_in_1x1=False,
    ),
}

STEMS = ("imagenet", "cifar")
#: Stem max pool: Caffe/legacy timm (ceil mode, unpadded) or torchvision/timm (padding 1).
STEM_POOLS = ("caffe", "torch")
STAGE_FILTERS = (64, 128, 256, 512)
#: Inputs smaller than this (on their smaller side) get the CIFAR stem by default.
CIFAR_STEM_BELOW = 64


def build_resnet(
    *,
    stackwise_num_blocks,
    block="bottleneck",
    groups=1,
    base_width=64,
    stride_in_1x1=True,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet",
    se_ratio=16,
    se_mode="standard",
    se_kwargs=None,
    se_fused=True,
    stem=None,
    stem_pool="caffe",
):
    """Builds a (SE-)ResNet / (SE-)ResNeXt from its architecture description.

    Args:
        stackwise_num_blocks: units per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        block: ``"basic"`` or ``"bottleneck"``.
        groups: cardinality of the bottleneck 3x3 conv (ResNeXt: 32).
        base_width: width per group (ResNeXt 32x4d: 4; ResNet: 64).
        stride_in_1x1: stride in the first 1x1 conv of a downsampling bottleneck
            (original Caffe SENet/ResNet, the default for SE-ResNet) rather than in
            the 3x3 conv (torchvision "v1.5", timm ``seresnet50``).
        include_top: add ``avg_pool`` + the ``predictions`` Dense layer.
        weights: None, a Keras weights file (``.weights.h5``/``.keras``), a timm state
            dict (``.safetensors``/``.pth``/``.bin``) or a named source such as
            ``"timm/legacy_seresnet50.in1k"`` (downloaded; see `keras_se.weights`).
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional ``(H, W, C)`` (``(C, H, W)`` for channels_first).
            Default ``(224, 224, 3)`` with the top, ``(None, None, 3)`` without.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classes: number of classes of the top.
        classifier_activation: activation of ``predictions`` (None → logits).
        name: model name.
        se_ratio: SE reduction ratio ``r``; None builds the plain network.
        se_mode: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` (paper Fig. 5).
        se_kwargs: extra `SqueezeExcite` arguments (``squeeze``, ``gate``, ``use_bias``...).
        se_fused: compute each bottleneck's ``conv → BN → SE`` tail with the fused
            `keras_se.blocks.fused_bottleneck_tail` (default; same outputs and weights, no
            ``..._3_bn`` layer: its variables live in the `BatchNormSqueezeExcite`
            ``..._se`` layer). False builds the textbook graph. Only the standard
            placement with the average squeeze is fused; basic blocks never are (the
            reference has a ReLU between their BN and SE).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool, 32x downsampling) or
            ``"cifar"`` (3x3/1 conv, no pool, 8x downsampling). None picks ``"cifar"``
            when the input is smaller than 64 pixels on a side, else ``"imagenet"``.
        stem_pool: max pool of the ImageNet stem: ``"caffe"`` (ceil mode without padding,
            the Caffe release and timm ``legacy_*``) or ``"torch"`` (padding 1, torchvision
            and timm ``seresnet50``/``seresnext*``); they differ on even input sizes.

    Returns:
        A functional ``keras.Model``.
    """
    common.check_application_args(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    se_kwargs = common.check_se_args(se_ratio, se_mode, se_kwargs)
    if stem is not None and stem not in STEMS:
        raise ValueError(f"`stem` must be one of {STEMS} or None. Received: stem={stem!r}")
    if stem_pool not in STEM_POOLS:
        raise ValueError(
            f"`stem_pool` must be one of {STEM_POOLS}. Received: stem_pool={stem_pool!r}"
        )
    input_shape = common.resolve_input_shape(
        input_shape, input_tensor, default_size=224, include_top=include_top
    )
    if stem is None:
        size = common.spatial_size(input_shape)
        stem = "cifar" if size is not None and size < CIFAR_STEM_BELOW else "imagenet"
    common.check_min_size(input_shape, 32 if stem == "imagenet" else 8)

    img_input = common.make_input(input_shape, input_tensor)
    if stem == "imagenet":
        x = conv_bn(img_input, 64, 7, strides=2, name="conv1")
        if stem_pool == "caffe":
            # Caffe's ceil-mode 3x3/2 pooling; equals Keras "same" pooling on even sizes.
            x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
        else:
            # torchvision's MaxPool2d(3, 2, padding=1); zeros pad like -inf after the ReLU.
            x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
            x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    else:
        x = conv_bn(img_input, 64, 3, name="conv1")

    for stage, num_blocks in enumerate(stackwise_num_blocks):
        for index in range(num_blocks):
            x = residual_unit(
                x,
                STAGE_FILTERS[stage],
                name=f"conv{stage + 2}_block{index + 1}",
                block=block,
                strides=2 if (index == 0 and stage > 0) else 1,
                groups=groups,
                base_width=base_width,
                stride_in_1x1=stride_in_1x1,
                se_ratio=se_ratio,
                se_mode=se_mode,
                se_kwargs=se_kwargs,
                se_fused=se_fused,
            )

    return common.finish_model(
        x,
        img_input,
        input_tensor,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        weights=weights,
        name=name,
    )


def _build_architecture(arch, *, weights, stride_in_1x1, stem_pool, **kwargs):
    """`build_resnet` for one ``ARCHITECTURES`` row; None options take the reference default."""
    spec = ARCHITECTURES[arch]
    # None: the reference default, or what a timm weights file/source needs.
    reference = {"stride_in_1x1": spec.get("stride_in_1x1", True), "stem_pool": "caffe"}
    reference.update(common.weights_architecture(weights))
    return build_resnet(
        stackwise_num_blocks=spec["stackwise_num_blocks"],
        block=spec["block"],
        groups=spec.get("groups", 1),
        base_width=spec.get("base_width", 64),
        stride_in_1x1=reference["stride_in_1x1"] if stride_in_1x1 is None else stride_in_1x1,
        stem_pool=reference["stem_pool"] if stem_pool is None else stem_pool,
        weights=weights,
        **kwargs,
    )


#: The ResNet family's options beyond the keras.applications arguments.
OPTIONS = dict(
    se_mode="standard",
    se_kwargs=None,
    se_fused=True,
    stride_in_1x1=None,
    stem=None,
    stem_pool=None,
)


def _builder(arch, *, se, public_name, model_name):
    """Makes the public builder for one architecture row, SE on or off."""
    spec = ARCHITECTURES[arch]
    default_ratio = 16 if se else None
    kind = "SE-" if se else "plain "
    twin = public_name[2:] if se else "SE" + public_name
    doc = f"""Builds {kind}{arch} ({spec["block"]} units, stages {spec["stackwise_num_blocks"]}).

    keras.applications signature plus the SE options; ``{twin}`` is its
    {"plain" if se else "SE"} twin, built by the same code. All arguments are
    keyword-only and documented in `keras_se.models.resnet.build_resnet`; the
    default ``se_ratio`` is {default_ratio}; ``stride_in_1x1`` (None) defaults to
    {spec.get("stride_in_1x1", True)} as in the reference model and ``stem_pool`` to ``"caffe"``,
    unless ``weights`` is a timm (non-legacy) file or source, which sets ``False``/``"torch"``.

    Example:
        >>> from keras_se.models import {public_name}
        >>> model = {public_name}(input_shape=(32, 32, 3), classes=10)  # CIFAR stem
        >>> model.output_shape
        (None, 10)
    """
    return common.make_builder(
        functools.partial(_build_architecture, arch),
        public_name=public_name,
        model_name=model_name,
        se=se,
        options=OPTIONS,
        doc=doc,
    )


SEResNet18 = _builder("resnet18", se=True, public_name="SEResNet18", model_name="se_resnet18")
SEResNet34 = _builder("resnet34", se=True, public_name="SEResNet34", model_name="se_resnet34")
SEResNet50 = _builder("resnet50", se=True, public_name="SEResNet50", model_name="se_resnet50")
SEResNet101 = _builder("resnet101", se=True, public_name="SEResNet101", model_name="se_resnet101")
SEResNet152 = _builder("resnet152", se=True, public_name="SEResNet152", model_name="se_resnet152")
SEResNeXt50 = _builder(
    "resnext50_32x4d", se=True, public_name="SEResNeXt50", model_name="se_resnext50_32x4d"
)
SEResNeXt101 = _builder(
    "resnext101_32x4d", se=True, public_name="SEResNeXt101", model_name="se_resnext101_32x4d"
)
ResNet18 = _builder("resnet18", se=False, public_name="ResNet18", model_name="resnet18")
ResNet34 = _builder("resnet34", se=False, public_name="ResNet34", model_name="resnet34")
ResNet50 = _builder("resnet50", se=False, public_name="ResNet50", model_name="resnet50")
ResNet101 = _builder("resnet101", se=False, public_name="ResNet101", model_name="resnet101")
ResNet152 = _builder("resnet152", se=False, public_name="ResNet152", model_name="resnet152")
ResNeXt50 = _builder(
    "resnext50_32x4d", se=False, public_name="ResNeXt50", model_name="resnext50_32x4d"
)
ResNeXt101 = _builder(
    "resnext101_32x4d", se=False, public_name="ResNeXt101", model_name="resnext101_32x4d"
)

#: Registry rows: snake-case name → builder.
BUILDERS = {
    fn.registry_name: fn
    for fn in (
        SEResNet18,
        SEResNet34,
        SEResNet50,
        SEResNet101,
        SEResNet152,
        SEResNeXt50,
        SEResNeXt101,
        ResNet18,
        ResNet34,
        ResNet50,
        ResNet101,
        ResNet152,
        ResNeXt50,
        ResNeXt101,
    )
}
