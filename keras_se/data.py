"""Datasets and the one preprocessing function shared by training, export and analysis.

Images enter every keras_se model as ``float32`` in the model's data layout,
normalised by `normalize` with a `Preprocessing` spec: ``(pixel * scale - mean) / std``
per channel. Training applies it in the tf.data pipeline; export compiles the same
function into the SavedModel, so a served model sees exactly what training saw.
The spec travels with a model as a small JSON file (`save_preprocessing`).
"""

from __future__ import annotations

import dataclasses
import json
import os

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: load_digits pixels (0..16, rescaled to 0..1): mean and std over the whole set.
DIGITS_MEAN = (0.3053, 0.3053, 0.3053)
DIGITS_STD = (0.3760, 0.3760, 0.3760)

PREPROCESSING_SUFFIX = ".preprocessing.json"


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw ``uint8`` images become model inputs.

    Attributes:
        mean, std: per-channel statistics applied after scaling to [0, 1].
        scale: multiplier applied to the raw pixel values first (1/255 for uint8).
        image_size: ``(height, width)`` the model expects, or None if any size works.
        interpolation: resize method (``"bilinear"``, ``"bicubic"``, ...).
        crop_pct: center-crop fraction at evaluation (timm convention; 1.0 = no crop).
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
            raise ValueError(f"Unknown preprocessing keys {sorted(unknown)}. Received: {config!r}")
        config = dict(config)
        for key in ("mean", "std", "image_size"):
            if config.get(key) is not None:
                config[key] = tuple(config[key])
        return cls(**config)


def normalize(images, preprocessing=None):
    """``(images * scale - mean) / std`` as float32, channels last; TensorFlow ops.

    Args:
        images: ``uint8`` (or float) tensor ``(..., H, W, C)``.
        preprocessing: a `Preprocessing` (default: ImageNet statistics).

    Returns:
        A ``float32`` tensor of the same shape.

    Example:
        >>> import numpy as np
        >>> x = normalize(np.full((1, 2, 2, 3), 255, "uint8"), Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3))
        >>> float(x[0, 0, 0, 0])
        1.0
    """
    import tensorflow as tf

    p = preprocessing or Preprocessing()
    x = tf.cast(images, tf.float32) * tf.constant(p.scale, tf.float32)
    mean = tf.constant(p.mean, tf.float32)
    std = tf.constant(p.std, tf.float32)
    return (x - mean) / std


def preprocessing_path(model_path):
    """The sidecar JSON path for a model file: ``model.keras`` → ``model.preprocessing.json``."""
    model_path = os.fspath(model_path)
    root = model_path[: -len(".keras")] if model_path.endswith(".keras") else model_path
    return root + PREPROCESSING_SUFFIX


def save_preprocessing(model_path, preprocessing):
    """Writes the `Preprocessing` spec beside ``model_path``; returns the JSON path."""
    path = preprocessing_path(model_path)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(preprocessing.to_dict(), f, indent=2)
    os.replace(tmp, path)
    return path


def load_preprocessing(model_path, default=None):
    """Reads the spec saved beside ``model_path``; ``default`` when there is none."""
    path = preprocessing_path(model_path)
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return Preprocessing.from_dict(json.load(f))
