"""`Preprocessing`: how raw ``uint8`` images become model inputs (standard library only).

The spec a model's weights were made for: pretrained configurations carry one
(`keras_se.models.pretrained`), training writes one beside each model, and export
compiles it into the SavedModel. It is plain data, so this module imports neither
Keras nor TensorFlow; `keras_se.data` applies it with TensorFlow ops.

Where a model's spec lives in memory: `attach` records it for a model object and `of`
reads it back. The record is a `weakref.WeakKeyDictionary` keyed by the model, so it
goes when the model goes and nothing is added to Keras's own object. Every keras_se
function that gives a model with known preprocessing records it here: the builders'
``weights=`` and `keras_se.models.load_weights`, `keras_se.models.pretrained.load_reference_model`,
``RunDir.load_model``. On disk the spec is the sidecar ``model.preprocessing.json``
(`sidecar_path`).

Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((4, 4, 3))])
    >>> of(model) is None
    True
    >>> attach(model, Preprocessing(crop_pct=0.875)) is model
    True
    >>> of(model).crop_pct
    0.875
"""

from __future__ import annotations

import dataclasses
import json
import os
import weakref

from keras_se_core.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw ``uint8`` images become model inputs.

    Attributes:
        mean, std: per-channel statistics applied after scaling to [0, 1].
        scale: multiplier applied to the raw pixel values first (1/255 for uint8).
        image_size: ``(height, width)`` the model expects, or None if any size works.
        interpolation: resize method (``"bilinear"``, ``"bicubic"``, ...).
        crop_pct: center-crop fraction at evaluation (timm convention; 1.0 = no crop).

    Example:
        >>> spec = Preprocessing(image_size=(224, 224), crop_pct=0.875)
        >>> Preprocessing.from_dict(spec.to_dict()) == spec
        True
    """

    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    scale: float = 1.0 / 255.0
    image_size: tuple | None = None
    interpolation: str = "bilinear"
    crop_pct: float = 1.0

    def to_dict(self):
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["image_size"] = None if self.image_size is None else list(self.image_size)
        return out

    @classmethod
    def from_dict(cls, config):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise UsageError(f"Unknown preprocessing keys {sorted(unknown)}. Received: {config!r}")
        config = dict(config)
        for key in ("mean", "std", "image_size"):
            if config.get(key) is not None:
                config[key] = tuple(config[key])
        return cls(**config)


#: The sidecar beside a saved model: ``model.keras`` → ``model.preprocessing.json``.
SIDECAR_SUFFIX = ".preprocessing.json"


def sidecar_path(model_path):
    """The preprocessing sidecar path for a model file (``keras_se.data.preprocessing_path``).

    Example:
        >>> sidecar_path("runs/a/model.keras")
        'runs/a/model.preprocessing.json'
    """
    model_path = os.fspath(model_path)
    root = model_path[: -len(".keras")] if model_path.endswith(".keras") else model_path
    return root + SIDECAR_SUFFIX


def read_sidecar(model_path, default=None):
    """The `Preprocessing` saved beside ``model_path``, or ``default`` when there is none.

    The reader for the models package (which sits below ``keras_se.data``); the same
    file as ``keras_se.data.load_preprocessing``.
    """
    path = sidecar_path(model_path)
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return Preprocessing.from_dict(json.load(f))
    except (OSError, ValueError, TypeError) as err:
        raise UsageError(
            f"Unreadable preprocessing file {path} ({type(err).__name__}: {err}). "
            f"Received: weights={os.fspath(model_path)!r}"
        ) from err


#: model → its `Preprocessing` (weak keys: a record goes with its model).
_SPECS = weakref.WeakKeyDictionary()


def attach(model, spec):
    """Records ``spec`` as the preprocessing of ``model``; returns ``model``.

    Args:
        model: the model (any object that can be weakly referenced, a ``keras.Model``).
        spec: a `Preprocessing`, or None to forget the record.

    Returns:
        ``model``, so a loader can ``return attach(model, spec)``.

    Example:
        >>> import keras
        >>> model = attach(keras.Sequential(), Preprocessing(mean=(0.5,) * 3))
        >>> of(model).mean
        (0.5, 0.5, 0.5)
        >>> of(attach(model, None)) is None
        True
    """
    if spec is None:
        _SPECS.pop(model, None)
    elif isinstance(spec, Preprocessing):
        _SPECS[model] = spec
    else:
        raise TypeError(
            f"`spec` must be a Preprocessing or None. Received: spec={spec!r} "
            f"of type {type(spec).__name__}"
        )
    return model


def of(model, default=None):
    """The `Preprocessing` recorded for ``model`` by `attach`, or ``default``.

    Example:
        >>> import keras
        >>> of(keras.Sequential(), Preprocessing()) == Preprocessing()
        True
    """
    return _SPECS.get(model, default)
