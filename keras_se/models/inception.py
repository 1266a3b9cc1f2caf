"""SE-Inception-v3 and SE-Inception-ResNet-v2 (Hu et al., 2018) and their plain twins.

* SE-Inception-v3 (the paper's SE-Inception module): an SE block on the output of every
  Inception module, the eleven concatenations ``mixed0`` ... ``mixed10``; the SE layer
  is ``{module}_se``.
* SE-Inception-ResNet-v2 (the paper's SE-ResNet module on Inception-ResNet units): an
  SE block on the residual branch, after its 1x1 "up" convolution
  (``block35_1_conv``) and before the scaling and the addition; the SE layer is
  ``{block}_se`` (``block35_1_se`` ... ``block8_10_se``, 40 blocks). The stem and the
  reduction modules (``mixed_5b``, ``mixed_6a``, ``mixed_7a``) carry none.

The topologies are those of ``keras.applications.InceptionV3`` and
``keras.applications.InceptionResNetV2``, written as data: a module is a tuple of
branches, a branch a sequence of steps (`Conv`, a pooling, a `Split`). The plain twins
have exactly the parameters of the keras.applications models, in the same layer order
and with the same layer names, so the weights of those models transfer (a weights file
saved from one, ``weights="x.weights.h5"``, or ``get_layer(name).set_weights(...)``)
and give the same outputs. keras.applications leaves most layers unnamed (``conv2d_17``,
``batch_normalization_17``, ``activation_17``...): here each gets that name explicitly,
numbered by the model's own counter (`AutoNames`) as Keras numbers the layers of a freshly
cleared session, so every model built in a process gets the same names whatever was built
before. Keras's own counters are left alone: a layer added later without a name may get
one of these names (``conv2d`` in a fresh session), which a functional model refuses
("used 2 times"); name the layers you add on top (``keras.layers.Conv2D(8, 1,
name="head_conv")``). A keras.applications model built in the same session after others
gets shifted names (``conv2d_94``...): build it first, or transfer through a weights file,
which Keras matches by layer order.

The public builders (`SEInceptionV3`, `InceptionV3`, `SEInceptionResNetV2`,
`InceptionResNetV2`) are keras.applications-style functions with keyword-only arguments:
those of keras.applications, ``name`` (default: the registry name), ``se_ratio`` (16,
``DEFAULT_RATIO``; None for the plain twins), ``features_only`` and ``se_kwargs`` (as in
`build_inception_v3`). Inputs must be at least 75x75.

Only ``keras`` and ``keras.ops`` are used (no Lambda layer: the residual scaling is the
serializable `ScaledResidual` layer).
"""

from __future__ import annotations

import collections

import keras

from keras_se.blocks import channel_axis, squeeze_excite
from keras_se.models import common
from keras_se_core.choices import DEFAULT_RATIO

#: Smallest input side the Inception topologies accept (as in keras.applications).
MIN_INPUT_SIZE = 75
DEFAULT_INPUT_SIZE = 299


@keras.saving.register_keras_serializable(package="keras_se")
class ScaledResidual(keras.layers.Layer):
    """``shortcut + scale * residual``: the scaled addition of Inception-ResNet units.

    Replaces keras.applications' unregistered ``CustomScaleLayer`` so that models save
    and load with ``safe_mode=True``; computes exactly the same expression.

    Args:
        scale: the residual scaling factor (Inception-ResNet-v2: 0.17, 0.1, 0.2).
        **kwargs: standard layer arguments.

    Call:
        ``layer([shortcut, residual])``, two tensors of the same shape.

    Example:
        >>> import numpy as np
        >>> layer = ScaledResidual(0.5)
        >>> float(layer([np.ones((1, 2), "float32"), np.ones((1, 2), "float32")])[0, 0])
        1.5
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs):
        shortcut, residual = inputs
        return shortcut + residual * self.scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


class AutoNames:
    """Keras's automatic layer names (``conv2d``, ``conv2d_1``...) from the model's own counter.

    Keras names an unnamed layer from a process-wide counter per prefix, so the names
    keras.applications gives depend on what was built before. These are the names of a
    freshly cleared session, given explicitly, whatever was built before; the process-wide
    counters are not read or changed.

    Example:
        >>> names = AutoNames()
        >>> names("conv2d"), names("conv2d"), names("activation")
        ('conv2d', 'conv2d_1', 'activation')
    """

    def __init__(self):
        self._counts = collections.Counter()

    def __call__(self, prefix):
        index = self._counts[prefix]
        self._counts[prefix] += 1
        return prefix if index == 0 else f"{prefix}_{index}"


# ---------------------------------------------------------------- architecture as data
class Conv(collections.namedtuple("Conv", "filters kernel_size strides padding")):
    """Conv2D (no bias) → BatchNorm (no scale) → ReLU, keras.applications' ``conv2d_bn``."""


def conv(filters, kernel_size, strides=1, padding="same"):
    return Conv(filters, kernel_size, strides, padding)


#: Two convolutions on the same input, concatenated (Inception-v3 ``mixed9``/``mixed10``
#: 1x3 + 3x1 pairs); ``name`` None → Keras's automatic ``concatenate`` name.
Split = collections.namedtuple("Split", "name convs")
AVG_POOL = "avg_pool"  # 3x3/1 "same" average pooling
MAX_POOL = "max_pool"  # 3x3/2 "valid" max pooling

STEM = (
    conv(32, 3, 2, "valid"),
    conv(32, 3, padding="valid"),
    conv(64, 3),
    MAX_POOL,
    conv(80, 1, padding="valid"),
    conv(192, 3, padding="valid"),
    MAX_POOL,
)


def _module_35x35(first, pool_filters):
    return (
        (conv(first, 1),),
        (conv(48, 1), conv(64, 5)),
        (conv(64, 1), conv(96, 3), conv(96, 3)),
        (AVG_POOL, conv(pool_filters, 1)),
    )


def _module_17x17(width):
    return (
        (conv(192, 1),),
        (conv(width, 1), conv(width, (1, 7)), conv(192, (7, 1))),
        (
            conv(width, 1),
            conv(width, (7, 1)),
            conv(width, (1, 7)),
            conv(width, (7, 1)),
            conv(192, (1, 7)),
        ),
        (AVG_POOL, conv(192, 1)),
    )


def _module_8x8(split_name):
    return (
        (conv(320, 1),),
        (conv(384, 1), Split(split_name, (conv(384, (1, 3)), conv(384, (3, 1))))),
        (conv(448, 1), conv(384, 3), Split(None, (conv(384, (1, 3)), conv(384, (3, 1))))),
        (AVG_POOL, conv(192, 1)),
    )


#: Inception-v3 after the stem: (module name, branches); output channels in comments.
INCEPTION_V3_MODULES = (
    ("mixed0", _module_35x35(64, 32)),  # 35x35x256
    ("mixed1", _module_35x35(64, 64)),  # 35x35x288
    ("mixed2", _module_35x35(64, 64)),  # 35x35x288
    (
        "mixed3",  # 17x17x768
        (
            (conv(384, 3, 2, "valid"),),
            (conv(64, 1), conv(96, 3), conv(96, 3, 2, "valid")),
            (MAX_POOL,),
        ),
    ),
    ("mixed4", _module_17x17(128)),  # 17x17x768
    ("mixed5", _module_17x17(160)),
    ("mixed6", _module_17x17(160)),
    ("mixed7", _module_17x17(192)),
    (
        "mixed8",  # 8x8x1280
        (
            (conv(192, 1), conv(320, 3, 2, "valid")),
            (conv(192, 1), conv(192, (1, 7)), conv(192, (7, 1)), conv(192, 3, 2, "valid")),
            (MAX_POOL,),
        ),
    ),
    ("mixed9", _module_8x8("mixed9_0")),  # 8x8x2048
    ("mixed10", _module_8x8("mixed9_1")),  # 8x8x2048 (keras.applications' inner name)
)

#: An Inception-ResNet stage: ``repeats`` residual units ``{name}_{1..repeats}``, each
#: ``x + scale * up(concat(branches))`` then ReLU; with ``linear_last`` the last unit
#: has scale 1.0 and no ReLU (``block8_10``, as in keras.applications).
ResidualStage = collections.namedtuple(
    "ResidualStage", "name branches repeats scale linear_last", defaults=(False,)
)

#: Inception-ResNet-v2 after the stem: reduction modules (name, branches) and residual stages.
INCEPTION_RESNET_V2_STAGES = (
    ("mixed_5b", _module_35x35(96, 64)),  # 35x35x320
    ResidualStage(
        "block35",
        ((conv(32, 1),), (conv(32, 1), conv(32, 3)), (conv(32, 1), conv(48, 3), conv(64, 3))),
        repeats=10,
        scale=0.17,
    ),
    (
        "mixed_6a",  # 17x17x1088
        (
            (conv(384, 3, 2, "valid"),),
            (conv(256, 1), conv(256, 3), conv(384, 3, 2, "valid")),
            (MAX_POOL,),
        ),
    ),
    ResidualStage(
        "block17",
        ((conv(192, 1),), (conv(128, 1), conv(160, (1, 7)), conv(192, (7, 1)))),
        repeats=20,
        scale=0.1,
    ),
    (
        "mixed_7a",  # 8x8x2080
        (
            (conv(256, 1), conv(384, 3, 2, "valid")),
            (conv(256, 1), conv(288, 3, 2, "valid")),
            (conv(256, 1), conv(288, 3), conv(320, 3, 2, "valid")),
            (MAX_POOL,),
        ),
    ),
    ResidualStage(
        "block8",
        ((conv(192, 1),), (conv(192, 1), conv(224, (1, 3)), conv(256, (3, 1)))),
        repeats=10,
        scale=0.2,
        linear_last=True,
    ),
)
INCEPTION_RESNET_V2_TOP_CONV = conv(1536, 1)  # "conv_7b", 8x8x1536


# ---------------------------------------------------------------- blocks
def conv2d_bn(x, spec, *, names, name=None):
    """keras.applications' Inception ``conv2d_bn``: Conv2D → BatchNorm(scale=False) → ReLU.

    Named as in keras.applications; `keras_se.blocks.conv_bn` is the ResNets' conv-BN
    (PyTorch padding and epsilon, BN with scale).

    Unnamed layers get Keras's automatic names from ``names``; with ``name`` they are
    ``name``, ``{name}_bn``, ``{name}_ac`` (Inception-ResNet-v2's ``conv_7b``).
    """
    x = keras.layers.Conv2D(
        spec.filters,
        spec.kernel_size,
        strides=spec.strides,
        padding=spec.padding,
        use_bias=False,
        name=name or names("conv2d"),
    )(x)
    x = keras.layers.BatchNormalization(
        axis=channel_axis(),
        scale=False,
        name=f"{name}_bn" if name else names("batch_normalization"),
    )(x)
    return keras.layers.Activation("relu", name=f"{name}_ac" if name else names("activation"))(x)


def _step(x, step, *, names):
    if isinstance(step, Conv):
        return conv2d_bn(x, step, names=names)
    if step == AVG_POOL:
        return keras.layers.AveragePooling2D(
            3, strides=1, padding="same", name=names("average_pooling2d")
        )(x)
    if step == MAX_POOL:
        return keras.layers.MaxPooling2D(3, strides=2, name=names("max_pooling2d"))(x)
    if isinstance(step, Split):
        parts = [conv2d_bn(x, spec, names=names) for spec in step.convs]
        return keras.layers.Concatenate(
            axis=channel_axis(), name=step.name or names("concatenate")
        )(parts)
    raise ValueError(f"Unknown Inception step: {step!r}")


def _sequence(x, steps, *, names):
    for step in steps:
        x = _step(x, step, names=names)
    return x


def inception_module(x, branches, *, name, names, se_ratio=None, se_kwargs=None):
    """One Inception module: its branches concatenated (``name``), then SE (``{name}_se``).

    Args:
        x: input tensor.
        branches: tuple of branches, each a sequence of steps (`Conv`, ``AVG_POOL``,
            ``MAX_POOL``, `Split`), built in order (the order fixes the automatic names).
        name: name of the concatenation, e.g. ``"mixed5"``.
        names: the model's `AutoNames`.
        se_ratio: SE reduction ratio, or None for no SE block.
        se_kwargs: extra `SqueezeExcite` arguments.

    Returns:
        The module's output tensor.
    """
    outputs = [_sequence(x, branch, names=names) for branch in branches]
    x = keras.layers.Concatenate(axis=channel_axis(), name=name)(outputs)
    return squeeze_excite(x, ratio=se_ratio, name=f"{name}_se", se_kwargs=se_kwargs)


def inception_resnet_unit(
    x, branches, *, name, scale, names, activation="relu", se_ratio=None, se_kwargs=None
):
    """One Inception-ResNet unit with SE on the residual branch (SE-Inception-ResNet-v2).

    ``branches`` → concat (``{name}_mixed``) → 1x1 conv with bias back to the input width
    (``{name}_conv``) → SE (``{name}_se``) → ``x + scale * residual`` → ReLU (``{name}_ac``).

    Returns:
        The unit's output tensor.
    """
    residual = inception_module(x, branches, name=f"{name}_mixed", names=names)
    width = x.shape[channel_axis()]
    residual = keras.layers.Conv2D(width, 1, use_bias=True, name=f"{name}_conv")(residual)
    residual = squeeze_excite(residual, ratio=se_ratio, name=f"{name}_se", se_kwargs=se_kwargs)
    # keras.applications' CustomScaleLayer is auto-named; keep its name for a 1:1 layer map.
    x = ScaledResidual(scale, name=names("custom_scale_layer"))([x, residual])
    if activation is not None:
        x = keras.layers.Activation(activation, name=f"{name}_ac")(x)
    return x


class _Pyramid(dict):
    """``{"P<level>": latest map at stride 2**level}`` while a model is built.

    A module with a max-pool branch is a reduction (stride 2): it opens the next level.
    """

    def __init__(self, level):
        super().__init__()
        self.level = level

    def record(self, x, branches=()):
        if MAX_POOL in (step for branch in branches for step in branch):
            self.level += 1
        self[f"P{self.level}"] = x


def _stem(img_input, *, names):
    """The stem, and the pyramid with ``"P2"``: its last conv (stride 4, before the pool)."""
    x = _sequence(img_input, STEM[:-1], names=names)
    pyramid = _Pyramid(level=2)
    pyramid.record(x)
    pyramid.level += 1  # STEM[-1], the second 3x3/2 max pool
    return _sequence(x, STEM[-1:], names=names), pyramid


# ---------------------------------------------------------------- builders
def _prepare(app, *, se_ratio, se_kwargs):
    """The Inception-specific checks; returns the checked ``se_kwargs`` and the image input."""
    se_kwargs = common.check_se_args(se_ratio, "standard", se_kwargs)
    common.check_min_size(app.input_shape, MIN_INPUT_SIZE)
    return se_kwargs, common.make_input(app)


def build_inception_v3(
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="inception_v3",
    se_ratio=DEFAULT_RATIO,
    se_kwargs=None,
    features_only=False,
):
    """Builds (SE-)Inception-v3: keras.applications' InceptionV3 with an SE block per module.

    Args:
        include_top: add ``avg_pool`` + the ``predictions`` Dense layer.
        weights: None or the path to a weights file (``.weights.h5``/``.keras``), e.g.
            one saved from ``keras.applications.InceptionV3`` for the plain model.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional ``(H, W, C)`` (``(C, H, W)`` for channels_first), at least
            75x75. Default ``(299, 299, 3)`` with the top, ``(None, None, 3)`` without.
        pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
        classes: number of classes of the top.
        classifier_activation: activation of ``predictions`` (None → logits).
        name: model name.
        se_ratio: SE reduction ratio ``r``; None builds the plain network.
        se_kwargs: extra `SqueezeExcite` arguments (``squeeze``, ``gate``, ``use_bias``...).
        features_only: return a feature extractor instead: a model over the same layers
            whose output is a dict keyed by stride like keras-hub's ``pyramid_outputs``:
            ``"P2"`` the stem's last convolution (stride 4, before its second max pool),
            ``"P3"`` ``mixed2`` (stride 8), ``"P4"`` ``mixed7`` (16), ``"P5"``
            ``mixed10`` (32), each after its SE block (keras.applications' valid
            paddings make the maps 71, 35, 17 and 8 pixels at 299x299). The input
            defaults to ``(None, None, 3)``; ``pooling`` must be None; ``weights`` load
            first into the model that ``include_top`` describes.

    Returns:
        A functional ``keras.Model``.

    Example:
        >>> from keras_se.models import SEInceptionV3
        >>> backbone = SEInceptionV3(features_only=True, input_shape=(299, 299, 3))
        >>> {key: tuple(t.shape) for key, t in backbone.output.items()}["P4"]
        (None, 17, 17, 768)
    """
    app = common.application(locals(), default_size=DEFAULT_INPUT_SIZE)
    se_kwargs, img_input = _prepare(app, se_ratio=se_ratio, se_kwargs=se_kwargs)
    names = AutoNames()
    x, pyramid = _stem(img_input, names=names)
    for module_name, branches in INCEPTION_V3_MODULES:
        x = inception_module(
            x, branches, name=module_name, names=names, se_ratio=se_ratio, se_kwargs=se_kwargs
        )
        pyramid.record(x, branches)
    return common.finish_model(x, img_input, app, pyramid=pyramid)


def build_inception_resnet_v2(
    *,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name="inception_resnet_v2",
    se_ratio=DEFAULT_RATIO,
    se_kwargs=None,
    features_only=False,
):
    """Builds (SE-)Inception-ResNet-v2: keras.applications' model, SE on each residual branch.

    Arguments as for `build_inception_v3`; ``weights`` may be a file saved from
    ``keras.applications.InceptionResNetV2`` for the plain model. With
    ``features_only``, the pyramid is ``"P2"`` the stem's last convolution (stride 4),
    ``"P3"`` ``block35_10`` (8), ``"P4"`` ``block17_20`` (16) and ``"P5"`` ``conv_7b``
    (32), outputs after activation.

    Returns:
        A functional ``keras.Model``.

    Example (75x75 is the smallest input; SE with the default ``se_ratio=16``):
        >>> backbone = build_inception_resnet_v2(features_only=True, input_shape=(75, 75, 3))
        >>> {key: tuple(t.shape) for key, t in backbone.output.items()}
        {'P2': (None, 15, 15, 192), 'P3': (None, 7, 7, 320), 'P4': (None, 3, 3, 1088), 'P5': (None, 1, 1, 1536)}
    """
    app = common.application(locals(), default_size=DEFAULT_INPUT_SIZE)
    se_kwargs, img_input = _prepare(app, se_ratio=se_ratio, se_kwargs=se_kwargs)
    names = AutoNames()
    x, pyramid = _stem(img_input, names=names)
    for stage in INCEPTION_RESNET_V2_STAGES:
        if not isinstance(stage, ResidualStage):
            module_name, branches = stage
            x = inception_module(x, branches, name=module_name, names=names)
            pyramid.record(x, branches)
            continue
        for index in range(1, stage.repeats + 1):
            linear = stage.linear_last and index == stage.repeats
            x = inception_resnet_unit(
                x,
                stage.branches,
                name=f"{stage.name}_{index}",
                scale=1.0 if linear else stage.scale,
                activation=None if linear else "relu",
                names=names,
                se_ratio=se_ratio,
                se_kwargs=se_kwargs,
            )
            pyramid.record(x)
    x = conv2d_bn(x, INCEPTION_RESNET_V2_TOP_CONV, names=names, name="conv_7b")
    pyramid.record(x)
    return common.finish_model(x, img_input, app, pyramid=pyramid)


#: Registry rows: snake-case name → builder (`common.public_builder` adds each below).
BUILDERS = {}

@common.public_builder(BUILDERS, min_input_size=MIN_INPUT_SIZE)
def SEInceptionV3(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax",
        name="se_inception_v3", se_ratio=DEFAULT_RATIO, features_only=False,
        se_kwargs=None):  # fmt: skip
    """SE-Inception-v3: an SE block on the output of every Inception module.

    ``InceptionV3`` is its plain twin, built by the same code.
    Arguments: those of `build_inception_v3`; inputs of at least 75x75.

    Example:
        >>> SEInceptionV3(input_shape=(75, 75, 3), classes=10).output_shape
        (None, 10)
    """
    return build_inception_v3(**locals())


@common.public_builder(BUILDERS, min_input_size=MIN_INPUT_SIZE)
def InceptionV3(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax",
        name="inception_v3", se_ratio=None, features_only=False,
        se_kwargs=None):  # fmt: skip
    """Inception-v3 (keras.applications'), the plain twin of `SEInceptionV3`.

    The same layers and names as keras.applications' model.
    Arguments: those of `build_inception_v3`; inputs of at least 75x75.

    Example:
        >>> InceptionV3(input_shape=(75, 75, 3), classes=10).output_shape
        (None, 10)
    """
    return build_inception_v3(**locals())


@common.public_builder(BUILDERS, min_input_size=MIN_INPUT_SIZE)
def SEInceptionResNetV2(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax",
        name="se_inception_resnet_v2", se_ratio=DEFAULT_RATIO, features_only=False,
        se_kwargs=None):  # fmt: skip
    """SE-Inception-ResNet-v2: an SE block on every residual branch.

    ``InceptionResNetV2`` is its plain twin, built by the same code.
    Arguments: those of `build_inception_resnet_v2`; inputs of at least 75x75.

    Example:
        >>> SEInceptionResNetV2(input_shape=(75, 75, 3), classes=10).output_shape
        (None, 10)
    """
    return build_inception_resnet_v2(**locals())


@common.public_builder(BUILDERS, min_input_size=MIN_INPUT_SIZE)
def InceptionResNetV2(*, include_top=True, weights=None, input_tensor=None, input_shape=None,
        pooling=None, classes=1000, classifier_activation="softmax",
        name="inception_resnet_v2", se_ratio=None, features_only=False,
        se_kwargs=None):  # fmt: skip
    """Inception-ResNet-v2 (keras.applications'), the plain twin of `SEInceptionResNetV2`.

    The same layers and names as keras.applications' model.
    Arguments: those of `build_inception_resnet_v2`; inputs of at least 75x75.

    Example:
        >>> InceptionResNetV2(input_shape=(75, 75, 3), classes=10).output_shape
        (None, 10)
    """
    return build_inception_resnet_v2(**locals())
