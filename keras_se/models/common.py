"""Argument checks, input and head shared by every keras_se model builder.

The checks follow ``keras.applications`` (same argument names, same kind of
``ValueError`` that echoes the received value), so an SE model is a drop-in
replacement for a stock one.
"""

from __future__ import annotations

import inspect
import numbers
import os

import keras

from keras_se.blocks import SE_MODES

POOLINGS = (None, "avg", "max")


def check_se_args(se_ratio, se_mode, se_kwargs):
    """Validates the SE options shared by all builders; returns ``se_kwargs`` as a dict."""
    if se_ratio is not None and (
        isinstance(se_ratio, bool) or not isinstance(se_ratio, numbers.Real) or se_ratio <= 0
    ):
        raise ValueError(
            f"`se_ratio` must be a positive number, or None for a plain model. Received: se_ratio={se_ratio!r}"
        )
    if se_mode not in SE_MODES:
        raise ValueError(f"`se_mode` must be one of {SE_MODES}. Received: se_mode={se_mode!r}")
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


def check_application_args(*, include_top, weights, pooling, classes, classifier_activation):
    """The keras.applications argument checks (weights, pooling, classes, activation)."""
    if not isinstance(include_top, bool):
        raise ValueError(
            f"`include_top` must be True or False. Received: include_top={include_top!r}"
        )
    if weights is not None and not (
        isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)
    ):
        from keras_se import weights as reference  # lazy: models do not need it otherwise

        if not reference.is_named_source(weights):
            hint = ""
            if weights == "imagenet" or str(weights).startswith("timm/"):
                hint = (
                    " keras_se ships no bundled weights; name a reference source instead, e.g. "
                    "weights='timm/legacy_seresnet50.in1k' (downloaded, needs network; known: "
                    "keras_se.weights.SOURCES), or a local .safetensors/.pth file."
                )
            raise ValueError(
                "`weights` must be None (random initialization), the path to an existing "
                f"weights file or a named reference source.{hint} Received: weights={weights!r}"
            )
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
    if isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1:
        raise ValueError(f"`classes` must be a positive integer. Received: classes={classes!r}")
    if include_top:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError) as err:
            raise ValueError(
                "`classifier_activation` must be a Keras activation or None. "
                f"Received: classifier_activation={classifier_activation!r}"
            ) from err


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
    return input_shape


def check_min_size(input_shape, min_size):
    """Raises a ValueError when a known spatial size is below ``min_size``."""
    channels_last = keras.config.image_data_format() == "channels_last"
    spatial = input_shape[:2] if channels_last else input_shape[1:]
    for size in spatial:
        if size is not None and size < min_size:
            raise ValueError(
                f"Input size must be at least {min_size}x{min_size}. Received: input_shape={input_shape!r}"
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
):
    """Head (``avg_pool`` + ``predictions``) or pooling, the Model, then ``weights``."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    inputs = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else img_input
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        load_weights_file(model, weights)
    return model


def load_weights_file(model, path):
    """Loads a weights file into ``model``; the one place builders load weights.

    Keras files (``.weights.h5``, ``.keras``) go through ``model.load_weights``;
    timm state dicts (``.safetensors``, ``.pth``, ``.bin``) and named sources
    (``"timm/legacy_seresnet50.in1k"``) through `keras_se.weights.load_reference_weights`.
    """
    path = os.fspath(path)
    if path.endswith((".weights.h5", ".keras", ".h5")):
        model.load_weights(path)
        return model
    from keras_se import weights as reference  # lazy: keeps models free of the mapping

    if reference.is_named_source(path) or path.endswith(reference.STATE_DICT_SUFFIXES):
        return reference.load_reference_weights(model, path)
    raise ValueError(
        "`weights` file type not recognised: expected .weights.h5, .keras, "
        f"{', '.join(reference.STATE_DICT_SUFFIXES)} or a named source. Received: weights={path!r}"
    )


def weights_architecture(weights):
    """Builder options (``stride_in_1x1``, ``stem_pool``) that ``weights`` requires.

    Empty for None and Keras files; a timm state dict or named source in the
    non-legacy layout needs the stride in the 3x3 conv and torchvision's stem pool.
    """
    if not isinstance(weights, (str, os.PathLike)) or os.fspath(weights).endswith(
        (".weights.h5", ".keras", ".h5")
    ):
        return {}
    from keras_se import weights as reference

    return reference.source_architecture(weights)


def make_builder(build, *, public_name, model_name, se, options, doc):
    """The public keras.applications-style builder around ``build(**kwargs)``.

    Every family (ResNet, Inception) shares this one wrapper: the keras.applications
    arguments, ``name`` and ``se_ratio`` (16 for an SE model, None for its plain twin),
    plus the family's own keyword-only ``options`` (name → default). All arguments
    are keyword-only; the signature is visible to ``help()`` and IDEs.

    Returns:
        The builder function, with ``registry_name`` set to ``model_name``.
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
        **options,
    )

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
    return builder
