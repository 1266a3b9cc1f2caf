"""SavedModel export for TF Serving (issue #7): ``<base>/<name>/<version>/``, atomically.

The exported graph is self-contained: TF Serving (or any process with TensorFlow but
without keras_se, or even Keras) loads it and calls ``serving_default``, which takes
raw ``uint8`` images and applies *the* training preprocessing (`keras_se.data.normalize`
with the model's `Preprocessing` spec) inside the graph.

Signatures (all inputs are named ``image``, channels last, dynamic batch):

- ``serving_default``: ``uint8 [batch, H, W, C]`` → ``probabilities`` (float32,
  ``[None, classes]``), ``class_id`` (int64, ``[None]``) and, with ``top_k``,
  ``top_k_probabilities`` (float32, ``[None, k]``) and ``top_k_class_ids`` (int64,
  ``[None, k]``). With ``dynamic_size=True`` the input is ``uint8 [batch, any, any, C]``
  and images are resized in the graph (see `export_model`).
- ``serving_preprocessed``: ``float32 [batch, H, W, C]`` already preprocessed
  (``normalize`` applied) → the same outputs; for checking a client's own preprocessing.
- ``excitations`` (only with ``with_excitations=True``): ``uint8`` images as in
  ``serving_default`` → one ``float32 [None, channels]`` output per SE layer,
  keyed by layer name: the gate vector ``s`` of Hu et al. (2018), Section 3.2, for
  inspecting what a served model's SE blocks do.

Every signature checks its image batch inside the graph, where TF Serving requests
arrive: a batch of another rank, channel count or size (without ``dynamic_size``) is an
``InvalidArgument`` error that names ``image``, the expected shape and the received one,
e.g. "`image` must have shape [batch, 32, 32, 3] (uint8, channels last). Received:
image.shape=[2, 32, 32, 1]". The signature inputs are therefore declared with unknown
shape (a declared shape would make TensorFlow refuse a Python call before the check,
and TF Serving does not check shapes at all, leaving a kernel error deep in the
network); `ExportResult.signatures` and ``keras_se_export.json`` give the shapes the
graph accepts. An empty batch returns empty outputs of the usual shapes.

Outputs are float32 even for mixed-precision models. A model whose classifier has no
activation (logits) gets a softmax in the graph, so ``probabilities`` always sum to 1.

Precision (``precision=``, ``keras-se export --precision``): ``"float32"`` (default) serves
a graph that computes in float32, whatever dtype policy the model was trained under;
``"bfloat16"`` rebuilds the model under Keras's ``mixed_bfloat16`` policy with the same
weights (float32 variables, bfloat16 convolutions and matmuls; the classifier and the
softmax stay float32), for CPUs with bfloat16 instructions (AVX512_BF16, AMX) and
accelerators. The signatures are the same for both: ``uint8`` images in, float32
``probabilities`` and int64 ``class_id`` out. ``keras_se_export.json`` records it.

Atomicity: the version is written into ``<base>/<name>/.tmp-export-<version>-<pid>-<hex>``
(a name TF Serving ignores), completed with the TF Serving extras in ``assets.extra/``,
reloaded and checked against the Keras model, then renamed to ``<base>/<name>/<version>``
in one ``os.rename``. A crash leaves only a temporary directory, which the next export
into the same model directory removes once its process is gone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import zipfile

import keras
import numpy as np

from keras_se.data import (
    Preprocessing,
    load_preprocessing,
    normalize,
    preprocessing_path,
    resize_and_crop,
)
from keras_se.extras import require
from keras_se.layers import SEGate
from keras_se.rundir import RunDir
from keras_se_core import fileio
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_choice, check_int

#: Files and names of the TF Serving layout.
MODELS_CONFIG = "models.config"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
REQUEST_FILE = "request.json"
METADATA_FILE = "keras_se_export.json"
TMP_PREFIX = ".tmp-export-"
#: The run directory's files, named by their one owner (`keras_se.rundir.RunDir`).
RUN_MODEL_FILE = RunDir.MODEL
RUN_CONFIG_FILE = RunDir.CONFIG

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "serving_preprocessed"
EXCITATIONS_SIGNATURE = "excitations"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TMP_RE = re.compile(r"^" + re.escape(TMP_PREFIX) + r"(\d+)-(\d+)-[0-9a-f]+$")
#: What ``export_model(precision=...)`` accepts: the graph's compute dtype.
PRECISIONS = ("float32", "bfloat16")
#: The Keras dtype policy each precision rebuilds the model under.
_PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian")
#: Keras vs reloaded SavedModel, on the sample images, by compute dtype.
_VERIFY_ATOL = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}
_DEFAULT_PREPROCESSING_NOTE = (
    "keras_se.data.Preprocessing() defaults (ImageNet mean/std, pixels / 255): "
    "no model.preprocessing.json beside the model"
)


class VersionExistsError(UsageError, FileExistsError):
    """The requested version exists already (versions are never overwritten).

    A `UsageError` (so the CLI prints one line and exits 2) and a ``FileExistsError``.

    Example:
        >>> issubclass(VersionExistsError, FileExistsError)
        True
        >>> export_model("runs/se_resnet18", "models/", version=1)  # doctest: +SKIP
        Traceback (most recent call last):
        VersionExistsError: ...
    """


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


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export_model` wrote.

    Attributes:
        path: the version directory ``<base>/<name>/<version>``.
        name, version: the TF Serving model name and version.
        signatures: ``{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}}``
            read back from the written SavedModel (shapes with -1 for unknown).
        models_config: path of the ``models.config`` written in ``<base>``.
        request: path of the sample REST request body.
        warmup: path of the warmup TFRecord (``assets.extra/tf_serving_warmup_requests``).
        preprocessing: the spec compiled into the graph; ``preprocessing_note`` its source.
        max_abs_diff: max |Keras − reloaded SavedModel| of ``probabilities`` on the sample
            images, measured before the version was committed.
        removed_stale: temporary directories of dead exports removed on the way.
        precision: the graph's compute precision, ``"float32"`` or ``"bfloat16"``.

    Example:
        >>> result = export_model("runs/se_resnet18", "models/")  # doctest: +SKIP
        >>> result.path, result.max_abs_diff < 1e-5  # doctest: +SKIP
        ('models/se_resnet18/1', True)
    """

    path: str
    name: str
    version: int
    signatures: dict
    models_config: str
    request: str
    warmup: str
    preprocessing: Preprocessing
    preprocessing_note: str
    max_abs_diff: float
    removed_stale: tuple = ()
    precision: str = "float32"


# ---------------------------------------------------------------------- loading
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
    except Exception as err:  # zip, JSON, HDF5 and deserialization errors all mean the same
        reason = " ".join(str(err).split())[:200]
        raise UsageError(
            f"`source` is not a readable Keras file ({type(err).__name__}: {reason}). "
            f"Received: source={path!r}"
        ) from err


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
    config = {}
    if os.path.isdir(source):
        model_path = os.path.join(source, RUN_MODEL_FILE)
        if not os.path.isfile(model_path):
            raise UsageError(
                f"`source` is a directory without {RUN_MODEL_FILE}: not a training run "
                f"directory. Received: source={source!r}"
            )
        config = RunDir(source).read_config(what="source")  # format version checked
        default_name = served_name(config.get("model")) or os.path.basename(os.path.abspath(source))
    elif os.path.isfile(source):
        if not source.endswith(".keras"):
            raise UsageError(
                "`source` must be a training run directory or a .keras model file. "
                f"Received: source={source!r}"
            )
        model_path = source
        default_name = os.path.basename(source)[: -len(".keras")]
    else:
        raise UsageError(
            f"`source` does not exist (expected a run directory or a .keras file). "
            f"Received: source={source!r}"
        )
    model = _load_keras_file(model_path)
    if preprocessing is not None:
        note = "given"
    else:
        preprocessing = load_preprocessing(model_path)
        if preprocessing is None:
            preprocessing, note = Preprocessing(), _DEFAULT_PREPROCESSING_NOTE
        else:
            note = preprocessing_path(model_path)
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


# ---------------------------------------------------------------------- checks
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


def _check_version(version):
    return check_int("version", version, minimum=0, what="a non-negative integer or None")


def existing_versions(model_dir):
    """Sorted numbered versions in ``<base>/<name>`` (what TF Serving would load).

    Example:
        >>> import os, tempfile
        >>> model_dir = tempfile.mkdtemp()
        >>> for entry in ("1", "3", "notes"):
        ...     os.mkdir(os.path.join(model_dir, entry))
        >>> existing_versions(model_dir), next_version(model_dir)
        ([1, 3], 4)
    """
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if n.isdigit())


def next_version(model_dir):
    """One more than the highest existing version in ``model_dir``, or 1.

    Example (see also `existing_versions`):
        >>> next_version("no/such/models/se_resnet18")
        1
    """
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(model_dir):
    """Removes temporary export directories whose exporting process is gone.

    Returns the removed paths. Directories of running exports are left alone.

    Example (a temporary directory left by process id 999999999, which cannot be alive):
        >>> import os, tempfile
        >>> model_dir = tempfile.mkdtemp()
        >>> os.mkdir(os.path.join(model_dir, f"{TMP_PREFIX}1-999999999-00ff00ff"))
        >>> [os.path.basename(p) for p in remove_stale_temporaries(model_dir)]
        ['.tmp-export-1-999999999-00ff00ff']
        >>> os.listdir(model_dir)
        []
    """
    removed = []
    if not os.path.isdir(model_dir):
        return removed
    for entry in sorted(os.listdir(model_dir)):
        match = _TMP_RE.match(entry)
        if match and not _pid_alive(int(match.group(2))):
            path = os.path.join(model_dir, entry)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _prepare_model_dir(base_dir, name):
    """Creates ``<base>/<name>`` if needed; one clear error when the base is unusable."""
    model_dir = os.path.join(base_dir, name)
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise UsageError(f"`base` exists and is not a directory. Received: base={base_dir!r}")
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"`base` is not writable ({err.strerror or err}). Received: base={base_dir!r}"
        ) from err
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise UsageError(f"`base` is not writable. Received: base={base_dir!r}")
    return model_dir


# ---------------------------------------------------------------------- precision
def _head_layers(model):
    """The classifier layers kept in float32: the last layer and, when it has no weights
    (a ``Softmax``/``Activation``), the last layer before it that has."""
    head = [model.layers[-1]]
    if not head[0].weights:
        weighted = [layer for layer in model.layers[:-1] if layer.weights]
        head += weighted[-1:]
    return head


def with_precision(model, precision):
    """``model`` computing in ``precision``: itself when it does, else a rebuild with its weights.

    ``"bfloat16"``: every layer under ``mixed_bfloat16`` (float32 variables, bfloat16
    compute) except the classifier (`_head_layers`: its matmul and softmax in float32).
    ``"float32"``: every layer under ``float32`` (a mixed-precision model served in full
    precision). The rebuild is ``keras.models.clone_model`` with each layer's config given
    the policy, then ``set_weights`` with the model's weights (BatchNorm statistics included).

    Args:
        model: a Keras classifier.
        precision: one of `PRECISIONS`.

    Returns:
        A ``keras.Model`` with the same weights and architecture.

    Example:
        >>> from keras_se import models
        >>> net = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> bf16 = with_precision(net, "bfloat16")
        >>> bf16.layers[1].compute_dtype, bf16.layers[-1].compute_dtype
        ('bfloat16', 'float32')
    """
    check_choice("precision", precision, PRECISIONS)
    head = {id(layer) for layer in _head_layers(model)}
    policy = _PRECISION_POLICIES[precision]

    def wanted(layer):
        return "float32" if id(layer) in head else policy

    if all(layer.dtype_policy.name == wanted(layer) for layer in _all_layers(model)):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = wanted(layer)
        return layer.__class__.from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=clone, recursive=True)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _all_layers(model):
    """The layers of ``model``, those of nested models included, without input layers."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


# ---------------------------------------------------------------------- graph
def _target_size(height, width, source, preprocessing):
    """(H, W) images are resized to with ``dynamic_size``; None when anything goes."""
    if height is not None and width is not None:
        return int(height), int(width)
    for size in (preprocessing.image_size, (source.image_shape or (None, None))[:2]):
        if size is not None and None not in tuple(size)[:2]:
            return int(size[0]), int(size[1])
    return None


class _ServingFunctions:
    """The Python functions behind the signatures (traced by ExportArchive)."""

    def __init__(self, model, preprocessing, plan):
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.preprocessing = preprocessing
        self.plan = plan
        self.image_shape = plan.image_shape
        self.model_shape = plan.model_shape
        self.classes = plan.classes
        self.size = plan.size
        self.resize = plan.resize
        self.top_k = plan.top_k
        self.logits = plan.logits
        self.se_layers = list(plan.se_layers)
        self.gate_inputs = None
        if self.se_layers:
            # Shares the model's layers and weights: the input of each SE block.
            self.gate_inputs = keras.Model(
                model.inputs[0], [layer.input for layer in self.se_layers], name="se_gate_inputs"
            )

    def check_image(self, image, expected, dtype):
        """``image`` after an in-graph check of its shape; static shape ``expected``.

        A batch of another rank, or with other dimensions than ``expected``
        (``[None, H, W, C]``; None = any size >= 1, the batch may be empty) fails with
        ``InvalidArgumentError`` naming ``image``, the expected and the received shape.
        """
        tf = self.tf
        shape = tf.shape(image, out_type=tf.int32)  # (rank,)
        want = tf.constant([-1 if d is None else int(d) for d in expected[1:]], tf.int32)
        # Three values whatever the rank (a wrong rank fails the rank test anyway).
        got = tf.concat([shape, tf.fill([4], -1)], axis=0)[1:4]
        dims_ok = tf.where(tf.equal(want, -1), got >= 1, tf.equal(got, want))
        ok = tf.logical_and(tf.equal(tf.size(shape), 4), tf.reduce_all(dims_ok))
        message = tf.strings.join(
            [
                f"`image` must have shape {_shape_text(expected)} ({dtype}, channels last). "
                "Received: image.shape=[",
                tf.strings.reduce_join(tf.strings.as_string(shape), separator=", "),
                "]",
            ]
        )
        check = tf.debugging.Assert(ok, [message])
        with tf.control_dependencies([check]):
            image = tf.identity(image)
        return tf.ensure_shape(image, expected)

    def unless_empty(self, image, compute, empty):
        """``compute(image)``, or ``empty()`` for a batch of 0 images.

        An empty batch never reaches the network: TensorFlow's CPU convolution returns
        a wrongly shaped result for it (BatchNormalization then fails).
        """
        tf = self.tf
        return tf.cond(tf.shape(image)[0] > 0, lambda: compute(image), empty)

    def probabilities_or_empty(self, image, preprocess):
        def compute(x):
            x = self.preprocess(x) if preprocess else x
            return self.tf.cast(self.model(x, training=False), self.tf.float32)

        return self.unless_empty(
            image, compute, lambda: self.tf.zeros([0, self.classes], self.tf.float32)
        )

    def preprocess(self, image):
        """uint8 images → float32 model inputs, exactly `keras_se.data.normalize`."""
        x = image
        if self.resize:
            # The evaluation pipeline's own resize (keras_se.data), compiled into the graph.
            x = resize_and_crop(x, self.preprocessing, self.size)
        return normalize(x, self.preprocessing)

    def head(self, outputs):
        tf = self.tf
        outputs = tf.cast(outputs, tf.float32)  # mixed precision: float16 → float32
        probabilities = tf.nn.softmax(outputs, axis=-1) if self.logits else outputs
        result = {
            "probabilities": tf.identity(probabilities, name="probabilities"),
            "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
        }
        if self.top_k:
            values, indices = tf.math.top_k(probabilities, k=self.top_k)
            result["top_k_probabilities"] = values
            result["top_k_class_ids"] = tf.cast(indices, tf.int64)
        return result

    def serve(self, image):
        image = self.check_image(image, self.image_shape, "uint8")
        return self.head(self.probabilities_or_empty(image, preprocess=True))

    def serve_preprocessed(self, image):
        image = self.check_image(image, self.model_shape, "float32, preprocessed")
        return self.head(self.probabilities_or_empty(image, preprocess=False))

    def excitations(self, image):
        tf = self.tf
        image = self.check_image(image, self.image_shape, "uint8")

        def compute(x):
            features = self.gate_inputs(self.preprocess(x), training=False)
            if not isinstance(features, (list, tuple)):
                features = [features]
            return [
                tf.cast(layer.excitation(f), tf.float32)
                for layer, f in zip(self.se_layers, features)
            ]

        def empty():
            return [tf.zeros([0, layer.channels], tf.float32) for layer in self.se_layers]

        gates = self.unless_empty(image, compute, empty)
        return {layer.name: gate for layer, gate in zip(self.se_layers, gates)}


def _shape_text(shape):
    """``[None, 32, 32, 3]`` → ``"[batch, 32, 32, 3]"``; other Nones read ``any``."""
    dims = ["batch"] + ["any" if d is None else str(d) for d in shape[1:]]
    return "[" + ", ".join(dims) + "]"


def _write_archive(fns, path, plan):
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(fns.model)
    if fns.gate_inputs is not None:
        archive.track(fns.gate_inputs)
    # Unknown shape: every request reaches the in-graph check (see the module docstring).
    uint8_spec = tf.TensorSpec(None, tf.uint8, name="image")
    float_spec = tf.TensorSpec(None, tf.float32, name="image")

    # Named arguments give the signature input key "image".
    def serving_default(image):
        return fns.serve(image)

    def serving_preprocessed(image):
        return fns.serve_preprocessed(image)

    def excitations(image):
        return fns.excitations(image)

    archive.add_endpoint(SERVING_SIGNATURE, serving_default, input_signature=[uint8_spec])
    archive.add_endpoint(PREPROCESSED_SIGNATURE, serving_preprocessed, input_signature=[float_spec])
    if fns.se_layers:
        archive.add_endpoint(EXCITATIONS_SIGNATURE, excitations, input_signature=[uint8_spec])
    archive.write_out(path, verbose=False)


def _describe_signatures(loaded, plan):
    """{signature: {"inputs": {key: (dtype, shape)}, "outputs": {...}}} of a loaded SavedModel.

    Shapes use -1 for unknown dimensions. The ``image`` inputs are declared with unknown
    shape and checked in the graph; their entry is the shape the check accepts.
    """
    checked = {
        SERVING_SIGNATURE: plan.image_shape,
        EXCITATIONS_SIGNATURE: plan.image_shape,
        PREPROCESSED_SIGNATURE: plan.model_shape,
    }

    def spec(t, shape=None):
        if shape is None:
            shape = t.shape.as_list() if t.shape.rank is not None else None
        return (
            t.dtype.name,
            None if shape is None else [-1 if d is None else int(d) for d in shape],
        )

    out = {}
    for key in sorted(loaded.signatures.keys(), key=lambda k: (k != SERVING_SIGNATURE, k)):
        fn = loaded.signatures[key]
        _, kwargs = fn.structured_input_signature
        out[key] = {
            "inputs": {
                k: spec(v, checked.get(key) if v.shape.rank is None else None)
                for k, v in sorted(kwargs.items())
            },
            "outputs": {k: spec(v) for k, v in sorted(fn.structured_outputs.items())},
        }
    return out


# ---------------------------------------------------------------------- extras
def _sample_images(shape, count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def _write_warmup(path, name, images):
    """One PredictionLog (tensorflow-serving-api) per image batch, as TF Serving replays them."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for batch in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=name, signature_name=SERVING_SIGNATURE)
            )
            request.inputs["image"].CopyFrom(tf.make_tensor_proto(batch))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def read_warmup_requests(path):
    """The ``PredictionLog`` records of a warmup file (for checks and tests).

    Example:
        >>> result = export_model("runs/se_resnet18", "models/")  # doctest: +SKIP
        >>> logs = read_warmup_requests(result.warmup)  # doctest: +SKIP
        >>> list(logs[0].predict_log.request.inputs)  # doctest: +SKIP
        ['image']
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs


def _read_models_config(path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    if os.path.exists(path):
        try:
            with open(path) as f:
                text_format.Parse(f.read(), config)
        except (OSError, text_format.ParseError) as err:
            raise UsageError(
                f"Existing {MODELS_CONFIG} cannot be read or parsed, not overwriting it "
                f"({' '.join(str(err).split())}). Received: {path!r}"
            ) from err
    return config


def _write_models_config(path, name, base_path):
    """Adds (or updates) ``name`` in the model_config_list, keeping other models."""
    from google.protobuf import text_format

    config = _read_models_config(path)
    entries = config.model_config_list.config
    entry = next((e for e in entries if e.name == name), None) or entries.add()
    entry.name = name
    entry.base_path = base_path
    entry.model_platform = "tensorflow"
    fileio.write_text(path, text_format.MessageToString(config))


# ---------------------------------------------------------------------- export
def export_model(
    source,
    base_dir,
    *,
    name=None,
    version=None,
    with_excitations=False,
    top_k=None,
    dynamic_size=False,
    preprocessing=None,
    precision="float32",
):
    """Exports a classifier as ``<base_dir>/<name>/<version>/`` SavedModel for TF Serving.

    Also writes ``<base_dir>/models.config`` (the model added to its model_config_list)
    and, inside the version, ``assets.extra/`` with the warmup records
    (``tf_serving_warmup_requests``), a sample REST request body (``request.json``)
    and ``keras_se_export.json`` (preprocessing, class names, signatures).
    User errors (bad source, no image input, existing version, unusable base) raise
    ``UsageError`` (a ``ValueError``; ``VersionExistsError`` is also a
    ``FileExistsError``) or ``TypeError`` before anything is written.

    Args:
        source: training run directory, ``.keras`` file, or a ``keras.Model``.
        base_dir: TF Serving base directory (created if needed).
        name: model name; default the run's registry name or the file's stem.
        version: version number; default one more than the highest existing one.
            An existing version is an error (never overwritten).
        with_excitations: add the ``excitations`` signature (SE gate vectors).
        top_k: add ``top_k_probabilities``/``top_k_class_ids`` outputs with k classes.
        dynamic_size: accept any image height/width and resize in the graph to the
            model's size as training's evaluation pipeline does (resize with the spec's
            interpolation, round to 0..255; with ``crop_pct < 1`` resize to
            size / crop_pct and centre-crop). Default: images must have the model's size.
        preprocessing: a `Preprocessing` overriding the one the source carries.
        precision: what the graph computes in: ``"float32"`` (default; a mixed-precision
            model is rebuilt in float32) or ``"bfloat16"`` (the model rebuilt under the
            ``mixed_bfloat16`` policy with the same weights, classifier and softmax in
            float32; see `with_precision`). Inputs and outputs are the same either way.

    Returns:
        An `ExportResult`.

    Example:
        >>> result = export_model("runs/se_resnet18", "models/", name="se_resnet18")  # doctest: +SKIP
        >>> result.path  # doctest: +SKIP
        'models/se_resnet18/1'
    """
    require("tensorflow", feature="keras_se.export", extra="serve")
    require("tensorflow_serving", feature="keras_se.export", extra="serve")
    check_choice("precision", precision, PRECISIONS)
    src = (
        source
        if isinstance(source, ExportSource)
        else load_source(source, preprocessing=preprocessing)
    )
    options = dict(
        name=src.name if name is None else name,
        version=version,
        with_excitations=with_excitations,
        top_k=top_k,
        dynamic_size=dynamic_size,
    )
    plan = _plan(src, **options)  # every check on the model as given, then the rebuild
    model = with_precision(src.model, precision)
    if model is not src.model:
        src = dataclasses.replace(src, model=model)
        plan = _plan(src, **options)  # the SE layers of the rebuilt model

    # Everything that can fail on user input is checked above; now touch the disk.
    base_dir = os.fspath(base_dir)
    config_path = os.path.join(base_dir, MODELS_CONFIG)
    _read_models_config(config_path)  # refuse before writing anything if unparseable
    model_dir = _prepare_model_dir(base_dir, plan.name)
    removed = tuple(remove_stale_temporaries(model_dir))
    version = next_version(model_dir) if plan.version is None else plan.version
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise VersionExistsError(
            f"Version {version} of {plan.name!r} already exists; versions are never "
            f"overwritten (omit --version for the next one). Received: version={version}, "
            f"path={final!r}"
        )

    tmp = os.path.join(model_dir, f"{TMP_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fns = _ServingFunctions(src.model, src.preprocessing, plan)
        _write_archive(fns, tmp, plan)
        images = _sample_images(plan.sample_shape, 2)
        _write_extras(tmp, plan.name, images)
        signatures, max_abs_diff = _verify(tmp, fns, images)
        metadata = {
            "name": plan.name,
            "version": version,
            "source": src.path,
            "keras_model": src.model.name,
            "preprocessing": src.preprocessing.to_dict(),
            "preprocessing_note": src.preprocessing_note,
            "class_names": src.class_names,
            "dynamic_size": plan.dynamic_size,
            "resize_to": list(plan.size) if plan.resize else None,
            "softmax_added": plan.logits,
            "precision": precision,
            "compute_dtypes": sorted({layer.compute_dtype for layer in _all_layers(src.model)}),
            "signatures": signatures,
            "max_abs_diff": max_abs_diff,
        }
        fileio.write_json(os.path.join(tmp, ASSETS_EXTRA, METADATA_FILE), metadata)
        _commit(tmp, final, plan.name, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    _write_models_config(config_path, plan.name, os.path.abspath(model_dir))
    return ExportResult(
        path=final,
        name=plan.name,
        version=version,
        signatures=signatures,
        models_config=config_path,
        request=os.path.join(final, ASSETS_EXTRA, REQUEST_FILE),
        warmup=os.path.join(final, ASSETS_EXTRA, WARMUP_FILE),
        preprocessing=src.preprocessing,
        preprocessing_note=src.preprocessing_note,
        max_abs_diff=max_abs_diff,
        removed_stale=removed,
        precision=precision,
    )


@dataclasses.dataclass(frozen=True)
class _Plan:
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


def _plan(src, *, name, version, with_excitations, top_k, dynamic_size):
    model = src.model
    height, width, channels = _image_input(model)
    classes = _num_classes(model)
    logits = _outputs_logits(model)
    _check_preprocessing(src.preprocessing, channels)
    _check_name(name)
    if version is not None:
        version = _check_version(version)
    if top_k is not None:
        top_k = check_int(
            "top_k",
            top_k,
            minimum=1,
            maximum=classes,
            what=f"an integer from 1 to the number of classes ({classes})",
        )
    if src.num_classes is not None and src.num_classes != classes:
        raise UsageError(
            f"The run's config.json says num_classes={src.num_classes!r} but the model has "
            f"{classes} outputs. Received: model {model.name!r}"
        )
    if src.class_names is not None and len(src.class_names) != classes:
        raise UsageError(
            f"The run's class_names has {len(src.class_names)} names for a model with "
            f"{classes} classes. Received: class_names={src.class_names!r}"
        )
    # Every SE layer (SqueezeExcite, the fused BatchNormSqueezeExcite) is an SEGate: its
    # gate is `excitation(layer input)`, what the signature computes.
    se_layers = [layer for layer in model.layers if isinstance(layer, SEGate)]
    if with_excitations and not se_layers:
        raise UsageError(
            "`with_excitations` needs a model with SqueezeExcite layers. "
            f"Received: model {model.name!r} without any"
        )
    size = _target_size(height, width, src, src.preprocessing)
    resize = bool(dynamic_size) and size is not None
    if resize and src.preprocessing.interpolation not in _INTERPOLATIONS:
        raise UsageError(
            f"Preprocessing `interpolation` must be one of {_INTERPOLATIONS} for in-graph "
            f"resizing. Received: interpolation={src.preprocessing.interpolation!r}"
        )
    if resize and not 0 < src.preprocessing.crop_pct <= 1:
        raise UsageError(
            "Preprocessing `crop_pct` must be in (0, 1]. "
            f"Received: crop_pct={src.preprocessing.crop_pct!r}"
        )
    return _Plan(
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
        se_layers=tuple(se_layers) if with_excitations else (),
    )


def _write_extras(path, name, images):
    """assets.extra/: TF Serving warmup records and the sample REST request body."""
    extra = os.path.join(path, ASSETS_EXTRA)
    os.makedirs(extra)
    _write_warmup(os.path.join(extra, WARMUP_FILE), name, [images[:1]])
    with open(os.path.join(extra, REQUEST_FILE), "w") as f:
        body = {"signature_name": SERVING_SIGNATURE, "instances": images[:1].tolist()}
        json.dump(body, f, separators=(",", ":"))


def _verify(path, fns, images):
    """Reloads the written SavedModel, compares it with the Keras model; (signatures, diff)."""
    import tensorflow as tf

    model = fns.model
    loaded = tf.saved_model.load(path)
    served = loaded.signatures[SERVING_SIGNATURE](image=tf.constant(images))
    expected = fns.head(model(fns.preprocess(tf.constant(images)), training=False))
    diff = served["probabilities"].numpy() - expected["probabilities"].numpy()
    max_abs_diff = float(np.max(np.abs(diff)))
    atol = max(_VERIFY_ATOL.get(layer.compute_dtype, 1e-2) for layer in model.layers)
    if not max_abs_diff <= atol:
        raise RuntimeError(
            "The reloaded SavedModel disagrees with the Keras model: max abs difference "
            f"{max_abs_diff:.3g} > {atol:g}."
        )
    return _describe_signatures(loaded, fns.plan), max_abs_diff


def _commit(tmp, final, name, version):
    """One rename makes the version visible, complete (never over an existing version)."""
    exists = VersionExistsError(
        f"Version {version} of {name!r} was created by another export meanwhile. "
        f"Received: version={version}, path={final!r}"
    )
    if os.path.exists(final):
        raise exists
    try:
        os.rename(tmp, final)
    except OSError as err:
        if os.path.exists(final):
            raise exists from err
        raise


def format_result(result):
    """The CLI's report: the path written, preprocessing, signatures, extras.

    Example:
        >>> from keras_se.data import Preprocessing
        >>> result = ExportResult(
        ...     path="models/net/1", name="net", version=1,
        ...     signatures={"serving_default": {
        ...         "inputs": {"image": ("uint8", (-1, 32, 32, 3))},
        ...         "outputs": {"probabilities": ("float32", (-1, 3))}}},
        ...     models_config="models/models.config",
        ...     request="models/net/1/assets.extra/request.json",
        ...     warmup="models/net/1/assets.extra/tf_serving_warmup_requests",
        ...     preprocessing=Preprocessing(), preprocessing_note="defaults", max_abs_diff=0.0)
        >>> print(format_result(result))
        Exported net version 1 to models/net/1
        preprocessing: mean=[0.485, 0.456, 0.406] std=[0.229, 0.224, 0.225] scale=0.00392157 (from defaults)
        precision: float32
        signature serving_default:
          input  image: uint8 [-1, 32, 32, 3] (checked in the graph)
          output probabilities: float32 [-1, 3]
        models.config: models/models.config
        REST request body: models/net/1/assets.extra/request.json
        warmup requests: models/net/1/assets.extra/tf_serving_warmup_requests
        checked: max |keras - SavedModel| = 0
    """

    def fmt(spec):
        dtype, shape = spec
        if shape is None:
            return f"{dtype} (any shape)"
        return f"{dtype} [{', '.join(str(d) for d in shape)}]"

    p = result.preprocessing
    lines = [
        f"Exported {result.name} version {result.version} to {result.path}",
        f"preprocessing: mean={list(p.mean)} std={list(p.std)} scale={p.scale:.6g} "
        f"(from {result.preprocessing_note})",
        f"precision: {result.precision}"
        + (
            " (mixed_bfloat16: bfloat16 convolutions and matmuls, float32 classifier and outputs)"
            if result.precision == "bfloat16"
            else ""
        ),
    ]
    for sig, io in result.signatures.items():
        lines.append(f"signature {sig}:")
        for key, spec in io["inputs"].items():
            lines.append(f"  input  {key}: {fmt(spec)} (checked in the graph)")
        for key, spec in io["outputs"].items():
            lines.append(f"  output {key}: {fmt(spec)}")
    lines += [
        f"models.config: {result.models_config}",
        f"REST request body: {result.request}",
        f"warmup requests: {result.warmup}",
        f"checked: max |keras - SavedModel| = {result.max_abs_diff:.3g}",
    ]
    if result.removed_stale:
        lines.append(f"removed stale temporary directories: {', '.join(result.removed_stale)}")
    return "\n".join(lines)
