"""What an export reads: a training run directory, a ``.keras`` file or a model in memory.

A run directory's files and its ``config.json`` (format version included) are read
through their one owner, `keras_se.rundir.RunDir`; the preprocessing spec travels beside
the model file (`keras_se.data.load_preprocessing`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import zipfile
import zlib

import keras

from keras_se.data import Preprocessing, load_preprocessing, preprocessing_path
from keras_se.rundir import RunDir
from keras_se_core.errors import UsageError

#: What a broken ``.keras`` file raises from ``keras.models.load_model``: zip (bad CRC, a
#: corrupt deflate stream, a missing member: KeyError), JSON (ValueError), HDF5 (OSError) and
#: deserialization errors (ValueError, TypeError, KeyError, AttributeError). They all mean the
#: same to the user: the file is not a readable Keras model.
_UNREADABLE_MODEL_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
)

#: The run directory's files, named by their one owner (`keras_se.rundir.RunDir`).
RUN_MODEL_FILE = RunDir.MODEL
RUN_CONFIG_FILE = RunDir.CONFIG

_DEFAULT_PREPROCESSING_NOTE = (
    "keras_se.data.Preprocessing() defaults (ImageNet mean/std, pixels / 255): "
    "no model.preprocessing.json beside the model"
)


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """A model to export and what travels with it (see `load_source`).

    Attributes:
        model: the Keras model.
        preprocessing: the `Preprocessing` spec compiled into the graph.
        preprocessing_note: where the spec came from (a path, or the default note).
        name: default model name (the run's registry name or the file's stem), or None.
        class_names: list of class names from the run's ``config.json``, or None.
        image_shape: ``(H, W, C)`` from the run's ``config.json``, or None.
        num_classes: ``num_classes`` from the run's ``config.json``, or None.
        path: the file the model was loaded from, or None for an in-memory model.

    Example:
        >>> src = load_source("runs/se_resnet18")  # doctest: +SKIP
        >>> src.name, src.num_classes, src.path  # doctest: +SKIP
        ('se_resnet18', 10, 'runs/se_resnet18/model.keras')
    """

    model: keras.Model
    preprocessing: Preprocessing
    preprocessing_note: str
    name: str | None = None
    class_names: list | None = None
    image_shape: tuple | None = None
    num_classes: int | None = None
    path: str | None = None


def served_name(model):
    """A TF Serving model name for a run's ``--model``: the registry name as it is, a
    factory's function name (``pkg.mod:build`` → ``build``), a ``.keras`` file's stem.

    Example:
        >>> served_name("se_resnet50"), served_name("mypkg.models:build"), served_name("a/b.keras")
        ('se_resnet50', 'build', 'b')
    """
    if not model:
        return None
    name = str(model)
    if name.endswith(".keras"):
        name = os.path.basename(name)[: -len(".keras")]
    name = name.rpartition(":")[2]
    if name.startswith("keras.applications."):
        name = name.rpartition(".")[2]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._-") or None


def load_source(source, *, preprocessing=None):
    """Loads a model to export from a training run directory, a ``.keras`` file or a model.

    A run directory holds ``model.keras``, ``model.preprocessing.json`` and ``config.json``
    (``model``, ``class_names``, ``image_shape``). A bare ``.keras`` file uses the
    preprocessing sidecar beside it when there is one, else the ImageNet defaults
    (`keras_se.data.Preprocessing()`), and says so in ``preprocessing_note``.

    Args:
        source: run directory, ``.keras`` path, or a ``keras.Model``.
        preprocessing: a `Preprocessing` that overrides whatever the source carries.

    Returns:
        An `ExportSource`.

    Example:
        >>> src = load_source("runs/se_resnet18")  # doctest: +SKIP
        >>> src.name, src.preprocessing.mean  # doctest: +SKIP
        ('se_resnet18', (0.485, 0.456, 0.406))
    """
    if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
        raise TypeError(
            "`preprocessing` must be a keras_se.data.Preprocessing or None. "
            f"Received: preprocessing={preprocessing!r}"
        )
    if isinstance(source, keras.Model):
        note = "given" if preprocessing is not None else _DEFAULT_PREPROCESSING_NOTE
        return ExportSource(
            model=source,
            preprocessing=preprocessing or Preprocessing(),
            preprocessing_note=note,
            name=source.name,
        )
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "`source` must be a run directory, a .keras file or a keras.Model. "
            f"Received: source={source!r}"
        )
    source = os.fspath(source)
    model_path, default_name, config = _locate(source)
    model = _load_keras_file(model_path)
    preprocessing, note = _preprocessing_for(model_path, preprocessing)
    image_shape = config.get("image_shape")
    class_names = config.get("class_names")
    return ExportSource(
        model=model,
        preprocessing=preprocessing,
        preprocessing_note=note,
        name=default_name,
        class_names=list(class_names) if class_names is not None else None,
        image_shape=tuple(image_shape) if image_shape is not None else None,
        num_classes=config.get("num_classes"),
        path=model_path,
    )


def _locate(source):
    """(model file, default served name, run config) of a run directory or ``.keras`` path."""
    if os.path.isdir(source):
        model_path = os.path.join(source, RUN_MODEL_FILE)
        if not os.path.isfile(model_path):
            raise UsageError(
                f"`source` is a directory without {RUN_MODEL_FILE}: not a training run "
                f"directory. Received: source={source!r}"
            )
        config = RunDir(source).read_config(what="source")  # format version checked
        default_name = served_name(config.get("model")) or os.path.basename(os.path.abspath(source))
        return model_path, default_name, config
    if os.path.isfile(source):
        if not source.endswith(".keras"):
            raise UsageError(
                "`source` must be a training run directory or a .keras model file. "
                f"Received: source={source!r}"
            )
        return source, os.path.basename(source)[: -len(".keras")], {}
    raise UsageError(
        f"`source` does not exist (expected a run directory or a .keras file). "
        f"Received: source={source!r}"
    )


def _preprocessing_for(model_path, preprocessing):
    """(spec, note): the given spec, else the sidecar beside the model, else the defaults."""
    if preprocessing is not None:
        return preprocessing, "given"
    found = load_preprocessing(model_path)
    if found is None:
        return Preprocessing(), _DEFAULT_PREPROCESSING_NOTE
    return found, preprocessing_path(model_path)


def _load_keras_file(path):
    # Keras reports a file that is not a zip archive as "File not found", which is
    # misleading for a file that exists: check the container first.
    if not zipfile.is_zipfile(path):
        raise UsageError(
            "`source` is not a readable Keras file: not a zip archive (a .keras file is a "
            "zip of config.json, metadata.json and model.weights.h5; truncated or "
            f"overwritten?). Received: source={path!r}"
        )
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except _UNREADABLE_MODEL_ERRORS as err:
        reason = " ".join(str(err).split())[:200]
        raise UsageError(
            f"`source` is not a readable Keras file ({type(err).__name__}: {reason}). "
            f"Received: source={path!r}"
        ) from err
