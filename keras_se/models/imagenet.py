"""keras.applications conventions for ImageNet classifiers: `preprocess_input`, `decode_predictions`.

The paper's models are ImageNet-1k classifiers (Hu et al., 2018, Section 6.1); these two
functions do for keras_se models what ``keras.applications.resnet.preprocess_input`` and
``decode_predictions`` do for keras.applications ones, without TensorFlow and without a
download:

* `preprocess_input` applies the model's own `Preprocessing` spec,
  ``(pixels * scale - mean) / std`` per channel (the function training and export use),
  with NumPy for arrays and ``keras.ops`` for tensors of any backend.
* `decode_predictions` names the top classes from the 1000 ImageNet class names
  shipped inside the package (``imagenet_classes.json``: WordNet id and name, index 1
  is ``goldfish``).

Example:
    >>> import numpy as np
    >>> scores = np.zeros((1, 1000), "float32"); scores[0, 1] = 0.5
    >>> decode_predictions(scores, top=1)
    [[('n01443537', 'goldfish', 0.5)]]
"""

from __future__ import annotations

import functools
import json
import os

import keras
import numpy as np

from keras_se.models import preprocessing
from keras_se.models.preprocessing import Preprocessing
from keras_se_core.validation import check_int

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.json")
NUM_CLASSES = 1000

__all__ = ["preprocess_input", "decode_predictions", "imagenet_classes"]


@functools.lru_cache(maxsize=1)
def imagenet_classes():
    """The 1000 ImageNet-1k classes in index order, as ``(wnid, name)`` pairs.

    Example:
        >>> imagenet_classes()[1]
        ('n01443537', 'goldfish')
    """
    with open(CLASSES_FILE) as f:
        classes = tuple(tuple(c) for c in json.load(f)["classes"])
    if len(classes) != NUM_CLASSES:  # a damaged installation, not a user error
        raise RuntimeError(f"{CLASSES_FILE} holds {len(classes)} classes, not {NUM_CLASSES}.")
    return classes


def decode_predictions(preds, top=5):
    """The ``top`` classes of each row of ImageNet predictions, best first.

    Args:
        preds: class scores (probabilities or logits), shape ``(batch, 1000)``: a NumPy
            array or a tensor of any backend.
        top: how many classes per row (1 to 1000).

    Returns:
        One list per row of ``(wnid, class_name, score)`` tuples, highest score first,
        as ``keras.applications.imagenet_utils.decode_predictions`` returns them.

    Example:
        >>> import numpy as np
        >>> scores = np.zeros((1, 1000), "float32"); scores[0, [1, 0]] = (0.7, 0.2)
        >>> [name for _, name, _ in decode_predictions(scores, top=2)[0]]
        ['goldfish', 'tench']
    """
    scores = np.asarray(keras.ops.convert_to_numpy(preds))
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
        raise ValueError(
            f"`preds` must be a batch of {NUM_CLASSES} ImageNet class scores, shape "
            f"(batch, {NUM_CLASSES}). Received: preds.shape={scores.shape}"
        )
    top = check_int("top", top, minimum=1, maximum=NUM_CLASSES)
    classes = imagenet_classes()
    # A stable sort keeps the lower index first among equal scores.
    order = np.argsort(-scores, axis=-1, kind="stable")[:, :top]
    return [
        [(*classes[i], float(row[i])) for i in indices]
        for row, indices in zip(scores, order, strict=True)
    ]


def _spec(model_or_preprocessing):
    if model_or_preprocessing is None:
        return Preprocessing()
    if isinstance(model_or_preprocessing, Preprocessing):
        return model_or_preprocessing
    if isinstance(model_or_preprocessing, keras.Model):
        return preprocessing.of(model_or_preprocessing, Preprocessing())
    raise TypeError(
        "`model_or_preprocessing` must be a keras.Model, a "
        "keras_se.models.preprocessing.Preprocessing or None. "
        f"Received: model_or_preprocessing={model_or_preprocessing!r}"
    )


def preprocess_input(images, model_or_preprocessing=None, *, data_format=None):
    """Raw pixel values → model inputs, with the model's `Preprocessing` spec.

    ``(images * scale - mean) / std`` per channel, as float32: exactly what training's
    pipeline and the exported SavedModel apply (images are not resized here; resize to
    the model's input size first, as with keras.applications).

    Args:
        images: pixel values ``0..255`` (any numeric dtype), channels last by default
            (``(..., H, W, C)``): a NumPy array or list (a NumPy array is returned), or a
            tensor of the current Keras backend (a tensor is returned).
        model_or_preprocessing: a model whose preprocessing is recorded
            (`keras_se.models.preprocessing.of`: the builders' ``weights=``,
            `keras_se.models.pretrained.load_reference_model` and a training run's saved
            model record it), a `Preprocessing`, or None. None, or a model without one, uses
            the ImageNet defaults ``Preprocessing()`` (mean 0.485/0.456/0.406, std
            0.229/0.224/0.225, pixels / 255).
        data_format: ``"channels_last"`` or ``"channels_first"``; default
            ``keras.config.image_data_format()``.

    Returns:
        float32 inputs of the same shape.

    Example:
        >>> import numpy as np
        >>> x = preprocess_input(np.full((1, 2, 2, 3), 255, "uint8"),
        ...                      Preprocessing(mean=(0.5,) * 3, std=(0.5,) * 3))
        >>> float(x[0, 0, 0, 0])
        1.0
    """
    spec = _spec(model_or_preprocessing)
    data_format = data_format or keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last' or 'channels_first'. "
            f"Received: data_format={data_format!r}"
        )
    tensor = not isinstance(images, (np.ndarray, list, tuple, np.generic, int, float))
    x = keras.ops.convert_to_tensor(images) if tensor else np.asarray(images)
    if len(x.shape) < 3:
        raise ValueError(
            "`images` must hold images with a channel axis, e.g. (batch, height, width, "
            f"channels). Received: images.shape={tuple(x.shape)}"
        )
    channels = x.shape[-1] if data_format == "channels_last" else x.shape[-3]
    for key in ("mean", "std"):
        values = getattr(spec, key)
        if len(values) not in (1, channels):
            raise ValueError(
                f"The preprocessing `{key}` has {len(values)} values for images with "
                f"{channels} channels. Received: {key}={values!r}"
            )
    shape = (-1,) if data_format == "channels_last" else (-1, 1, 1)
    mean = np.asarray(spec.mean, "float32").reshape(shape)
    std = np.asarray(spec.std, "float32").reshape(shape)
    scale = np.float32(spec.scale)
    if not tensor:
        return (x.astype("float32") * scale - mean) / std
    x = keras.ops.cast(x, "float32")
    return (x * scale - keras.ops.convert_to_tensor(mean)) / keras.ops.convert_to_tensor(std)
