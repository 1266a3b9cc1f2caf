"""Every check on the model and the export arguments, before anything is written.

`make_plan` reads what the serving graph is built from (image input, classes, whether the
classifier outputs logits, the SE layers) and refuses what cannot be served with a
`UsageError` that names the argument and echoes the value.
"""

from __future__ import annotations

import dataclasses
import re

import keras

from keras_se.layers import SEGate
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_int

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The checked export arguments and the model facts the graph is built from."""

    name: str
    version: int | None
    height: int | None
    width: int | None
    channels: int
    classes: int
    logits: bool
    size: tuple | None
    resize: bool
    dynamic_size: bool
    top_k: int | None
    se_layers: tuple

    @property
    def image_shape(self):  # the uint8 signature input
        if self.dynamic_size:
            return [None, None, None, self.channels]
        return [None, self.height, self.width, self.channels]

    @property
    def model_shape(self):  # the preprocessed float signature input
        return [None, self.height, self.width, self.channels]

    @property
    def sample_shape(self):  # warmup/request/verification images: the model's size
        if self.height is not None and self.width is not None:
            return (self.height, self.width, self.channels)
        return (*(self.size or (224, 224)), self.channels)


def make_plan(src, *, name, version, with_excitations, top_k, dynamic_size):
    """The `Plan` of exporting ``src`` (an `ExportSource`); UsageError on what cannot be served."""
    model = src.model
    height, width, channels = _image_input(model)
    classes = _num_classes(model)
    logits = _outputs_logits(model)
    _check_preprocessing(src.preprocessing, channels)
    _check_name(name)
    if version is not None:
        version = check_int("version", version, minimum=0, what="a non-negative integer or None")
    if top_k is not None:
        top_k = check_int(
            "top_k",
            top_k,
            minimum=1,
            maximum=classes,
            what=f"an integer from 1 to the number of classes ({classes})",
        )
    _check_run_config(src, classes)
    se_layers = _se_layers(model) if with_excitations else ()
    size = _target_size(height, width, src, src.preprocessing)
    resize = bool(dynamic_size) and size is not None
    if resize:
        _check_resize(src.preprocessing)
    return Plan(
        name=name,
        version=version,
        height=height,
        width=width,
        channels=channels,
        classes=classes,
        logits=logits,
        size=size,
        resize=resize,
        dynamic_size=bool(dynamic_size),
        top_k=None if top_k is None else int(top_k),
        se_layers=se_layers,
    )


def _image_input(model):
    """(H, W, C) of the model's single image input; UsageError (a ValueError) when there is none."""
    # Any single 4-D input is accepted; keras_se models name theirs "image".
    inputs = [t for t in model.inputs if len(t.shape) == 4]
    if len(model.inputs) != 1 or len(inputs) != 1:
        shapes = [tuple(t.shape) for t in model.inputs]
        raise UsageError(
            "The model must have exactly one image input of shape (batch, height, width, "
            f"channels) to be exported for serving. Received: model {model.name!r} with "
            f"inputs of shapes {shapes}"
        )
    _, height, width, channels = inputs[0].shape
    if channels is None:
        raise UsageError(
            "The model's image input needs a known channel count (channels last). "
            f"Received: input shape {tuple(inputs[0].shape)}"
        )
    return height, width, int(channels)


def _num_classes(model):
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        shapes = [tuple(t.shape) for t in model.outputs]
        raise UsageError(
            "The model must have one output of shape (batch, classes) (a classifier with "
            f"include_top=True). Received: model {model.name!r} with outputs of shapes {shapes}"
        )
    classes = model.outputs[0].shape[-1]
    if classes is None:
        raise UsageError(f"The model's number of classes is unknown. Received: {model.name!r}")
    return int(classes)


def _outputs_logits(model):
    """Whether the classifier outputs logits (the graph then adds a softmax).

    The last layer must be a classifier: one with an ``activation`` (a Dense head:
    ``softmax``/``sigmoid`` outputs are used as they are, ``linear`` ones are logits)
    or a ``Softmax`` layer. Feature extractors (``include_top=False``) are refused.
    """
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return False
    activation = getattr(last, "activation", None)
    if activation is None:
        raise UsageError(
            "The model must end in a classifier (a layer with an activation, e.g. the "
            "`predictions` Dense layer of include_top=True). Received: last layer "
            f"{last.name!r} ({type(last).__name__})"
        )
    name = getattr(activation, "__name__", None)
    return name == "linear"


def _check_preprocessing(preprocessing, channels):
    for key in ("mean", "std"):
        values = getattr(preprocessing, key)
        if len(values) not in (1, channels):
            raise UsageError(
                f"Preprocessing `{key}` has {len(values)} values for a model with {channels} "
                f"channels. Received: {key}={values!r}"
            )
    if any(s == 0 for s in preprocessing.std):
        raise UsageError(f"Preprocessing `std` must not be 0. Received: std={preprocessing.std!r}")


def _check_name(name):
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UsageError(
            "`name` must be a TF Serving model name: letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit. Received: name={name!r}"
        )


def _check_run_config(src, classes):
    """The run's ``config.json`` (num_classes, class_names) agrees with the model."""
    if src.num_classes is not None and src.num_classes != classes:
        raise UsageError(
            f"The run's config.json says num_classes={src.num_classes!r} but the model has "
            f"{classes} outputs. Received: model {src.model.name!r}"
        )
    if src.class_names is not None and len(src.class_names) != classes:
        raise UsageError(
            f"The run's class_names has {len(src.class_names)} names for a model with "
            f"{classes} classes. Received: class_names={src.class_names!r}"
        )


def _se_layers(model):
    """The model's SE layers, for the ``excitations`` signature; UsageError when none."""
    # Every SE layer (SqueezeExcite and any other SEGate) has its gate as
    # `excitation(layer input)`, what the signature computes.
    se_layers = tuple(layer for layer in model.layers if isinstance(layer, SEGate))
    if not se_layers:
        raise UsageError(
            "`with_excitations` needs a model with SqueezeExcite layers. "
            f"Received: model {model.name!r} without any"
        )
    return se_layers


def _check_resize(preprocessing):
    """The spec can drive the in-graph resize of ``dynamic_size``."""
    if preprocessing.interpolation not in _INTERPOLATIONS:
        raise UsageError(
            f"Preprocessing `interpolation` must be one of {_INTERPOLATIONS} for in-graph "
            f"resizing. Received: interpolation={preprocessing.interpolation!r}"
        )
    if not 0 < preprocessing.crop_pct <= 1:
        raise UsageError(
            "Preprocessing `crop_pct` must be in (0, 1]. "
            f"Received: crop_pct={preprocessing.crop_pct!r}"
        )


def _target_size(height, width, source, preprocessing):
    """(H, W) images are resized to with ``dynamic_size``; None when anything goes."""
    if height is not None and width is not None:
        return int(height), int(width)
    for size in (preprocessing.image_size, (source.image_shape or (None, None))[:2]):
        if size is not None and None not in tuple(size)[:2]:
            return int(size[0]), int(size[1])
    return None
