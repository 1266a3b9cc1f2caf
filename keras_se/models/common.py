"""Argument checks, input and head shared by every keras_se model builder.

The checks follow ``keras.applications`` (same argument names, same kind of
``ValueError`` that echoes the received value), so an SE model is a drop-in
replacement for a stock one.
"""

from __future__ import annotations

import dataclasses
import inspect

import keras

from keras_se import weights as reference_weights
from keras_se.models import preprocessing, pretrained
from keras_se.models.naming import unit_name
from keras_se_core.choices import SE_MODES
from keras_se_core.validation import (
    check_bool,
    check_choice,
    check_number,
    check_optional,
    check_positive_int,
)

POOLINGS = (None, "avg", "max")
#: The arguments `check_application_args` checks.
APPLICATION_CHECKS = (
    "include_top",
    "weights",
    "pooling",
    "classes",
    "classifier_activation",
    "features_only",
)
STATE_DICT_SUFFIXES = reference_weights.STATE_DICT_SUFFIXES


def check_se_args(se_ratio, se_mode, se_kwargs):
    """Validates the SE options shared by all builders; returns ``se_kwargs`` as a dict."""
    check_optional(
        check_number,
        "se_ratio",
        se_ratio,
        minimum=0,
        inclusive=(False, True),
        what="a positive number, or None for a plain model",
    )
    check_choice("se_mode", se_mode, SE_MODES)
    if se_kwargs is None:
        return {}
    if not isinstance(se_kwargs, dict):
        raise TypeError(f"`se_kwargs` must be a dict or None. Received: se_kwargs={se_kwargs!r}")
    for key in ("ratio", "name"):
        if key in se_kwargs:
            raise ValueError(
                f"`se_kwargs` must not contain {key!r}: the builder sets it "
                f"(use `se_ratio` for the ratio). Received: se_kwargs={se_kwargs!r}"
            )
    return dict(se_kwargs)


def check_application_args(
    *, include_top, weights, pooling, classes, classifier_activation, features_only=False
):
    """The keras.applications argument checks (weights, pooling, classes, activation).

    ``features_only`` (the feature-pyramid option of every builder) must be a bool and
    excludes ``pooling``: the pyramid is the unpooled stage outputs.
    """
    check_bool("include_top", include_top)
    check_bool("features_only", features_only)
    if features_only and pooling is not None:
        raise ValueError(
            "`pooling` does not apply with `features_only=True` (the outputs are the unpooled "
            f"stage maps); leave it None. Received: pooling={pooling!r}"
        )
    pretrained.check_weights_source(weights)
    check_choice("pooling", pooling, POOLINGS)
    check_positive_int("classes", classes)
    if include_top:
        try:
            activation = keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as err:
            raise ValueError(
                "`classifier_activation` must be a Keras activation or None. "
                f"Received: classifier_activation={classifier_activation!r}"
            ) from err
        if classes == 1 and activation is keras.activations.softmax:
            # A softmax over one unit is 1.0 whatever the input: nothing can be learned.
            raise ValueError(
                "`classes=1` with the softmax classifier always outputs 1.0; for one "
                '(binary) class use classifier_activation="sigmoid" (or None for a logit), '
                "or classes=2 with the softmax. "
                f"Received: classes={classes!r}, classifier_activation={classifier_activation!r}"
            )


def resolve_input_shape(input_shape, input_tensor, *, default_size, include_top):
    """Returns a checked 3-tuple input shape in the current data format.

    Mirrors ``keras.applications``: default ``(default_size, default_size, 3)`` when
    ``include_top`` and nothing is given, ``(None, None, 3)`` otherwise.
    """
    channels_last = keras.config.image_data_format() == "channels_last"
    if input_shape is None and input_tensor is not None:
        input_shape = tuple(input_tensor.shape[1:])
    if input_shape is None:
        size = default_size if include_top else None
        input_shape = (size, size, 3) if channels_last else (3, size, size)
    try:
        input_shape = tuple(input_shape)
    except TypeError as err:
        raise ValueError(
            f"`input_shape` must be a tuple (height, width, channels). Received: input_shape={input_shape!r}"
        ) from err
    if len(input_shape) != 3:
        raise ValueError(
            "`input_shape` must have 3 entries (height, width, channels) for "
            f"{'channels_last' if channels_last else 'channels_first'}. Received: input_shape={input_shape!r}"
        )
    channels = input_shape[2] if channels_last else input_shape[0]
    if channels is None:
        raise ValueError(
            f"The channel dimension of `input_shape` must be known. Received: input_shape={input_shape!r}"
        )
    for size in input_shape:
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(
                "`input_shape` entries must be positive integers or None (spatial only); "
                f"a channel count of {channels!r} or a size of {size!r} cannot be built. "
                f"Received: input_shape={input_shape!r}"
            )
    return input_shape


def check_min_size(input_shape, min_size, *, hint=""):
    """Raises a ValueError when a known spatial size is below ``min_size``.

    ``hint`` (e.g. "use stem='cifar' for smaller inputs") is added to the message.
    """
    channels_last = keras.config.image_data_format() == "channels_last"
    spatial = input_shape[:2] if channels_last else input_shape[1:]
    for size in spatial:
        if size is not None and size < min_size:
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}{hint}. "
                f"Received: input_shape={input_shape!r}"
            )


def spatial_size(input_shape):
    """The smaller known spatial size of a 3-tuple input shape, or None."""
    channels_last = keras.config.image_data_format() == "channels_last"
    spatial = input_shape[:2] if channels_last else input_shape[1:]
    known = [s for s in spatial if s is not None]
    return min(known) if known else None


@dataclasses.dataclass(frozen=True)
class Application:
    """A builder's keras.applications arguments, checked, with the input shape resolved.

    Made by `application`; `make_input` and `finish_model` read it, so every builder
    checks, makes its input and finishes its model the same way.
    """

    include_top: bool
    weights: object
    input_tensor: object
    input_shape: tuple
    pooling: str | None
    classes: int
    classifier_activation: object
    name: str
    features_only: bool = False


def application(arguments, *, default_size):
    """Checks a builder's keras.applications arguments → `Application`.

    Args:
        arguments: the builder's arguments by name (``locals()`` as its first statement);
            the fields of `Application` are read from it.
        default_size: the input size with the top (`resolve_input_shape`: unknown without
            the top or with ``features_only``).

    Returns:
        The checked `Application` (`check_application_args`), its input shape resolved.
    """
    app = {field.name: arguments[field.name] for field in dataclasses.fields(Application)}
    check_application_args(**{k: app[k] for k in APPLICATION_CHECKS})
    app["input_shape"] = resolve_input_shape(
        app["input_shape"],
        app["input_tensor"],
        default_size=default_size,
        include_top=app["include_top"] and not app["features_only"],
    )
    return Application(**app)


def make_input(app):
    """``keras.Input`` for the model, wrapping ``app.input_tensor`` like keras.applications."""
    if app.input_tensor is None:
        return keras.Input(shape=app.input_shape, name="image")
    if not keras.backend.is_keras_tensor(app.input_tensor):
        return keras.Input(tensor=app.input_tensor, shape=app.input_shape, name="image")
    return app.input_tensor


def check_stages(stackwise_num_blocks, stackwise_filters):
    """The stage table of a residual network: units per stage (>= 1), one width per stage."""
    for count in stackwise_num_blocks:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                "`stackwise_num_blocks` must hold one unit count (an integer >= 1) per stage. "
                f"Received: stackwise_num_blocks={stackwise_num_blocks!r}"
            )
    if len(stackwise_filters) != len(stackwise_num_blocks):
        raise ValueError(
            "`stackwise_filters` needs one width per stage of `stackwise_num_blocks`. "
            f"Received: stackwise_filters={stackwise_filters!r}, "
            f"stackwise_num_blocks={stackwise_num_blocks!r}"
        )


def stack_stages(x, unit, *, stackwise_num_blocks, stackwise_filters, first_level):
    """The residual stages: ``unit(x, filters, name=..., strides=...)`` for every unit.

    The first unit of every stage but the first halves the resolution (``strides=2``);
    each unit is named by `keras_se.models.naming.unit_name` (``conv{stage}_block{i}``).

    Args:
        x: the stem's output.
        unit: builds one unit, e.g. `keras_se.blocks.residual_unit` with its options bound.
        stackwise_num_blocks: units per stage.
        stackwise_filters: the units' ``filters`` per stage (checked by `check_stages`).
        first_level: the pyramid level (log2 of the stride) of the first stage's output.

    Returns:
        ``(x, pyramid)``: the last stage's output and keras-hub's ``pyramid_outputs``,
        ``{"P<level>": stage output}``.
    """
    pyramid = {}
    stages = zip(stackwise_num_blocks, stackwise_filters, strict=True)
    for stage, (num_blocks, filters) in enumerate(stages):
        for index in range(num_blocks):
            strides = 2 if (index == 0 and stage > 0) else 1
            x = unit(x, filters, name=unit_name(stage, index), strides=strides)
        pyramid[f"P{first_level + stage}"] = x
    return x, pyramid


def finish_model(x, img_input, app, *, dropout=0.0, pyramid=None):
    """Head (``avg_pool`` [+ ``top_dropout``] + ``predictions``) or pooling, the Model, ``weights``.

    With ``app.features_only``, the returned model is the feature extractor over the
    same layers: its output is ``pyramid``, a dict ``{"P<level>": stage output}`` (level =
    log2 of the stride), recorded by the builder. ``app.weights`` are loaded into the model
    the other arguments describe first (so a file with the classifier loads with
    ``include_top=True``), then the head is left out. Weights of another class count
    load the backbone and leave a fresh classifier (`keras_se.models.pretrained.load_weights`).
    """
    if app.include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(
            app.classes, activation=app.classifier_activation, name="predictions"
        )(x)
    elif app.pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif app.pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if app.input_tensor is not None:
        inputs = keras.utils.get_source_inputs(app.input_tensor)
    else:
        inputs = img_input
    model = keras.Model(inputs, x, name=app.name)
    if app.weights is not None:
        pretrained.load_weights(model, app.weights)
    if app.features_only:
        features = keras.Model(inputs, dict(pyramid), name=app.name)
        return preprocessing.attach(features, preprocessing.of(model))
    return model


def weights_architecture(weights):
    """Builder options (``stride_in_1x1``, ``stem_pool``) that ``weights`` requires.

    Empty for None and Keras files; see `keras_se.models.pretrained.source_architecture`.
    """
    return pretrained.source_architecture(weights)


def public_builder(table, **attributes):
    """Decorator: lists a public builder in its module's ``table`` (registry name → builder).

    The registry name is the default of the builder's ``name`` argument; the builder's
    ``registry_name`` says it and ``se`` whether it builds SE blocks by default (its
    ``se_ratio`` default is not None). ``attributes`` are set on it too (the Inception
    builders' ``min_input_size``). The function itself is returned unchanged.

    Example:
        >>> BUILDERS = {}
        >>> @public_builder(BUILDERS)
        ... def TinyNet(*, name="tiny_net", se_ratio=16):
        ...     ...
        >>> BUILDERS["tiny_net"] is TinyNet, TinyNet.se
        (True, True)
    """

    def mark(builder):
        parameters = inspect.signature(builder).parameters
        builder.registry_name = parameters["name"].default
        builder.se = parameters["se_ratio"].default is not None
        for key, value in attributes.items():
            setattr(builder, key, value)
        if builder.registry_name in table:
            raise ValueError(f"Builder name already listed: name={builder.registry_name!r}")
        table[builder.registry_name] = builder
        return builder

    return mark
