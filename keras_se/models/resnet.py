"""SE-ResNet, SE-ResNeXt and SENet-154 (Hu et al., 2018, Section 4, Tables 1 and 2) and twins.

One generic builder, `build_resnet`, takes the architecture as data
(``stackwise_num_blocks``, block type, cardinality, stem, shortcut kernel); every
public model is a row of ``ARCHITECTURES`` plus the SE switch, so SE-ResNet-50 and
ResNet-50 differ only in their SE blocks. Parameter counts equal the reference PyTorch
models (timm ``legacy_se*`` converted from the authors' Caffe release, timm
``seresnext101_*`` and torchvision for the others): see ``tests/test_resnet.py``.

SENet-154 (the ILSVRC 2017 entry, timm ``legacy_senet154``) is a row too: a 3-conv stem
(3x3/2 64, 3x3 64, 3x3 128, then the max pool), 64-group bottlenecks whose first 1x1
conv has half the 3x3's width, 3x3/2 projection shortcuts after the first stage and
dropout 0.2 before the classifier. It has no plain twin (none was published).

The pretrained configurations of these architectures (``PRETRAINED``: timm's names,
key layout, preprocessing, release URL) sit beside them, as timm's ``default_cfgs`` do;
`keras_se.models.pretrained` resolves them.

The public builders (`SEResNet50`, `ResNet50`, ...) are keras.applications-style
functions with keyword-only arguments: those of keras.applications, ``name`` (default:
the registry name, ``"se_resnet50"``), ``se_ratio`` (16, ``DEFAULT_RATIO``; None for the
plain twins), ``features_only``, ``se_mode``, ``se_kwargs``, ``stem`` (all as in
`build_resnet`) and ``stride_in_1x1``/``stem_pool``: None takes the reference model's
choice, or what a timm ``weights`` file or named source needs.

Layer names follow keras.applications: ``conv1_conv`` (SENet-154: ``conv1_{1,2,3}_conv``),
``pool1_pool``, ``conv{stage}_block{i}_{1,2,3}_{conv,bn,relu}``, the shortcut
``..._0_conv``, the SE block ``conv{stage}_block{i}_se``, ``avg_pool``, ``top_dropout``
and ``predictions``.
"""

from __future__ import annotations

import functools

import keras

from keras_se.blocks import conv_bn, residual_unit
from keras_se.models import common
from keras_se.models.pretrained import (
    DEFAULT_PREPROCESSING,
    RELEASES,
    ReferenceSource,
    timm_preprocessing,
)
from keras_se_core.choices import DEFAULT_RATIO

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
    "resnext26_32x4d": dict(
        block="bottleneck",
        stackwise_num_blocks=(2, 2, 2, 2),
        groups=32,
        base_width=4,
        stride_in_1x1=False,
    ),
    # The wide ResNeXt-101s: timm's seresnext101_32x8d/64x4d and torchvision's/timm's
    # plain ones stride in the 3x3 conv and pad the stem pool (there is no Caffe release).
    "resnext101_32x8d": dict(
        block="bottleneck",
        stackwise_num_blocks=(3, 4, 23, 3),
        groups=32,
        base_width=8,
        stride_in_1x1=False,
        stem_pool="torch",
    ),
    "resnext101_64x4d": dict(
        block="bottleneck",
        stackwise_num_blocks=(3, 4, 23, 3),
        groups=64,
        base_width=4,
        stride_in_1x1=False,
        stem_pool="torch",
    ),
    # SENet-154 (timm legacy_senet154, from the authors' Caffe release).
    "senet154": dict(
        block="bottleneck",
        stackwise_num_blocks=(3, 8, 36, 3),
        groups=64,
        base_width=4,
        stride_in_1x1=False,
        first_width_ratio=0.5,
        deep_stem=True,
        shortcut_kernel_size=3,
        dropout=0.2,
    ),
}

_LEGACY = dict(layout="legacy", preprocessing=DEFAULT_PREPROCESSING)
#: Pretrained configurations (timm's tags) of the rows above; registered by keras_se.models.
PRETRAINED = (
    ReferenceSource("legacy_seresnet18.in1k", "se_resnet18", "legacy", timm_preprocessing(),
                    url=RELEASES + "v0.1-weights/seresnet18-4bb0ce65.pth"),
    ReferenceSource("legacy_seresnet34.in1k", "se_resnet34", **_LEGACY,
                    url=RELEASES + "v0.1-weights/seresnet34-a4004e63.pth"),
    ReferenceSource("legacy_seresnet50.in1k", "se_resnet50", **_LEGACY,
                    url=RELEASES + "v0.1-cadene/se_resnet50-ce0d4300.pth"),
    ReferenceSource("legacy_seresnet101.in1k", "se_resnet101", **_LEGACY,
                    url=RELEASES + "v0.1-cadene/se_resnet101-7e38fcc6.pth"),
    ReferenceSource("legacy_seresnet152.in1k", "se_resnet152", **_LEGACY,
                    url=RELEASES + "v0.1-cadene/se_resnet152-d17c99b7.pth"),
    ReferenceSource("legacy_seresnext26_32x4d.in1k", "se_resnext26_32x4d", "legacy",
                    timm_preprocessing(), groups=32,
                    url=RELEASES + "v0.1-weights/seresnext26_32x4d-65ebdb501.pth"),
    ReferenceSource("legacy_seresnext50_32x4d.in1k", "se_resnext50_32x4d", **_LEGACY, groups=32,
                    url=RELEASES + "v0.1-weights/legacy_se_resnext50_32x4d-f3651bad.pth"),
    ReferenceSource("legacy_seresnext101_32x4d.in1k", "se_resnext101_32x4d", **_LEGACY, groups=32,
                    url=RELEASES + "v0.1-weights/legacy_se_resnext101_32x4d-37725eac.pth"),
    ReferenceSource("legacy_senet154.in1k", "senet154", **_LEGACY, groups=64,
                    url=RELEASES + "v0.1-weights/legacy_senet154-e9eb9fe6.pth"),
    ReferenceSource("seresnet50.a1_in1k", "se_resnet50", "timm", timm_preprocessing(crop_pct=0.95)),
    ReferenceSource("seresnet50.a2_in1k", "se_resnet50", "timm", timm_preprocessing(crop_pct=0.95)),
    ReferenceSource("seresnet50.a3_in1k", "se_resnet50", "timm",
                    timm_preprocessing(160, crop_pct=0.95)),
    ReferenceSource("seresnet50.ra2_in1k", "se_resnet50", "timm", timm_preprocessing()),
    ReferenceSource("seresnext50_32x4d.racm_in1k", "se_resnext50_32x4d", "timm",
                    timm_preprocessing()),
    ReferenceSource("seresnext50_32x4d.gluon_in1k", "se_resnext50_32x4d", "timm",
                    timm_preprocessing()),
    ReferenceSource("seresnext101_32x4d.gluon_in1k", "se_resnext101_32x4d", "timm",
                    timm_preprocessing()),
    ReferenceSource("seresnext101_32x8d.ah_in1k", "se_resnext101_32x8d", "timm",
                    timm_preprocessing(crop_pct=0.95)),
    ReferenceSource("seresnext101_64x4d.gluon_in1k", "se_resnext101_64x4d", "timm",
                    timm_preprocessing()),
)  # fmt: skip

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
    first_width_ratio=1.0,
    deep_stem=False,
    shortcut_kernel_size=1,
    dropout=0.0,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="resnet",
    se_ratio=DEFAULT_RATIO,
    se_mode="standard",
    se_kwargs=None,
    stem=None,
    stem_pool="caffe",
    features_only=False,
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
        first_width_ratio: width of the bottleneck's first 1x1 conv as a fraction of
            its 3x3 conv's (SENet-154: 0.5).
        deep_stem: the ImageNet stem as three 3x3 convs (64/2, 64, 128: SENet-154)
            instead of one 7x7/2 conv with 64 channels.
        shortcut_kernel_size: kernel of the strided projection shortcuts (SENet-154: 3,
            padding 1); the first stage's projection is always 1x1.
        dropout: dropout rate before the classifier (``top_dropout``; SENet-154: 0.2).
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
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool, 32x downsampling) or
            ``"cifar"`` (3x3/1 conv, no pool, 8x downsampling). None picks ``"cifar"``
            when the input is smaller than 64 pixels on a side, else ``"imagenet"``.
        stem_pool: max pool of the ImageNet stem: ``"caffe"`` (ceil mode without padding,
            the Caffe release and timm ``legacy_*``) or ``"torch"`` (padding 1, torchvision
            and timm ``seresnet50``/``seresnext*``); they differ on even input sizes.
        features_only: return a feature extractor instead: a model over the same layers
            whose output is a dict of the four stage outputs ``conv{2..5}_block{n}_out``
            keyed by stride like keras-hub's ``pyramid_outputs``: ``"P2"`` ... ``"P5"``
            (strides 4 to 32) with the ImageNet stem, ``"P0"`` ... ``"P3"`` (strides 1
            to 8) with the CIFAR stem. The input defaults to ``(None, None, 3)``;
            ``pooling`` must be None; ``weights`` load first into the model that
            ``include_top`` describes (a file with the classifier: ``include_top=True``).

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> from keras_se.models import SEResNet50
        >>> backbone = SEResNet50(features_only=True)
        >>> {key: tuple(t.shape) for key, t in backbone.output.items()}["P5"]
        (None, None, None, 2048)
    """
    app = common.application(locals(), default_size=224)
    se_kwargs = common.check_se_args(se_ratio, se_mode, se_kwargs)
    if len(stackwise_num_blocks) > len(STAGE_FILTERS):
        raise ValueError(
            f"`stackwise_num_blocks` has at most {len(STAGE_FILTERS)} stages (of "
            f"{STAGE_FILTERS} channels). Received: stackwise_num_blocks={stackwise_num_blocks!r}"
        )
    stackwise_filters = STAGE_FILTERS[: len(stackwise_num_blocks)]
    common.check_stages(stackwise_num_blocks, stackwise_filters)
    stem = _check_stem(stem, stem_pool, app.input_shape)
    img_input = common.make_input(app)
    x = _stem(img_input, stem=stem, deep_stem=deep_stem, stem_pool=stem_pool)
    unit = functools.partial(
        residual_unit,
        block=block,
        groups=groups,
        base_width=base_width,
        stride_in_1x1=stride_in_1x1,
        first_width_ratio=first_width_ratio,
        shortcut_kernel_size=shortcut_kernel_size,
        se_ratio=se_ratio,
        se_mode=se_mode,
        se_kwargs=se_kwargs,
    )
    # keras-hub's pyramid_outputs: "P<k>" for the stage output at stride 2**k.
    x, pyramid = common.stack_stages(
        x,
        unit,
        stackwise_num_blocks=stackwise_num_blocks,
        stackwise_filters=stackwise_filters,
        first_level=2 if stem == "imagenet" else 0,
    )
    return common.finish_model(x, img_input, app, dropout=dropout, pyramid=pyramid)


def _check_stem(stem, stem_pool, input_shape):
    """The stem to build (None: the CIFAR one below `CIFAR_STEM_BELOW` pixels); checks the
    stem, its pool and the input size it needs."""
    if stem is not None and stem not in STEMS:
        raise ValueError(f"`stem` must be one of {STEMS} or None. Received: stem={stem!r}")
    if stem_pool not in STEM_POOLS:
        raise ValueError(
            f"`stem_pool` must be one of {STEM_POOLS}. Received: stem_pool={stem_pool!r}"
        )
    if stem is None:
        size = common.spatial_size(input_shape)
        stem = "cifar" if size is not None and size < CIFAR_STEM_BELOW else "imagenet"
    if stem == "imagenet":
        common.check_min_size(
            input_shape, 32, hint=" for stem='imagenet' (stem='cifar' works down to 8x8)"
        )
    else:
        common.check_min_size(input_shape, 8, hint=f" for stem={stem!r}")
    return stem


def _stem(img_input, *, stem, deep_stem, stem_pool):
    """``conv1`` (+ ``pool1_pool``): the ImageNet stem (stride 4) or the CIFAR one (stride 1)."""
    if stem == "cifar":
        return conv_bn(img_input, 64, 3, name="conv1")
    if deep_stem:
        x = conv_bn(img_input, 64, 3, strides=2, name="conv1_1")
        x = conv_bn(x, 64, 3, name="conv1_2")
        x = conv_bn(x, 128, 3, name="conv1_3")
    else:
        x = conv_bn(img_input, 64, 7, strides=2, name="conv1")
    if stem_pool == "caffe":
        # Caffe's ceil-mode 3x3/2 pooling; equals Keras "same" pooling on even sizes.
        return keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
    # torchvision's MaxPool2d(3, 2, padding=1); zeros pad like -inf after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


#: Registry rows: snake-case name → builder (`common.public_builder` adds each below).
BUILDERS = {}


def _build_architecture(arch, *, weights, stride_in_1x1, stem_pool, **kwargs):
    """`build_resnet` for one ``ARCHITECTURES`` row; None options take the reference default.

    The public builders call it with ``**locals()``: a builder's body is this one call,
    so its locals are exactly its arguments.
    """
    spec = dict(ARCHITECTURES[arch])
    # None: the reference default, or what a timm weights file/source needs.
    reference = {
        "stride_in_1x1": spec.pop("stride_in_1x1", True),
        "stem_pool": spec.pop("stem_pool", "caffe"),
    }
    reference.update(common.weights_architecture(weights))
    return build_resnet(
        **spec,
        stride_in_1x1=reference["stride_in_1x1"] if stride_in_1x1 is None else stride_in_1x1,
        stem_pool=reference["stem_pool"] if stem_pool is None else stem_pool,
        weights=weights,
        **kwargs,
    )


@common.public_builder(BUILDERS)
def SEResNet18(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnet18",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNet-18: basic units, stages (2, 2, 2, 2).

    ``ResNet18`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNet18(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnet18", **locals())


@common.public_builder(BUILDERS)
def SEResNet34(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnet34",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNet-34: basic units, stages (3, 4, 6, 3).

    ``ResNet34`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNet34(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnet34", **locals())


@common.public_builder(BUILDERS)
def SEResNet50(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnet50",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNet-50 (paper Table 1): bottlenecks, stages (3, 4, 6, 3).

    ``ResNet50`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNet50(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnet50", **locals())


@common.public_builder(BUILDERS)
def SEResNet101(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnet101",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNet-101: bottlenecks, stages (3, 4, 23, 3).

    ``ResNet101`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNet101(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnet101", **locals())


@common.public_builder(BUILDERS)
def SEResNet152(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnet152",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNet-152: bottlenecks, stages (3, 8, 36, 3).

    ``ResNet152`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNet152(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnet152", **locals())


@common.public_builder(BUILDERS)
def SEResNeXt50(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnext50_32x4d",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNeXt-50 32x4d (paper Table 1): stages (3, 4, 6, 3).

    ``ResNeXt50`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNeXt50(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnext50_32x4d", **locals())


@common.public_builder(BUILDERS)
def SEResNeXt101(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnext101_32x4d",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNeXt-101 32x4d: stages (3, 4, 23, 3).

    ``ResNeXt101`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNeXt101(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnext101_32x4d", **locals())


@common.public_builder(BUILDERS)
def SEResNeXt26(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnext26_32x4d",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNeXt-26 32x4d: stages (2, 2, 2, 2).

    No plain twin was published; ``se_ratio=None`` builds one.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNeXt26(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnext26_32x4d", **locals())


@common.public_builder(BUILDERS)
def SEResNeXt101_32x8d(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnext101_32x8d",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNeXt-101 32x8d (timm's): stages (3, 4, 23, 3).

    ``ResNeXt101_32x8d`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNeXt101_32x8d(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnext101_32x8d", **locals())


@common.public_builder(BUILDERS)
def SEResNeXt101_64x4d(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="se_resnext101_64x4d",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SE-ResNeXt-101 64x4d (timm's): stages (3, 4, 23, 3).

    ``ResNeXt101_64x4d`` is its plain twin, built by the same code.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SEResNeXt101_64x4d(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("resnext101_64x4d", **locals())


@common.public_builder(BUILDERS)
def SENet154(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="senet154",
        se_ratio=DEFAULT_RATIO, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """SENet-154 (ILSVRC 2017): 64-group bottlenecks, stages (3, 8, 36, 3).

    No plain twin was published; ``se_ratio=None`` builds one.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> SENet154(input_shape=(32, 32, 3), classes=10).output_shape  # CIFAR stem
        (None, 10)
    """
    return _build_architecture("senet154", **locals())


@common.public_builder(BUILDERS)
def ResNet18(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnet18",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNet-18, the plain twin of `SEResNet18`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNet18(include_top=False, pooling="avg").output_shape
        (None, 512)
    """
    return _build_architecture("resnet18", **locals())


@common.public_builder(BUILDERS)
def ResNet34(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnet34",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNet-34, the plain twin of `SEResNet34`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNet34(include_top=False, pooling="avg").output_shape
        (None, 512)
    """
    return _build_architecture("resnet34", **locals())


@common.public_builder(BUILDERS)
def ResNet50(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnet50",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNet-50, the plain twin of `SEResNet50`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNet50(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnet50", **locals())


@common.public_builder(BUILDERS)
def ResNet101(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnet101",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNet-101, the plain twin of `SEResNet101`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNet101(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnet101", **locals())


@common.public_builder(BUILDERS)
def ResNet152(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnet152",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNet-152, the plain twin of `SEResNet152`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNet152(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnet152", **locals())


@common.public_builder(BUILDERS)
def ResNeXt50(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnext50_32x4d",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNeXt-50 32x4d, the plain twin of `SEResNeXt50`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNeXt50(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnext50_32x4d", **locals())


@common.public_builder(BUILDERS)
def ResNeXt101(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnext101_32x4d",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNeXt-101 32x4d, the plain twin of `SEResNeXt101`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNeXt101(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnext101_32x4d", **locals())


@common.public_builder(BUILDERS)
def ResNeXt101_32x8d(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnext101_32x8d",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNeXt-101 32x8d, the plain twin of `SEResNeXt101_32x8d`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNeXt101_32x8d(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnext101_32x8d", **locals())


@common.public_builder(BUILDERS)
def ResNeXt101_64x4d(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax", name="resnext101_64x4d",
        se_ratio=None, features_only=False, se_mode="standard", se_kwargs=None,
        stride_in_1x1=None, stem=None, stem_pool=None):  # fmt: skip
    """ResNeXt-101 64x4d, the plain twin of `SEResNeXt101_64x4d`.

    The same layers and names less the SE blocks.
    Arguments: those of `build_resnet` (see the module docstring).

    Example:
        >>> ResNeXt101_64x4d(include_top=False, pooling="avg").output_shape
        (None, 2048)
    """
    return _build_architecture("resnext101_64x4d", **locals())
