"""``keras-se predict``: the top classes of image files, with the model's own preprocessing.

A model is a training run directory (``model.keras``, its preprocessing and the class
names in ``config.json``), a ``.keras`` file (its ``model.preprocessing.json`` sidecar,
else the ImageNet defaults), or a SavedModel written by ``keras-se export`` (a version
directory, or the model directory whose highest version is used; preprocessing and class
names from its ``assets.extra/keras_se_export.json``). Each image is decoded, resized to
the model's input size as the evaluation pipeline does (`keras_se.data.resize_and_crop`)
and normalised (`keras_se.data.normalize`); a model with 1000 classes and no class names
is named with the ImageNet classes (`keras_se.models.decode_predictions`).

Example:
    >>> result = predict_images(["cat.png"], model="runs/se_resnet18", top_k=3)  # doctest: +SKIP
    >>> print(format_predictions(result))                                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from keras_se.data import IMAGE_EXTENSIONS  # the image files a directory contributes
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_positive_int

SAVED_MODEL_FILE = "saved_model.pb"
EXPORT_METADATA = os.path.join("assets.extra", "keras_se_export.json")


@dataclasses.dataclass(frozen=True)
class ImagePrediction:
    """The top classes of one image.

    Attributes:
        path: the image file.
        top: ``[(class_id, class_name, probability), ...]``, most probable first.

    Example:
        >>> ImagePrediction("a.png", [(2, "owl", 0.75)]).to_dict()["top_k"][0]["class_name"]
        'owl'
    """

    path: str
    top: list

    def to_dict(self):
        return {
            "path": self.path,
            "top_k": [
                {"class_id": int(i), "class_name": name, "probability": float(p)}
                for i, name, p in self.top
            ],
        }


@dataclasses.dataclass(frozen=True)
class PredictResult:
    """What `predict_images` computed.

    Attributes:
        model: the model source as given (path or model name).
        predictions: one `ImagePrediction` per readable image, in the order given.
        skipped: ``[(path, reason)]`` for the files that could not be read.
        preprocessing: the `Preprocessing` applied.

    Example:
        >>> result = predict_images(["a.png"], model="model.keras")  # doctest: +SKIP
        >>> result.to_dict()["skipped"]                              # doctest: +SKIP
        []
    """

    model: str
    predictions: list
    skipped: list
    preprocessing: object

    def to_dict(self):
        return {
            "model": self.model,
            "preprocessing": self.preprocessing.to_dict(),
            "predictions": [p.to_dict() for p in self.predictions],
            "skipped": [{"path": path, "error": why} for path, why in self.skipped],
        }


def image_files(paths):
    """Expands ``paths`` (files or directories) to image files, in order.

    A directory contributes its files with an image extension (sorted, not recursive).
    A path that does not exist is a `UsageError`.

    Example:
        >>> image_files(["photos/"])  # doctest: +SKIP
        ['photos/a.jpg', 'photos/b.png']
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            out.extend(
                os.path.join(path, name)
                for name in sorted(os.listdir(path))
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(path, name))
            )
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise UsageError(f"`images`: no such file or directory. Received: {path!r}")
    return out


# ----------------------------------------------------------------------------- models
@dataclasses.dataclass
class _Predictor:
    """A callable from preprocessed float32 images to probabilities, and what it needs."""

    call: object
    size: tuple | None  # (H, W) the model takes, or None for any
    channels: int
    classes: int
    preprocessing: object
    class_names: list | None


def _is_saved_model(path):
    return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def _saved_model_version(path):
    """The SavedModel directory for ``path``: itself, or its highest numbered version."""
    if _is_saved_model(path):
        return path
    versions = [
        int(name)
        for name in os.listdir(path)
        if name.isdigit() and _is_saved_model(os.path.join(path, name))
    ]
    return os.path.join(path, str(max(versions))) if versions else None


def _softmax_if_logits(model):
    """Probabilities from the Keras model: a linear (logits) classifier gets a softmax."""
    import keras

    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    logits = getattr(activation, "__name__", None) == "linear"

    def call(x):
        out = np.asarray(model.predict_on_batch(x), "float32")
        return np.asarray(keras.ops.softmax(out, axis=-1)) if logits else out

    return call


def _keras_predictor(model, preprocessing, class_names):
    shape = tuple(model.inputs[0].shape)
    if len(model.inputs) != 1 or len(shape) != 4 or len(model.outputs[0].shape) != 2:
        raise UsageError(
            "`model` must be a classifier with one image input (batch, H, W, C) and one "
            f"(batch, classes) output. Received: model {model.name!r}"
        )
    size = tuple(shape[1:3]) if None not in shape[1:3] else None
    if size is None and preprocessing.image_size is not None:
        size = tuple(preprocessing.image_size)
    return _Predictor(
        call=_softmax_if_logits(model),
        size=size,
        channels=int(shape[3]),
        classes=int(model.outputs[0].shape[-1]),
        preprocessing=preprocessing,
        class_names=class_names,
    )


def _saved_model_predictor(path):
    import tensorflow as tf

    from keras_se.data import Preprocessing

    meta_path = os.path.join(path, EXPORT_METADATA)
    if not os.path.isfile(meta_path):
        raise UsageError(
            f"`model` is a SavedModel without {EXPORT_METADATA}: not written by keras-se "
            f"export. Received: model={path!r}"
        )
    with open(meta_path) as f:
        meta = json.load(f)
    preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_preprocessed"]
    _, shape = meta["signatures"]["serving_preprocessed"]["inputs"]["image"]
    _, out_shape = meta["signatures"]["serving_preprocessed"]["outputs"]["probabilities"]
    size = tuple(shape[1:3]) if -1 not in shape[1:3] else None

    def call(x):
        return fn(image=tf.constant(x, tf.float32))["probabilities"].numpy()

    return _Predictor(
        call=call,
        size=size,
        channels=int(shape[3]),
        classes=int(out_shape[-1]),
        preprocessing=preprocessing,
        class_names=meta.get("class_names"),
    )


def load_predictor(model):
    """A `_Predictor` for a run directory, a ``.keras`` file, a SavedModel or a keras.Model.

    Example:
        >>> predictor = load_predictor("runs/quickstart/run")  # doctest: +SKIP
        >>> predictor.classes, predictor.size                  # doctest: +SKIP
        (10, (32, 32))
    """
    import keras

    from keras_se import export

    if isinstance(model, keras.Model):
        from keras_se.models import preprocessing

        src = export.load_source(model, preprocessing=preprocessing.of(model))
        return _keras_predictor(src.model, src.preprocessing, None)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            "`model` must be a run directory, a .keras file, a SavedModel directory or a "
            f"keras.Model. Received: model={model!r}"
        )
    path = os.fspath(model)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, export.RUN_MODEL_FILE)):
        version = _saved_model_version(path)
        if version is None:
            raise UsageError(
                "`model` is a directory that is neither a training run (model.keras) nor a "
                f"SavedModel written by keras-se export. Received: model={path!r}"
            )
        return _saved_model_predictor(version)
    src = export.load_source(path)  # run directory or .keras file; its errors name `source`
    return _keras_predictor(src.model, src.preprocessing, src.class_names)


def _load_image(path, predictor):
    """uint8 → resized → normalised float32 ``(H, W, C)``, as the evaluation pipeline does."""
    import tensorflow as tf

    from keras_se.data import normalize, resize_and_crop

    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=predictor.channels, expand_animations=False)
    if predictor.size is not None and tuple(image.shape[:2]) != tuple(predictor.size):
        image = tf.cast(resize_and_crop(image, predictor.preprocessing, predictor.size), tf.uint8)
    return np.asarray(normalize(image, predictor.preprocessing))


def _names(predictor):
    if predictor.class_names is not None and len(predictor.class_names) == predictor.classes:
        return [str(n) for n in predictor.class_names]
    if predictor.classes == 1000:
        from keras_se.models.imagenet import imagenet_classes

        return [name for _, name in imagenet_classes()]
    return [str(i) for i in range(predictor.classes)]


def predict_images(paths, *, model, top_k=5):
    """The ``top_k`` classes of each image, with the model's own preprocessing.

    Args:
        paths: image files and/or directories (their image files, not recursive).
        model: a training run directory, a ``.keras`` file, a SavedModel from
            ``keras-se export`` (version or model directory), or a ``keras.Model``.
        top_k: classes per image (at most the model's class count).

    Returns:
        A `PredictResult`; unreadable image files are in ``skipped`` with the reason.

    Raises:
        UsageError: a bad model source, or no readable image at all.

    Example:
        >>> result = predict_images(["digit.png"], model="runs/quickstart/run", top_k=2)  # doctest: +SKIP
        >>> result.predictions[0].top                                                   # doctest: +SKIP
        [(7, '7', 0.93), (1, '1', 0.02)]
    """
    check_positive_int("top_k", top_k)
    files = image_files(paths)
    if not files:
        raise UsageError(
            f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in the given paths. "
            f"Received: images={[os.fspath(p) for p in ([paths] if isinstance(paths, str) else paths)]!r}"
        )
    import tensorflow as tf

    predictor = load_predictor(model)
    names = _names(predictor)
    images, readable, skipped = [], [], []
    for path in files:
        try:
            images.append(_load_image(path, predictor))
            readable.append(path)
        # InvalidArgumentError (not an image, truncated), NotFoundError, PermissionDeniedError:
        # the file is named and skipped; anything else is a bug and keeps its traceback
        except tf.errors.OpError as err:
            skipped.append((path, " ".join(str(err).split())[:200] or type(err).__name__))
    if not images:
        raise UsageError(
            f"None of the {len(files)} image files could be read (first: {skipped[0][0]}: "
            f"{skipped[0][1]})."
        )
    k = min(top_k, predictor.classes)
    predictions = []
    for path, image in zip(readable, images, strict=True):
        probabilities = predictor.call(image[None])[0]
        order = np.argsort(-probabilities, kind="stable")[:k]
        top = [(int(i), names[i], float(probabilities[i])) for i in order]
        predictions.append(ImagePrediction(path, top))
    shown = model.name if hasattr(model, "name") and not isinstance(model, str) else str(model)
    return PredictResult(shown, predictions, skipped, predictor.preprocessing)


def format_predictions(result, *, as_json=False):
    """The predictions as text (one block per image) or as JSON (``as_json``).

    Example:
        >>> print(format_predictions(result))  # doctest: +SKIP
        digit.png
          1. 7        0.9312
          2. 1        0.0204
    """
    if as_json:
        return json.dumps(result.to_dict(), indent=1)
    lines = []
    for prediction in result.predictions:
        lines.append(prediction.path)
        width = max(len(name) for _, name, _ in prediction.top)
        for rank, (class_id, name, probability) in enumerate(prediction.top, 1):
            label = name if name == str(class_id) else f"{name} ({class_id})"
            lines.append(f"  {rank}. {label:<{width + 7}} {probability:.4f}")
    return "\n".join(lines)
