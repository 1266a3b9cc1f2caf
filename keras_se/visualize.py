"""The excitation analysis of a model, written as figures: what ``keras-se visualize`` runs.

`visualize_model` loads a model (a run directory, a ``.keras`` file, a ``keras.Model`` or a
registry name), measures its excitations on a dataset (`keras_se.analysis`, Hu et al., 2018,
Section 7.2) and writes ``excitations.json`` and figures 1–3; `format_result` is the
command's table. This module is also the one import for every figure: figures 1–3 of
`keras_se.figures` (excitation by depth, specificity by depth, the one-image walkthrough),
the reduction-ratio figures of `keras_se.ratio_figures` (the paper's Table 10 trade-off) and
`keras_se.fonts` (class names in any script) are re-exported here. Each ``plot_*`` function
writes ``<out>.png`` and ``<out>.svg`` and returns the two paths; the matching ``*_figure``
function returns the ``matplotlib.figure.Figure`` (for notebooks).
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np

from keras_se import analysis as analysis_lib
from keras_se import data as data_lib
from keras_se import models
from keras_se.figures import (
    FORMATS,
    MAX_CLASSES,
    NUM_CHANNELS,
    WALKTHROUGH_EXTREMES,
    WALKTHROUGH_MAPS,
    excitation_by_depth_figure,
    plot_excitation_by_depth,
    plot_specificity_by_depth,
    plot_walkthrough,
    resolve_classes,
    sampled_channels,
    save_figure,
    specificity_by_depth_figure,
    walkthrough_figure,
    walkthrough_panels,
)
from keras_se.fonts import (
    FALLBACK_FAMILIES,
    FALLBACK_FILES,
    FONT_HINT,
    MissingGlyphWarning,
    fonts_for_text,
    text_fonts,
)
from keras_se.ratio_figures import (
    plot_ratio_tradeoff,
    plot_specificity_by_ratio,
    ratio_tradeoff_figure,
    specificity_by_ratio_figure,
)
from keras_se.rundir import RunDir
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_choice, check_int

__all__ = [
    "MAX_CLASSES",
    "NUM_CHANNELS",
    "FORMATS",
    "FALLBACK_FAMILIES",
    "FALLBACK_FILES",
    "FONT_HINT",
    "MissingGlyphWarning",
    "save_figure",
    "fonts_for_text",
    "sampled_channels",
    "resolve_classes",
    "excitation_by_depth_figure",
    "plot_excitation_by_depth",
    "specificity_by_depth_figure",
    "plot_specificity_by_depth",
    "WALKTHROUGH_MAPS",
    "WALKTHROUGH_EXTREMES",
    "walkthrough_figure",
    "walkthrough_panels",
    "plot_walkthrough",
    "ratio_tradeoff_figure",
    "plot_ratio_tradeoff",
    "specificity_by_ratio_figure",
    "plot_specificity_by_ratio",
    "VisualizeResult",
    "visualize_model",
    "format_result",
]


@dataclasses.dataclass
class VisualizeResult:
    """What `visualize_model` computed and wrote.

    Attributes:
        analysis: the `keras_se.analysis.ExcitationAnalysis`.
        files: ``{"analysis": json_path, "excitation_by_depth": (png, svg),
            "specificity_by_depth": (png, svg), "walkthrough": (png, svg)}``.
        image_index, image_label: the walkthrough image and its class index.
        untrained: True when ``source`` was a registry name (random weights).

    Example:
        >>> result = visualize_model("runs/quickstart/run", out="figs")  # doctest: +SKIP
        >>> result.untrained, result.files["walkthrough"]  # doctest: +SKIP
        (False, ('figs/walkthrough.png', 'figs/walkthrough.svg'))
    """

    analysis: object
    files: dict
    image_index: int
    image_label: int
    untrained: bool = False


def _load_model(source):
    """(model or registry name, class_names, preprocessing, run dataset, untrained)."""
    from keras_se import export

    if isinstance(source, str) and not os.path.exists(source) and source in models.names():
        return source, None, None, None, True
    src = export.load_source(source)
    # Only a saved spec overrides the dataset's own preprocessing (not export's ImageNet default).
    preprocessing = data_lib.load_preprocessing(src.path) if src.path else None
    run_dataset = None
    if isinstance(source, (str, os.PathLike)) and RunDir.is_run_dir(source):
        run_dataset = (RunDir(source).read_config().get("train") or {}).get("dataset")
    return src.model, src.class_names, preprocessing, run_dataset, False


def _input_size(model):
    shape = model.inputs[0].shape
    spatial = shape[1:3] if keras.config.image_data_format() == "channels_last" else shape[2:4]
    return spatial[0] if spatial[0] is not None and spatial[0] == spatial[1] else None


def visualize_model(
    source,
    *,
    dataset=None,
    out="figures",
    split="validation",
    blocks=None,
    classes=None,
    image_index=0,
    walkthrough_block=None,
    batch_size=64,
    max_images=None,
    verbose=1,
):
    """Excitation analysis and figures 1–3 for a model: what ``keras-se visualize`` runs.

    Writes into ``out``: ``excitations.json`` (`keras_se.analysis.ExcitationAnalysis`),
    ``excitation_by_depth.{png,svg}``, ``specificity_by_depth.{png,svg}`` and
    ``walkthrough.{png,svg}``.

    Args:
        source: a training run directory, a ``.keras`` file, a ``keras.Model``, or a
            registry name (an untrained model: for the mechanics only).
        dataset: ``"digits"``, a TFDS name or an image folder (see `keras_se.data`);
            default: the run's dataset, else digits.
        out: output directory.
        split: ``"validation"`` or ``"train"`` (no augmentation either way).
        blocks: SE blocks to analyse and draw in figure 1; None analyses all blocks
            and draws the paper's selection (`keras_se.analysis.default_blocks`).
        classes: classes drawn in figure 1 (indices or names; at most 5).
        image_index: index in ``split`` of the walkthrough image.
        walkthrough_block: SE block of the walkthrough (default: the last block of
            the second stage).
        batch_size, max_images, verbose: as in `keras_se.analysis.analyze_excitations`.

    Returns:
        A `VisualizeResult`.

    Example:
        >>> result = visualize_model("runs/quickstart/run", out="figs")  # doctest: +SKIP
        >>> print(result.analysis.format_table())  # doctest: +SKIP
    """
    check_choice("split", split, ("train", "validation"))
    model, untrained, info, source_split = _dataset_for(
        source, dataset, split=split, image_index=image_index, verbose=verbose
    )
    class_names = list(info.class_names)
    class_ids = resolve_classes(classes, class_names)
    all_blocks = analysis_lib.find_se_blocks(model)
    chosen = analysis_lib.select_blocks(all_blocks, blocks)
    walk_block = (
        analysis_lib.select_blocks(all_blocks, [walkthrough_block])[0]
        if walkthrough_block is not None
        else analysis_lib.default_walkthrough_block(all_blocks)
    )

    ds = data_lib.make_dataset(info, source_split, training=False, batch_size=batch_size)
    result = analysis_lib.analyze_excitations(
        model,
        ds,
        blocks=[b.name for b in chosen],
        class_names=class_names,
        max_images=max_images,
        verbose=verbose,
    )
    image, label = next(iter(ds.unbatch().skip(image_index).take(1)))
    label = int(label)
    walk = analysis_lib.walkthrough(model, np.asarray(image), block=walk_block.name)
    title = f"{split} image {image_index}, class {class_names[label]}"
    files = _write_figures(
        result, walk, out, class_ids=class_ids, all_blocks=blocks is None, title=title
    )
    return VisualizeResult(
        analysis=result,
        files=files,
        image_index=image_index,
        image_label=label,
        untrained=untrained,
    )


def _dataset_for(source, dataset, *, split, image_index, verbose):
    """``(model, untrained, DatasetInfo, the split's source)`` for `visualize_model`, checked."""
    model, run_classes, preprocessing, run_dataset, untrained = _load_model(source)
    dataset = dataset or run_dataset or data_lib.DIGITS
    image_size = None if untrained else _input_size(model)
    info, sources = data_lib.describe_dataset(dataset, image_size=image_size)
    if verbose and info.image_size_note:  # an untrained model on an image folder
        print(info.image_size_note)
    if untrained:
        model = models.get(model, input_shape=tuple(info.image_shape), classes=info.num_classes)
    if preprocessing is not None:
        info = dataclasses.replace(info, preprocessing=preprocessing)
    size = sources[split].size
    check_int(
        "image_index",
        image_index,
        minimum=0,
        maximum=size - 1,
        what=f"an image index in [0, {size}) (the {split} split of {dataset!r} has {size} images)",
    )
    if run_classes is not None and len(run_classes) != info.num_classes:
        raise UsageError(
            f"The model was trained on {len(run_classes)} classes but dataset {dataset!r} has "
            f"{info.num_classes}. Received: dataset={dataset!r}"
        )
    return model, untrained, info, sources[split]


def _write_figures(result, walk, out, *, class_ids, all_blocks, title):
    """Writes the analysis JSON and figures 1–3 into ``out``; ``{key: path or (png, svg)}``."""
    os.makedirs(out, exist_ok=True)
    files = {"analysis": result.save_json(os.path.join(out, "excitations.json"))}
    names = [result.class_names[c] for c in class_ids]
    with text_fonts([*names, title]):  # at most one warning
        files["excitation_by_depth"] = plot_excitation_by_depth(
            result,
            os.path.join(out, "excitation_by_depth"),
            blocks="default" if all_blocks else "all",
            classes=class_ids,
        )
        files["specificity_by_depth"] = plot_specificity_by_depth(
            result, os.path.join(out, "specificity_by_depth")
        )
        files["walkthrough"] = plot_walkthrough(walk, os.path.join(out, "walkthrough"), title=title)
    return files


def format_result(result):
    """The table and file list printed by ``keras-se visualize``.

    Example (an untrained registry model on 20 digits, a few seconds):
        >>> import tempfile
        >>> result = visualize_model("se_resnet20_cifar", out=tempfile.mkdtemp(), max_images=20,
        ...                          verbose=0)
        >>> for line in format_result(result).splitlines()[:2]:  # then a row per SE block
        ...     print(line)
        se_resnet20_cifar: 20 images (untrained model: random weights)
        block            label    depth channels specificity  spread
    """
    lines = [
        f"{result.analysis.model_name}: {result.analysis.num_images} images"
        + (" (untrained model: random weights)" if result.untrained else ""),
        result.analysis.format_table(),
    ]
    for key, value in result.files.items():
        paths = value if isinstance(value, tuple) else (value,)
        lines.append(f"{key:>21}: {', '.join(paths)}")
    return "\n".join(lines)
