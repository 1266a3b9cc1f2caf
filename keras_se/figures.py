"""The excitation figures of Hu et al. (2018), Section 7.2 ("Role of Excitation"), and Section 3.

1. `plot_excitation_by_depth`: the paper's figure: one panel per SE block, the mean
   excitation of 50 uniformly spaced channels, one line per class (up to 5) and all
   classes together.
2. `plot_specificity_by_depth`: the class-specificity (η², see `keras_se.analysis`)
   of every SE block in network order.
3. `plot_walkthrough`: one SE block on one image (Section 3): the input, the feature
   maps U, the squeeze z, the excitation s (sorted) and the rescaled maps X~ of the
   most and least excited channels.

Each ``plot_*`` function writes ``<out>.png`` and ``<out>.svg`` (`save_figure`) and returns
the two paths; the matching ``*_figure`` function returns the ``matplotlib.figure.Figure``
(for notebooks). Matplotlib is imported lazily and used through its object API
(``Figure`` + Agg canvas), so nothing here changes pyplot's global backend. Every public
name is re-exported by `keras_se.visualize`.
"""

from __future__ import annotations

import math
import os

import numpy as np

from keras_se import analysis as analysis_lib
from keras_se.fonts import text_fonts
from keras_se_core.errors import UsageError
from keras_se_core.fileio import atomic_path

#: Classes drawn at most in the excitation-by-depth figure (the paper shows 4–5).
MAX_CLASSES = 5
#: Channels sampled per panel in the excitation-by-depth figure (the paper: 50).
NUM_CHANNELS = 50
FORMATS = ("png", "svg")


# --------------------------------------------------------------------------- helpers
def new_figure(width, height, *, layout="constrained"):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches, outside pyplot (no global backend).

    Example:
        >>> new_figure(6, 4).get_size_inches().tolist()
        [6.0, 4.0]
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def save_figure(fig, out):
    """Writes ``fig`` to ``<out>.png`` and ``<out>.svg`` (each atomically); returns ``(png, svg)``.

    ``out`` may end in ``.png`` or ``.svg``; the extension is dropped. Parent
    directories are created.

    Example:
        >>> import os, tempfile
        >>> from matplotlib.figure import Figure
        >>> fig = Figure()
        >>> _ = fig.add_subplot().plot([1, 2, 3])
        >>> out = os.path.join(tempfile.mkdtemp(), "figs", "line.png")
        >>> [os.path.basename(p) for p in save_figure(fig, out)]
        ['line.png', 'line.svg']
    """
    out = os.fspath(out)
    root, ext = os.path.splitext(out)
    if ext.lower() in (".png", ".svg"):
        out = root
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = f"{out}.{fmt}"
        with atomic_path(path) as tmp:  # a reader never sees half a figure
            fig.savefig(tmp, format=fmt, dpi=110)
        paths.append(path)
    return tuple(paths)


def sampled_channels(channels, count=NUM_CHANNELS):
    """``count`` uniformly spaced channel indices in ``[0, channels)`` (all if fewer).

    Example:
        >>> sampled_channels(512)[:4].tolist(), len(sampled_channels(512)), len(sampled_channels(32))
        ([0, 10, 21, 31], 50, 32)
    """
    if channels <= count:
        return np.arange(channels)
    return np.unique(np.round(np.linspace(0, channels - 1, count)).astype(int))


def resolve_classes(classes, class_names):
    """Class indices from indices or names; default: up to 5 classes spread over the list.

    Args:
        classes: None, or a list of class indices (int or digit strings) or class names.
        class_names: the dataset's class names.

    Returns:
        A list of class indices.

    Raises:
        ValueError: for an index out of range or an unknown name.

    Example:
        >>> resolve_classes(None, [str(i) for i in range(10)])
        [0, 2, 4, 7, 9]
    """
    num = len(class_names)
    if classes is None:
        count = min(MAX_CLASSES, num)
        return sorted({int(round(v)) for v in np.linspace(0, num - 1, count)})
    if isinstance(classes, (str, int)):
        classes = [classes]
    chosen = []
    for item in classes:
        if isinstance(item, str) and item.strip() in class_names:
            index = class_names.index(item.strip())
        else:
            try:
                index = int(item)
            except (TypeError, ValueError):
                raise UsageError(
                    f"`classes` must be class indices in [0, {num}) or class names "
                    f"({', '.join(map(str, class_names[:10]))}{', ...' if num > 10 else ''}). "
                    f"Received: classes={item!r}"
                ) from None
            if isinstance(item, bool) or not 0 <= index < num:
                raise UsageError(
                    f"`classes` index out of range: the dataset has {num} classes "
                    f"(indices 0..{num - 1}). Received: classes={item!r}"
                )
        if index not in chosen:
            chosen.append(index)
    if len(chosen) > MAX_CLASSES:
        raise UsageError(
            f"`classes` draws at most {MAX_CLASSES} classes (one line each). "
            f"Received: {len(chosen)} classes"
        )
    return chosen


# --------------------------------------------------------------------------- figure 1
def excitation_by_depth_figure(analysis, *, blocks="default", classes=None):
    """The paper's excitation figure: one panel per SE block (see `plot_excitation_by_depth`).

    Example (a matplotlib ``Figure``; the paper's selection is 5 blocks here):
        >>> import numpy as np
        >>> from keras_se import models
        >>> from keras_se.analysis import analyze_excitations
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> images = np.random.default_rng(0).random((12, 16, 16, 3), dtype="float32")
        >>> analysis = analyze_excitations(model, (images, np.arange(12) % 3), verbose=0)
        >>> len(excitation_by_depth_figure(analysis).axes)
        5
    """
    chosen = analysis_lib.select_blocks(analysis.blocks, blocks)
    class_ids = resolve_classes(classes, analysis.class_names)
    with text_fonts([analysis.class_names[c] for c in class_ids]):
        return _excitation_by_depth_figure(analysis, chosen, class_ids)


def _excitation_by_depth_figure(analysis, chosen, class_ids):
    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = new_figure(4.2 * cols, 3.0 * rows + 0.6)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    handles = []
    for i, stats in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, i + 1)
        channels = sampled_channels(stats.channels)
        positions = channels
        handles = []
        for color, c in zip(colors, class_ids):
            (line,) = ax.plot(
                positions,
                stats.class_means[c, channels],
                color=color,
                lw=1.0,
                label=f"class {analysis.class_names[c]}",
            )
            handles.append(line)
        (line,) = ax.plot(
            positions, stats.mean[channels], color="black", lw=1.8, ls="--", label="all"
        )
        handles.append(line)
        spec = "n/a" if math.isnan(stats.specificity) else f"{stats.specificity:.3f}"
        ax.set_title(f"{stats.label} ({stats.name})  η²={spec}", fontsize=9)
        ax.set_xlabel(
            f"channel ({len(channels)} of {stats.channels}, uniformly spaced)", fontsize=8
        )
        ax.set_ylabel("mean excitation", fontsize=8)
        ax.tick_params(labelsize=7)
        low = min(0.0, np.nanmin(stats.class_means[:, channels]))
        high = max(1.0, np.nanmax(stats.class_means[:, channels]))
        ax.set_ylim(low - 0.02, high + 0.02)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(
        f"Excitation by depth: {analysis.model_name}, {analysis.num_images} images", fontsize=10
    )
    return fig


def plot_excitation_by_depth(analysis, out, *, blocks="default", classes=None):
    """Figure 1: mean excitation per channel and class, one panel per SE block.

    As in the paper: x = 50 uniformly spaced channel indices of the block, y = the mean
    excitation over the images of each class (one line per class, at most 5, named)
    and over all images (dashed).

    Args:
        analysis: an `keras_se.analysis.ExcitationAnalysis`.
        out: output path without extension (``.png`` and ``.svg`` are written).
        blocks: ``"default"`` (the paper's selection: last block of each stage, then
            the final blocks), ``"all"`` or a list (see `keras_se.analysis.select_blocks`).
        classes: class indices or names (default: up to 5 spread over the classes).

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> plot_excitation_by_depth(result, "figs/excitation_by_depth")  # doctest: +SKIP
        ('figs/excitation_by_depth.png', 'figs/excitation_by_depth.svg')
    """
    names = [analysis.class_names[c] for c in resolve_classes(classes, analysis.class_names)]
    with text_fonts(names):
        return save_figure(
            excitation_by_depth_figure(analysis, blocks=blocks, classes=classes), out
        )


# --------------------------------------------------------------------------- figure 2
def specificity_by_depth_figure(analysis):
    """Class-specificity against depth, one point per SE block (see `plot_specificity_by_depth`).

    Example (a matplotlib ``Figure`` with one panel):
        >>> import numpy as np
        >>> from keras_se import models
        >>> from keras_se.analysis import analyze_excitations
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> images = np.random.default_rng(0).random((12, 16, 16, 3), dtype="float32")
        >>> analysis = analyze_excitations(model, (images, np.arange(12) % 3), verbose=0)
        >>> len(specificity_by_depth_figure(analysis).axes)
        1
    """
    blocks = analysis.blocks
    fig = new_figure(max(5.0, 0.35 * len(blocks) + 2.5), 3.8)
    ax = fig.add_subplot(1, 1, 1)
    depth = np.array([b.depth for b in blocks])
    spec = np.array([b.specificity for b in blocks], "float64")
    ax.plot(depth, spec, color="0.6", lw=1, zorder=1)
    stages = sorted({b.stage for b in blocks})
    cmap = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for k, stage in enumerate(stages):
        mask = np.array([b.stage == stage for b in blocks])
        ax.scatter(
            depth[mask], spec[mask], color=cmap[k % len(cmap)], label=f"stage {stage}", zorder=2
        )
    ax.set_xticks(depth)
    labels = [b.label for b in blocks] if len(blocks) <= 60 else [str(d) for d in depth]
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_xlabel("SE block (network order)")
    ax.set_ylabel("class-specificity η²")
    finite = spec[np.isfinite(spec)]
    ax.set_ylim(0, max(0.05, float(finite.max()) * 1.15) if finite.size else 1)
    ax.legend(fontsize=8)
    ax.set_title(f"Class-specificity by depth: {analysis.model_name}", fontsize=10)
    return fig


def plot_specificity_by_depth(analysis, out):
    """Figure 2: each SE block's class-specificity (mean η² over channels) in network order.

    Args:
        analysis: an `keras_se.analysis.ExcitationAnalysis`.
        out: output path without extension.

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from keras_se import models
        >>> from keras_se.analysis import analyze_excitations
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> images = np.random.default_rng(0).random((12, 16, 16, 3), dtype="float32")
        >>> analysis = analyze_excitations(model, (images, np.arange(12) % 3), verbose=0)
        >>> out = os.path.join(tempfile.mkdtemp(), "specificity_by_depth")
        >>> [os.path.basename(p) for p in plot_specificity_by_depth(analysis, out)]
        ['specificity_by_depth.png', 'specificity_by_depth.svg']
    """
    return save_figure(specificity_by_depth_figure(analysis), out)


# --------------------------------------------------------------------------- figure 3
#: Feature maps of U drawn in the walkthrough grid, and channels in each X~ row.
WALKTHROUGH_MAPS = 16
WALKTHROUGH_EXTREMES = 5


def _show_image(ax, image):
    image = np.asarray(image, "float32")
    low, high = float(image.min()), float(image.max())
    shown = (image - low) / (high - low) if high > low else np.zeros_like(image)
    if shown.shape[-1] == 1 or np.allclose(shown, shown[..., :1]):
        ax.imshow(shown[..., 0], cmap="gray")
    else:
        ax.imshow(shown[..., :3])
    ax.set_xticks([])
    ax.set_yticks([])


def _show_map(ax, values, title, vmin, vmax):
    ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def walkthrough_figure(walk, *, title=None):
    """One SE block on one image (see `plot_walkthrough`); ``walk`` from `keras_se.analysis.walkthrough`.

    Example (a matplotlib ``Figure``; a 32-channel block):
        >>> import numpy as np
        >>> from keras_se import models
        >>> from keras_se.analysis import walkthrough
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> image = np.random.default_rng(0).random((16, 16, 3), dtype="float32")
        >>> walk = walkthrough(model, image, block="conv3_block1_se")
        >>> fig = walkthrough_figure(walk, title="class 0")
        >>> len(fig.axes) == walkthrough_panels(32)
        True
    """
    with text_fonts([title or ""]):
        return _walkthrough_figure(walk, title=title)


def _walkthrough_figure(walk, *, title):
    from matplotlib.gridspec import GridSpec

    channels = walk.features.shape[-1]
    maps = min(WALKTHROUGH_MAPS, channels)
    extremes = min(WALKTHROUGH_EXTREMES, max(1, channels // 2))
    fig = new_figure(15, 9, layout=None)
    grid = GridSpec(
        4,
        10,
        figure=fig,
        height_ratios=[1, 1, 1.2, 1.1],
        left=0.04,
        right=0.99,
        bottom=0.02,
        top=0.92,
        wspace=0.25,
        hspace=0.45,
    )

    ax = fig.add_subplot(grid[0:2, 0:2])
    _show_image(ax, walk.image)
    ax.set_title(title or "input image", fontsize=9)

    for k in range(maps):
        ax = fig.add_subplot(grid[k // 8, 2 + k % 8])
        u = walk.features[..., k]
        _show_map(ax, u, f"U[{k}]", float(u.min()), float(u.max()) or None)

    ax = fig.add_subplot(grid[2, 0:5])
    ax.bar(np.arange(channels), walk.squeeze, width=1.0, color="tab:gray")
    ax.set_title("squeeze z = global pooling of U (channel order)", fontsize=9)
    ax.set_xlabel("channel", fontsize=8)
    ax.tick_params(labelsize=7)

    order = np.argsort(-walk.excitation, kind="stable")
    top, bottom = order[:extremes], order[::-1][:extremes]
    ax = fig.add_subplot(grid[2, 5:10])
    colors = np.full(channels, "tab:blue", dtype=object)
    colors[:extremes], colors[channels - extremes :] = "tab:green", "tab:red"
    ax.bar(np.arange(channels), walk.excitation[order], width=1.0, color=list(colors))
    ax.set_ylim(0, max(1.0, float(walk.excitation.max())) * 1.02)
    ax.set_title("excitation s (channels sorted; green: most, red: least excited)", fontsize=9)
    ax.set_xlabel("rank", fontsize=8)
    ax.tick_params(labelsize=7)

    # X~_c = s_c U_c drawn on U_c's own colour scale, so a small gate shows as a faded map.
    for column, c in [*enumerate(top), *((5 + k, c) for k, c in enumerate(bottom))]:
        u = walk.features[..., c]
        ax = fig.add_subplot(grid[3, column])
        _show_map(ax, walk.scaled[..., c], f"X~[{c}] s={walk.excitation[c]:.2f}", u.min(), u.max())
    b = walk.block
    fig.suptitle(
        f"{b.label} ({b.name}): U {walk.features.shape[0]}x{walk.features.shape[1]}x{channels} → "
        "z → s → X~ = s·U (bottom row: most and least excited channels, on U's colour scale)",
        fontsize=10,
    )
    return fig


def walkthrough_panels(channels):
    """The number of panels (axes) of the walkthrough figure for a block of ``channels``.

    Example (the image, 16 maps U, z, s, and 5 + 5 rescaled maps; fewer for few channels):
        >>> walkthrough_panels(32), walkthrough_panels(4)
        (29, 11)
    """
    extremes = min(WALKTHROUGH_EXTREMES, max(1, channels // 2))
    return 1 + min(WALKTHROUGH_MAPS, channels) + 2 + 2 * extremes


def plot_walkthrough(walk, out, *, title=None):
    """Figure 3: one SE block on one image, step by step (the paper's Section 3).

    Panels: the input image; a grid of the first 16 feature maps U entering the block;
    the squeeze vector z; the excitation s as a bar chart with channels sorted; the
    rescaled maps X~ = s·U of the 5 most and 5 least excited channels, each drawn on
    its U map's colour scale so the gate's effect is visible.

    Args:
        walk: a `keras_se.analysis.Walkthrough` (from `keras_se.analysis.walkthrough`).
        out: output path without extension.
        title: title of the input image panel (e.g. its class).

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from keras_se import models
        >>> from keras_se.analysis import walkthrough
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> image = np.random.default_rng(0).random((16, 16, 3), dtype="float32")
        >>> walk = walkthrough(model, image, block="conv3_block1_se")
        >>> out = os.path.join(tempfile.mkdtemp(), "walkthrough")
        >>> [os.path.basename(p) for p in plot_walkthrough(walk, out, title="class 0")]
        ['walkthrough.png', 'walkthrough.svg']
    """
    with text_fonts([title or ""]):
        return save_figure(walkthrough_figure(walk, title=title), out)
