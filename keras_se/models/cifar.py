"""CIFAR SE-ResNets and SE-WRN (Hu et al., 2018, Section 6.1, Table 4) and their plain twins.

The networks of the paper's CIFAR table, written as data (``ARCHITECTURES``) and built
by one function, `build_cifar_resnet`:

* ResNet-20/32/56/110 (He et al., 2016, Section 4.2): a 3x3 stem with 16 channels and
  no max pool, three stages of 16/32/64 channels with n post-activation basic units
  each (6n + 2 layers), global average pooling and the classifier.
* ResNet-164 (He et al., "Identity Mappings", 2016): 18 pre-activation bottleneck units
  per stage (9n + 2 layers), output channels 64/128/256, a final BN-ReLU.
* WRN-16-8 (Zagoruyko & Komodakis, 2016): two pre-activation basic units per stage of
  128/256/512 channels (16 x 8, 32 x 8, 64 x 8), optional dropout between their convs.

The SE block sits on every residual branch (``se_mode``, paper Fig. 5), with the
reduction ratio ``se_ratio`` (16).

Shortcuts. The basic-unit ResNets use option A of He et al. (2016): when a unit halves
the resolution and doubles the width, the shortcut is the subsampled identity padded
with zero channels (`keras_se.blocks.ZeroPadShortcut`), which has no parameters. That
is the shortcut He et al. use for these CIFAR networks, it gives the published sizes
(ResNet-20: 269,722 parameters for 10 classes, 0.27M in He et al., Table 6) and keeps
the SE blocks the only difference between a model and its twin. ResNet-164 and WRN-16-8
use 1x1 projection convolutions (option B, no BN, on the pre-activated input), as the
authors' pre-activation code does: their first unit widens 16 channels to 64 (128),
where zero padding would leave most of the shortcut empty.

He et al.'s CIFAR training recipe is ``keras-se train --recipe cifar``
(`keras_se_core.choices.RECIPES`: models know nothing of training).

Layer names: ``conv1_conv``/``_bn``/``_relu`` (stem), ``conv{stage}_block{i}_...``
(stages 2, 3, 4 as in the ImageNet ResNets, so `keras_se.analysis` finds the stages),
``conv{stage}_block{i}_se``, ``post_bn``/``post_relu`` (pre-activation), ``avg_pool``
and ``predictions``.
"""

from __future__ import annotations

import functools

from keras_se.blocks import batch_norm, conv2d, conv_bn, preact_unit, residual_unit
from keras_se.models import common
from keras_se_core.validation import check_choice, check_number

#: Architectures as data: unit type, units per stage, stage widths (the unit's
#: ``filters``: a bottleneck's outputs are 4x), shortcut, and for WRN the dropout.
ARCHITECTURES = {
    **{
        f"resnet{6 * n + 2}": dict(
            unit="post", block="basic", stackwise_num_blocks=(n, n, n),
            stackwise_filters=(16, 32, 64), shortcut="zero_pad",
        )
        for n in (3, 5, 9, 18)
    },
    "resnet164": dict(
        unit="pre", block="bottleneck", stackwise_num_blocks=(18, 18, 18),
        stackwise_filters=(16, 32, 64),
    ),
    "wrn16_8": dict(
        unit="pre", block="basic", stackwise_num_blocks=(2, 2, 2),
        stackwise_filters=(128, 256, 512),
    ),
}  # fmt: skip

UNITS = ("post", "pre")
STEM_FILTERS = 16
DEFAULT_INPUT_SIZE = 32
#: Three stages, two of them strided: the spatial size must survive 4x downsampling.
MIN_INPUT_SIZE = 4


def build_cifar_resnet(
    *,
    stackwise_num_blocks,
    stackwise_filters=(16, 32, 64),
    unit="post",
    block="basic",
    shortcut="zero_pad",
    dropout=0.0,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    name="cifar_resnet",
    se_ratio=16,
    se_mode="standard",
    se_kwargs=None,
    features_only=False,
):
    """Builds a CIFAR (SE-)ResNet or (SE-)WRN from its architecture description.

    Args:
        stackwise_num_blocks: units per stage, e.g. ``(3, 3, 3)`` for ResNet-20.
        stackwise_filters: the units' ``filters`` per stage (bottleneck outputs are 4x).
        unit: ``"post"`` (`keras_se.blocks.residual_unit`, He et al. 2016) or ``"pre"``
            (`keras_se.blocks.preact_unit`, "Identity Mappings").
        block: ``"basic"`` or ``"bottleneck"``.
        shortcut: post-activation units only: ``"zero_pad"`` (option A) or
            ``"projection"`` (option B: 1x1 conv + BN). Pre-activation units always
            project with a 1x1 conv (no BN).
        dropout: pre-activation basic units: dropout between the two convs (WRN: 0.3).
        include_top: add ``avg_pool`` + the ``predictions`` Dense layer.
        weights: None or a Keras weights file (``.weights.h5``/``.keras``).
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional ``(H, W, C)`` (``(C, H, W)`` for channels_first).
            Default ``(32, 32, 3)`` with the top, ``(None, None, 3)`` without.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classes: number of classes of the top (default 10: CIFAR-10).
        classifier_activation: activation of ``predictions`` (None → logits).
        name: model name.
        se_ratio: SE reduction ratio ``r``; None builds the plain network.
        se_mode: ``"standard"``, ``"pre"``, ``"post"`` or ``"identity"`` (paper Fig. 5).
        se_kwargs: extra `SqueezeExcite` arguments (``squeeze``, ``gate``, ``use_bias``...).
        features_only: return a feature extractor instead: a model over the same layers
            whose output is a dict of the three stage outputs keyed by stride like
            keras-hub's ``pyramid_outputs``: ``"P0"``, ``"P1"``, ``"P2"`` (strides 1, 2,
            4; pre-activation models: the last after ``post_bn``). The input defaults to
            ``(None, None, 3)``; ``pooling`` must be None; ``weights`` load first into
            the model that ``include_top`` describes.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> model = build_cifar_resnet(stackwise_num_blocks=(3, 3, 3), se_ratio=None)
        >>> sum(int(w.numpy().size) for w in model.trainable_weights)  # ResNet-20, option A
        269722
    """
    common.check_application_args(
        include_top=include_top,
        weights=weights,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        features_only=features_only,
    )
    se_kwargs = common.check_se_args(se_ratio, se_mode, se_kwargs)
    check_choice("unit", unit, UNITS)
    check_number("dropout", dropout, minimum=0, maximum=1, inclusive=(True, False))
    if dropout and not (unit == "pre" and block == "basic"):
        raise ValueError(
            "`dropout` applies to pre-activation basic units (the wide ResNets) only. "
            f"Received: dropout={dropout!r} with unit={unit!r}, block={block!r}"
        )
    if len(stackwise_filters) != len(stackwise_num_blocks):
        raise ValueError(
            "`stackwise_filters` needs one width per stage of `stackwise_num_blocks`. "
            f"Received: stackwise_filters={stackwise_filters!r}, "
            f"stackwise_num_blocks={stackwise_num_blocks!r}"
        )
    input_shape = common.resolve_input_shape(
        input_shape,
        input_tensor,
        default_size=DEFAULT_INPUT_SIZE,
        include_top=include_top and not features_only,
    )
    common.check_min_size(input_shape, MIN_INPUT_SIZE)

    img_input = common.make_input(input_shape, input_tensor)
    if unit == "pre":  # a bare conv: the first unit's BN-ReLU follows it
        x = conv2d(img_input, STEM_FILTERS, 3, name="conv1_conv")
    else:
        x = conv_bn(img_input, STEM_FILTERS, 3, name="conv1")
    se = dict(se_ratio=se_ratio, se_mode=se_mode, se_kwargs=se_kwargs)
    pyramid = {}  # keras-hub's pyramid_outputs: "P<k>" for the stage output at stride 2**k
    for stage, (num_blocks, filters) in enumerate(zip(stackwise_num_blocks, stackwise_filters)):
        for index in range(num_blocks):
            strides = 2 if (index == 0 and stage > 0) else 1
            unit_name = f"conv{stage + 2}_block{index + 1}"
            if unit == "post":
                x = residual_unit(
                    x, filters, name=unit_name, block=block, strides=strides,
                    shortcut=shortcut, relu_before_se=False, **se,
                )  # fmt: skip
            else:
                x = preact_unit(
                    x, filters, name=unit_name, block=block, strides=strides,
                    dropout=dropout, **se,
                )  # fmt: skip
        pyramid[f"P{stage}"] = x
    if unit == "pre":
        x = batch_norm(x, name="post_bn", activation="relu")
        pyramid[f"P{len(stackwise_num_blocks) - 1}"] = x

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
        features_only=features_only,
        pyramid=pyramid,
    )


def _build_architecture(arch, **kwargs):
    """`build_cifar_resnet` for one ``ARCHITECTURES`` row."""
    return build_cifar_resnet(**ARCHITECTURES[arch], **kwargs)


_TITLES = {
    "wrn16_8": "WRN-16-8 (pre-activation basic units, 128/256/512 channels)",
    "resnet164": "ResNet-164 (pre-activation bottlenecks, 64/128/256 output channels)",
}


def _builder(arch, *, se, public_name, model_name):
    """Makes the public builder for one architecture row, SE on or off."""
    spec = ARCHITECTURES[arch]
    title = _TITLES.get(arch, f"ResNet-{arch[len('resnet') :]} (basic units, option-A shortcuts)")
    twin = public_name[2:] if se else "SE" + public_name
    options = dict(se_mode="standard", se_kwargs=None)
    if spec["unit"] == "pre" and spec["block"] == "basic":
        options["dropout"] = 0.0
    doc = f"""Builds the CIFAR {"SE-" if se else "plain "}{title}.

    keras.applications signature (default ``classes=10``, input ``(32, 32, 3)``) plus
    the SE options (``se_ratio``, default {16 if se else None}; ``se_mode``; ``se_kwargs``)
    {"and ``dropout`` between the convs of each unit (the WRN paper uses 0.3)" if "dropout" in options else ""};
    ``{twin}`` is its {"plain" if se else "SE"} twin, built by the same code. All
    arguments are keyword-only and documented in
    `keras_se.models.cifar.build_cifar_resnet`.

    Example:
        >>> from keras_se.models import {public_name}
        >>> model = {public_name}(classes=10)
        >>> model.output_shape
        (None, 10)
    """
    return common.make_builder(
        functools.partial(_build_architecture, arch),
        public_name=public_name,
        model_name=model_name,
        se=se,
        options=options,
        doc=doc,
        defaults_override=dict(classes=10),  # CIFAR-10; the input defaults to 32x32 in the builder
    )


SEResNet20 = _builder("resnet20", se=True, public_name="SEResNet20", model_name="se_resnet20_cifar")
SEResNet32 = _builder("resnet32", se=True, public_name="SEResNet32", model_name="se_resnet32_cifar")
SEResNet56 = _builder("resnet56", se=True, public_name="SEResNet56", model_name="se_resnet56_cifar")
SEResNet110 = _builder(
    "resnet110", se=True, public_name="SEResNet110", model_name="se_resnet110_cifar"
)
SEResNet164 = _builder(
    "resnet164", se=True, public_name="SEResNet164", model_name="se_resnet164_cifar"
)
SEWideResNet16_8 = _builder(
    "wrn16_8", se=True, public_name="SEWideResNet16_8", model_name="se_wrn16_8"
)
ResNet20 = _builder("resnet20", se=False, public_name="ResNet20", model_name="resnet20_cifar")
ResNet32 = _builder("resnet32", se=False, public_name="ResNet32", model_name="resnet32_cifar")
ResNet56 = _builder("resnet56", se=False, public_name="ResNet56", model_name="resnet56_cifar")
ResNet110 = _builder("resnet110", se=False, public_name="ResNet110", model_name="resnet110_cifar")
ResNet164 = _builder("resnet164", se=False, public_name="ResNet164", model_name="resnet164_cifar")
WideResNet16_8 = _builder("wrn16_8", se=False, public_name="WideResNet16_8", model_name="wrn16_8")

#: Registry rows: snake-case name → builder.
BUILDERS = {
    fn.registry_name: fn
    for fn in (
        SEResNet20,
        SEResNet32,
        SEResNet56,
        SEResNet110,
        SEResNet164,
        SEWideResNet16_8,
        ResNet20,
        ResNet32,
        ResNet56,
        ResNet110,
        ResNet164,
        WideResNet16_8,
    )
}
