"""`export_model`: check everything, write the version into a temporary directory, verify, publish.

The steps, in order: load the source and check it with the arguments (`make_plan`), rebuild
the model in the requested precision, refuse an unusable base or an existing version, then
write the SavedModel, its ``assets.extra/`` and metadata into ``.tmp-export-…``, reload and
compare it with the Keras model, and publish it with one rename. ``models.config`` is
updated last, once the version exists.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from keras_se.data import Preprocessing
from keras_se.export.assets import sample_images, write_extras, write_metadata
from keras_se.export.layout import (
    ASSETS_EXTRA,
    MODELS_CONFIG,
    REQUEST_FILE,
    WARMUP_FILE,
    next_version,
    prepare_model_dir,
    publish,
    read_models_config,
    remove_stale_temporaries,
    temporary_path,
    version_path,
    write_models_config,
)
from keras_se.export.plan import make_plan
from keras_se.export.precision import PRECISIONS, all_layers, with_precision
from keras_se.export.savedmodel import ServingFunctions, verify, write_archive
from keras_se.export.sources import ExportSource, load_source
from keras_se.extras import require
from keras_se_core.validation import check_choice


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
    src, plan = _checked(
        src,
        precision,
        name=src.name if name is None else name,
        version=version,
        with_excitations=with_excitations,
        top_k=top_k,
        dynamic_size=dynamic_size,
    )

    # Everything that can fail on user input is checked above; now touch the disk.
    base_dir = os.fspath(base_dir)
    config_path = os.path.join(base_dir, MODELS_CONFIG)
    read_models_config(config_path)  # refuse before writing anything if unparseable
    model_dir = prepare_model_dir(base_dir, plan.name)
    removed = tuple(remove_stale_temporaries(model_dir))
    version = next_version(model_dir) if plan.version is None else plan.version
    final = version_path(model_dir, plan.name, version)
    signatures, max_abs_diff = _write_version(src, plan, model_dir, final, version, precision)
    write_models_config(config_path, plan.name, os.path.abspath(model_dir))
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


def _checked(src, precision, **options):
    """(source with the model in ``precision``, its `Plan`): every check before the disk."""
    plan = make_plan(src, **options)  # every check on the model as given, then the rebuild
    model = with_precision(src.model, precision)
    if model is not src.model:
        src = dataclasses.replace(src, model=model)
        plan = make_plan(src, **options)  # the SE layers of the rebuilt model
    return src, plan


def _write_version(src, plan, model_dir, final, version, precision):
    """Writes, verifies and publishes the version at ``final``; (signatures, max_abs_diff).

    Everything is written into a temporary directory first, removed on any failure or
    interruption (``BaseException``: a KeyboardInterrupt too), which is then re-raised.
    """
    tmp = temporary_path(model_dir, version)
    try:
        fns = ServingFunctions(src.model, src.preprocessing, plan)
        write_archive(fns, tmp)
        images = sample_images(plan.sample_shape, 2)
        write_extras(tmp, plan.name, images)
        signatures, max_abs_diff = verify(tmp, fns, images)
        write_metadata(tmp, _metadata(src, plan, version, precision, signatures, max_abs_diff))
        publish(tmp, final, plan.name, version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return signatures, max_abs_diff


def _metadata(src, plan, version, precision, signatures, max_abs_diff):
    """The contents of ``assets.extra/keras_se_export.json``."""
    return {
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
        "compute_dtypes": sorted({layer.compute_dtype for layer in all_layers(src.model)}),
        "signatures": signatures,
        "max_abs_diff": max_abs_diff,
    }


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
            lines.append(f"  input  {key}: {_format_spec(spec)} (checked in the graph)")
        for key, spec in io["outputs"].items():
            lines.append(f"  output {key}: {_format_spec(spec)}")
    lines += [
        f"models.config: {result.models_config}",
        f"REST request body: {result.request}",
        f"warmup requests: {result.warmup}",
        f"checked: max |keras - SavedModel| = {result.max_abs_diff:.3g}",
    ]
    if result.removed_stale:
        lines.append(f"removed stale temporary directories: {', '.join(result.removed_stale)}")
    return "\n".join(lines)


def _format_spec(spec):
    """``("uint8", [-1, 32, 32, 3])`` → ``"uint8 [-1, 32, 32, 3]"``."""
    dtype, shape = spec
    if shape is None:
        return f"{dtype} (any shape)"
    return f"{dtype} [{', '.join(str(d) for d in shape)}]"
