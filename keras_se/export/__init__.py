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

The package, one job a module: `keras_se.export.sources` (what is read: run directories,
``.keras`` files), `keras_se.export.plan` (every check before the disk),
`keras_se.export.precision` (``with_precision``), `keras_se.export.savedmodel` (the serving
functions and signatures, written and verified), `keras_se.export.assets` (``assets.extra/``),
`keras_se.export.layout` (versions, temporaries, ``models.config``, the publishing rename) and
`keras_se.export.exporter` (``export_model``, the steps in order, and the CLI's report).
"""

from keras_se.export.assets import read_warmup_requests
from keras_se.export.exporter import ExportResult, export_model, format_result
from keras_se.export.layout import (
    ASSETS_EXTRA,
    METADATA_FILE,
    MODELS_CONFIG,
    REQUEST_FILE,
    TMP_PREFIX,
    WARMUP_FILE,
    VersionExistsError,
    existing_versions,
    next_version,
    remove_stale_temporaries,
)
from keras_se.export.precision import PRECISIONS, with_precision
from keras_se.export.savedmodel import (
    EXCITATIONS_SIGNATURE,
    PREPROCESSED_SIGNATURE,
    SERVING_SIGNATURE,
)
from keras_se.export.sources import (
    RUN_CONFIG_FILE,
    RUN_MODEL_FILE,
    ExportSource,
    load_source,
    served_name,
)

__all__ = [
    "export_model",
    "ExportResult",
    "format_result",
    "load_source",
    "ExportSource",
    "served_name",
    "with_precision",
    "PRECISIONS",
    "existing_versions",
    "next_version",
    "remove_stale_temporaries",
    "VersionExistsError",
    "read_warmup_requests",
    "SERVING_SIGNATURE",
    "PREPROCESSED_SIGNATURE",
    "EXCITATIONS_SIGNATURE",
    "MODELS_CONFIG",
    "ASSETS_EXTRA",
    "WARMUP_FILE",
    "REQUEST_FILE",
    "METADATA_FILE",
    "TMP_PREFIX",
    "RUN_MODEL_FILE",
    "RUN_CONFIG_FILE",
]
