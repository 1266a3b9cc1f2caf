"""Argument checks, input and head shared by every keras_se model builder.

The checks follow ``keras.applications`` (same argument names, same kind of
``ValueError`` that echoes the received value), so an SE model is a drop-in
replacement for a stock one.
"""

from __future__ import annotations

import inspect

import keras

from keras_se import weights as reference_weights
from keras_se.models import pretrained
from keras_se_core.choices import SE_MODES
from keras_se_core.validation import (
    check_bool,
    check_choice,
    check_number,
    check_optional,
    check_positive_int,
)

POOLINGS = (None, "avg", "max")
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


def make_input(input_shape, input_tensor):
    """``keras.Input`` for the model, wrapping ``input_tensor`` like keras.applications."""
    if input_tensor is None:
        return keras.Input(shape=input_shape, name="image")
    if not keras.backend.is_keras_tensor(input_tensor):
        return keras.Input(tensor=input_tensor, shape=input_shape, name="image")
    return input_tensor


def finish_model(
    x,
    img_input,
    input_tensor,
    *,
    include_top,
    pooling,
    classes,
    classifier_activation,
    weights,
    name,
    dropout=0.0,
    features_only=False,
    pyramid=None,
):
    """Head (``avg_pool`` [+ ``top_dropout``] + ``predictions``) or pooling, the Model, ``weights``.

    With ``features_only``, the returned model is the feature extractor over the same
    layers: its output is ``pyramid``, a dict ``{"P<level>": stage output}`` (level =
    log2 of the stride), recorded by the builder. ``weights`` are loaded into the model
    the other arguments describe first (so a file with the classifier loads with
    ``include_top=True``), then the head is left out. Weights of another class count
    load the backbone and leave a fresh classifier (`keras_se.models.pretrained.load_weights`).
    """
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        pretrained.load_weights(model, weights)
    if features_only:
        features = keras.Model(inputs, dict(pyramid), name=name)
        if hasattr(model, "preprocessing"):
            features.preprocessing = model.preprocessing
        return features
    return model


def weights_architecture(weights):
    """Builder options (``stride_in_1x1``, ``stem_pool``) that ``weights`` requires.

    Empty for None and Keras files; see `keras_se.models.pretrained.source_architecture`.
    """
    return pretrained.source_architecture(weights)


def make_builder(build, *, public_name, model_name, se, options, doc, defaults_override=None):
    """The public keras.applications-style builder around ``build(**kwargs)``.

    Every family (ResNet, Inception) shares this one wrapper: the keras.applications
    arguments, ``name`` and ``se_ratio`` (16 for an SE model, None for its plain twin),
    plus the family's own keyword-only ``options`` (name → default). ``defaults_override``
    overrides keras.applications defaults (the CIFAR models: ``classes=10``). All
    arguments are keyword-only; the signature is visible to ``help()`` and IDEs.

    Returns:
        The builder function, with ``registry_name`` set to ``model_name`` and ``se``
        (whether it builds SE blocks by default).
    """
    defaults = dict(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
        name=model_name,
        se_ratio=16 if se else None,
        features_only=False,
        **options,
    )
    defaults.update(defaults_override or {})

    def builder(*args, **kwargs):
        if args:
            raise TypeError(
                f"{public_name}() takes keyword arguments only. Received positional: {args!r}"
            )
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise TypeError(
                f"{public_name}() got unexpected keyword arguments: {', '.join(unknown)}"
            )
        return build(**{**defaults, **kwargs})

    builder.__signature__ = inspect.Signature(
        [
            inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
            for k, v in defaults.items()
        ]
    )
    builder.__name__ = builder.__qualname__ = public_name
    builder.__doc__ = doc
    builder.registry_name = model_name
    builder.se = bool(se)
    return builder
