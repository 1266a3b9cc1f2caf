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

The public builders (`SEResNet20`, `ResNet20`, ...) are keras.applications-style functions
with keyword-only arguments: those of keras.applications (``classes`` 10, input 32x32),
``name`` (default: the registry name, ``"se_resnet20_cifar"``), ``se_ratio`` (16,
``DEFAULT_RATIO``; None for the plain twins), ``features_only``, ``se_mode``,
``se_kwargs`` and, for the wide ResNets, ``dropout`` (all as in `build_cifar_resnet`).

Layer names: ``conv1_conv``/``_bn``/``_relu`` (stem), ``conv{stage}_block{i}_...``
(stages 2, 3, 4 as in the ImageNet ResNets, so `keras_se.analysis` finds the stages),
``conv{stage}_block{i}_se``, ``post_bn``/``post_relu`` (pre-activation), ``avg_pool``
and ``predictions``.
"""

from __future__ import annotations

import functools

from keras_se.blocks import batch_norm, conv2d, conv_bn, preact_unit, residual_unit
from keras_se.models import common
from keras_se_core.choices import DEFAULT_RATIO
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
    se_ratio=DEFAULT_RATIO,
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
    app = common.application(locals(), default_size=DEFAULT_INPUT_SIZE)
    se_kwargs = common.check_se_args(se_ratio, se_mode, se_kwargs)
    common.check_stages(stackwise_num_blocks, stackwise_filters)
    check_choice("unit", unit, UNITS)
    check_number("dropout", dropout, minimum=0, maximum=1, inclusive=(True, False))
    if dropout and not (unit == "pre" and block == "basic"):
        raise ValueError(
            "`dropout` applies to pre-activation basic units (the wide ResNets) only. "
            f"Received: dropout={dropout!r} with unit={unit!r}, block={block!r}"
        )
    common.check_min_size(app.input_shape, MIN_INPUT_SIZE)

    img_input = common.make_input(app)
    se = dict(se_ratio=se_ratio, se_mode=se_mode, se_kwargs=se_kwargs)
    if unit == "pre":  # a bare conv: the first unit's BN-ReLU follows it
        x = conv2d(img_input, STEM_FILTERS, 3, name="conv1_conv")
        unit_fn = functools.partial(preact_unit, block=block, dropout=dropout, **se)
    else:
        x = conv_bn(img_input, STEM_FILTERS, 3, name="conv1")
        unit_fn = functools.partial(
            residual_unit, block=block, shortcut=shortcut, relu_before_se=False, **se
        )
    # keras-hub's pyramid_outputs: "P<k>" for the stage output at stride 2**k
    x, pyramid = common.stack_stages(
        x,
        unit_fn,
        stackwise_num_blocks=stackwise_num_blocks,
        stackwise_filters=stackwise_filters,
        first_level=0,
    )
    if unit == "pre":
        x = batch_norm(x, name="post_bn", activation="relu")
        pyramid[f"P{len(stackwise_num_blocks) - 1}"] = x
    return common.finish_model(x, img_input, app, pyramid=pyramid)


#: Registry rows: snake-case name → builder (`common.public_builder` adds each below).
BUILDERS = {}


def _build_architecture(arch, **kwargs):
    """`build_cifar_resnet` for one ``ARCHITECTURES`` row (the public builders' ``**locals()``)."""
    return build_cifar_resnet(**ARCHITECTURES[arch], **kwargs)


@common.public_builder(BUILDERS)
def SEResNet20(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="se_resnet20_cifar",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR SE-ResNet-20: basic units (3, 3, 3), option-A shortcuts.

    ``ResNet20`` is its plain twin, built by the same code.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> SEResNet20(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet20", **locals())


@common.public_builder(BUILDERS)
def SEResNet32(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="se_resnet32_cifar",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR SE-ResNet-32: basic units (5, 5, 5), option-A shortcuts.

    ``ResNet32`` is its plain twin, built by the same code.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> SEResNet32(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet32", **locals())


@common.public_builder(BUILDERS)
def SEResNet56(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="se_resnet56_cifar",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR SE-ResNet-56: basic units (9, 9, 9), option-A shortcuts.

    ``ResNet56`` is its plain twin, built by the same code.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> SEResNet56(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet56", **locals())


@common.public_builder(BUILDERS)
def SEResNet110(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="se_resnet110_cifar",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR SE-ResNet-110: basic units (18, 18, 18), option-A shortcuts.

    ``ResNet110`` is its plain twin, built by the same code.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> SEResNet110(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet110", **locals())


@common.public_builder(BUILDERS)
def SEResNet164(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="se_resnet164_cifar",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR SE-ResNet-164: pre-activation bottlenecks (18, 18, 18).

    ``ResNet164`` is its plain twin, built by the same code.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> SEResNet164(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet164", **locals())


@common.public_builder(BUILDERS)
def SEWideResNet16_8(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="se_wrn16_8",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard",
        se_kwargs=None, dropout=0.0):  # fmt: skip
    """CIFAR SE-WRN-16-8: pre-activation basic units of 128/256/512 channels.

    ``WideResNet16_8`` is its plain twin, built by the same code.
    ``dropout``: between the convs of each unit (the WRN paper uses 0.3).
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> SEWideResNet16_8(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("wrn16_8", **locals())


@common.public_builder(BUILDERS)
def ResNet20(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="resnet20_cifar",
        se_ratio=None, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR ResNet-20 (He et al., 2016), the plain twin of `SEResNet20`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> ResNet20(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet20", **locals())


@common.public_builder(BUILDERS)
def ResNet32(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="resnet32_cifar",
        se_ratio=None, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR ResNet-32, the plain twin of `SEResNet32`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> ResNet32(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet32", **locals())


@common.public_builder(BUILDERS)
def ResNet56(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="resnet56_cifar",
        se_ratio=None, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR ResNet-56, the plain twin of `SEResNet56`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> ResNet56(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet56", **locals())


@common.public_builder(BUILDERS)
def ResNet110(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="resnet110_cifar",
        se_ratio=None, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR ResNet-110, the plain twin of `SEResNet110`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> ResNet110(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet110", **locals())


@common.public_builder(BUILDERS)
def ResNet164(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="resnet164_cifar",
        se_ratio=None, features_only=False, se_mode="standard",
        se_kwargs=None):  # fmt: skip
    """CIFAR ResNet-164 (pre-activation), the plain twin of `SEResNet164`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> ResNet164(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("resnet164", **locals())


@common.public_builder(BUILDERS)
def WideResNet16_8(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=10, classifier_activation="softmax", name="wrn16_8",
        se_ratio=None, features_only=False, se_mode="standard",
        se_kwargs=None, dropout=0.0):  # fmt: skip
    """CIFAR WRN-16-8, the plain twin of `SEWideResNet16_8`.

    The same layers and names less the SE blocks.
    ``dropout``: between the convs of each unit (the WRN paper uses 0.3).
    Arguments: those of `build_cifar_resnet` (see the module docstring).

    Example:
        >>> WideResNet16_8(classes=100).output_shape
        (None, 100)
    """
    return _build_architecture("wrn16_8", **locals())
