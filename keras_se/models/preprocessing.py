"""`Preprocessing`: how raw ``uint8`` images become model inputs (standard library only).

The spec a model's weights were made for: pretrained configurations carry one
(`keras_se.models.pretrained`), training writes one beside each model, and export
compiles it into the SavedModel. It is plain data, so this module imports neither
Keras nor TensorFlow; `keras_se.data` applies it with TensorFlow ops.
"""

from __future__ import annotations

import dataclasses
import json
import os

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
