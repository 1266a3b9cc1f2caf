"""Figures of what SE blocks do (Hu et al., 2018, Section 7.2, "Role of Excitation").

1. `plot_excitation_by_depth`: the paper's figure: one panel per SE block, the mean
   excitation of 50 uniformly spaced channels, one line per class (up to 5) and all
   classes together.
2. `plot_specificity_by_depth`: the class-specificity (η², see `keras_se.analysis`)
   of every SE block in network order.
3. `plot_walkthrough`: one SE block on one image (Section 3): the input, the feature
   maps U, the squeeze z, the excitation s (sorted) and the rescaled maps X~ of the
   most and least excited channels.
4. `plot_ratio_tradeoff`: accuracy against parameters for each reduction ratio of a
   `keras_se.tuning` search (the paper's Table 10 trade-off).

Each ``plot_*`` function writes ``<out>.png`` and ``<out>.svg`` and returns the two
paths; the matching ``*_figure`` function returns the ``matplotlib.figure.Figure``
(for notebooks). Matplotlib is imported lazily and used through its object API
(``Figure`` + Agg canvas), so nothing here changes pyplot's global backend.
`visualize_model` runs the whole analysis behind ``keras-se visualize``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import re
import warnings

import numpy as np

from keras_se import analysis as analysis_lib
from keras_se.rundir import RunDir
from keras_se_core.errors import UsageError
from keras_se_core.fileio import atomic_path
from keras_se_core.validation import check_choice, check_int

#: Classes drawn at most in the excitation-by-depth figure (the paper shows 4–5).
MAX_CLASSES = 5
#: Channels sampled per panel in the excitation-by-depth figure (the paper: 50).
NUM_CHANNELS = 50
FORMATS = ("png", "svg")
#: Families tried, in order, when the default font (DejaVu Sans) lacks a class name's
#: glyphs: common fonts with the CJK (Chinese, Japanese, Korean) ideographs and kana.
FALLBACK_FAMILIES = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Source Han Sans", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
    "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN", "IPAGothic", "IPAexGothic",
    "Noto Sans SC", "Noto Sans JP", "Noto Sans KR", "NanumGothic", "Microsoft YaHei",
    "SimHei", "Yu Gothic", "MS Gothic", "Malgun Gothic", "PingFang SC", "Hiragino Sans",
    "Apple SD Gothic Neo", "Arial Unicode MS",
)  # fmt: skip
#: File-name fragments (lower case, no ``-``/``_``) of those fonts: finds one installed after
#: matplotlib cached its font list (the cache is not refreshed when fonts are added).
FALLBACK_FILES = (
    "notosanscjk", "notoserifcjk", "sourcehan", "wqy", "droidsansfallback", "uming", "ukai",
    "ipag", "ipaexg", "nanum", "msyh", "simhei", "yugoth", "msgothic", "malgun", "pingfang",
    "hiragino", "applesdgothic", "arialuni",
)  # fmt: skip
FONT_HINT = (
    "install a CJK font, e.g. `apt-get install fonts-noto-cjk` (Debian/Ubuntu), "
    "`dnf install google-noto-sans-cjk-fonts` (Fedora) or `brew install --cask font-noto-sans-cjk`"
)
#: ``(characters, font.family list or None)`` resolved by an enclosing `_text_fonts`.
_RESOLVED_FONTS = contextvars.ContextVar("keras_se_resolved_fonts", default=None)


class MissingGlyphWarning(UserWarning):
    """No installed font has the glyphs of some text (class names) drawn in a figure.

    The figure is still written (with boxes for the missing glyphs); the warning names
    the characters and how to install a font that has them.

    Example (silencing it):
        >>> import warnings
        >>> issubclass(MissingGlyphWarning, UserWarning)
        True
        >>> with warnings.catch_warnings():  # doctest: +SKIP
        ...     warnings.simplefilter("ignore", MissingGlyphWarning)
        ...     visualize_model("runs/flowers", classes=["雏菊"])
    """


# --------------------------------------------------------------------------- helpers
def _figure(width, height, *, layout="constrained"):
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


def _has_glyphs(path, chars):
    from matplotlib import font_manager

    try:
        font = font_manager.get_font(path)  # cached FT2Font (face 0 of a .ttc collection)
    except (OSError, RuntimeError):
        return False
    return all(font.get_char_index(ord(c)) != 0 for c in chars)


def _fallback_family(chars):
    """The first of `FALLBACK_FAMILIES` installed with every glyph of ``chars``, or None."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    paths = {}
    for entry in manager.ttflist:
        paths.setdefault(entry.name, entry.fname)
    for family in FALLBACK_FAMILIES:
        if family in paths and _has_glyphs(paths[family], chars):
            return family
    known = {entry.fname for entry in manager.ttflist}
    for path in sorted(font_manager.findSystemFonts()):
        flat = re.sub(r"[-_ ]", "", os.path.basename(path).lower())
        if path not in known and flat.startswith(FALLBACK_FILES) and _has_glyphs(path, chars):
            first = len(manager.ttflist)
            manager.addfont(path)  # matplotlib's way to use a font missing from its cache
            return manager.ttflist[first].name  # face 0 of a collection: the one checked
    return None


def _resolve_fonts(texts):
    """``(font.family list or None, characters missing from the default font)``."""
    import matplotlib
    from matplotlib import font_manager

    chars = sorted({c for text in texts for c in str(text) if not c.isspace()})
    families = list(matplotlib.rcParams["font.family"])
    default = font_manager.findfont(font_manager.FontProperties(family=families))
    missing = [c for c in chars if not _has_glyphs(default, c)]
    if not missing:
        return None, []
    family = _fallback_family(missing)
    return ([*families, family] if family else None), missing


def fonts_for_text(texts, *, warn=True):
    """The matplotlib ``font.family`` list that draws ``texts`` (e.g. CJK class names).

    The rule: when the default font has every glyph, nothing changes (None). Otherwise
    the first installed font of `FALLBACK_FAMILIES` with all the missing glyphs (checked
    with FreeType's ``get_char_index``) is appended to the default family list, so
    matplotlib's font fallback draws Latin text as before and the rest with it. When
    none is installed, ONE `MissingGlyphWarning` names the missing characters and what
    to install (the figure is still drawn, with empty boxes for them).

    Args:
        texts: the strings to draw.
        warn: warn when no installed font has the glyphs.

    Returns:
        A list for ``matplotlib.rcParams["font.family"]``, or None (use the default).

    Example:
        >>> fonts_for_text(["cat", "dog"]) is None
        True
        >>> fonts_for_text(["猫", "犬"])  # doctest: +SKIP
        ['sans-serif', 'Noto Sans CJK JP']
    """
    families, missing = _resolve_fonts(texts)
    if missing and families is None and warn:
        warnings.warn(
            f"No installed font has the glyphs {''.join(missing)!r} of the class names; they "
            f"are drawn as empty boxes. To draw them, {FONT_HINT}.",
            MissingGlyphWarning,
            stacklevel=2,
        )
    return families


@contextlib.contextmanager
def _text_fonts(texts):
    """Figures drawn inside use `fonts_for_text` ``(texts)``: at most one warning for all.

    Nested uses (``visualize_model`` → ``plot_*`` → ``*_figure``) reuse the outermost
    resolution when their characters are a subset, so one run warns once.
    """
    import matplotlib

    chars = {c for text in texts for c in str(text) if not c.isspace()}
    outer = _RESOLVED_FONTS.get()
    if outer is not None and chars <= outer[0]:
        yield outer[1]
        return
    families, missing = _resolve_fonts(texts)
    if missing and families is None:
        fonts_for_text(texts)  # the one warning
    token = _RESOLVED_FONTS.set((chars, families))
    try:
        with contextlib.ExitStack() as stack:
            if missing and families is None:
                # The warning above said it once; matplotlib would add one per glyph and file.
                stack.enter_context(warnings.catch_warnings())
                warnings.filterwarnings(
                    "ignore", message=r"Glyph \d+ .*missing from", category=UserWarning
                )
            if families:
                stack.enter_context(matplotlib.rc_context({"font.family": families}))
            yield families
    finally:
        _RESOLVED_FONTS.reset(token)


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
    with _text_fonts([analysis.class_names[c] for c in class_ids]):
        return _excitation_by_depth_figure(analysis, chosen, class_ids)


def _excitation_by_depth_figure(analysis, chosen, class_ids):
    cols = min(3, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = _figure(4.2 * cols, 3.0 * rows + 0.6)
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
    with _text_fonts(names):
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
    fig = _figure(max(5.0, 0.35 * len(blocks) + 2.5), 3.8)
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
    with _text_fonts([title or ""]):
        return _walkthrough_figure(walk, title=title)


def _walkthrough_figure(walk, *, title):
    from matplotlib.gridspec import GridSpec

    channels = walk.features.shape[-1]
    maps = min(WALKTHROUGH_MAPS, channels)
    extremes = min(WALKTHROUGH_EXTREMES, max(1, channels // 2))
    fig = _figure(15, 9, layout=None)
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
    for k, c in enumerate(top):
        u = walk.features[..., c]
        ax = fig.add_subplot(grid[3, k])
        _show_map(ax, walk.scaled[..., c], f"X~[{c}] s={walk.excitation[c]:.2f}", u.min(), u.max())
    for k, c in enumerate(bottom):
        u = walk.features[..., c]
        ax = fig.add_subplot(grid[3, 5 + k])
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
    with _text_fonts([title or ""]):
        return save_figure(walkthrough_figure(walk, title=title), out)


# --------------------------------------------------------------------------- figure 4
def _ratio_points(results):
    """Best completed trial per ``se_ratio``: ``[(ratio, params, accuracy)]`` sorted by ratio."""
    if isinstance(results, dict) and "trials" in results:
        results = results["trials"]
    if not isinstance(results, (list, tuple)):
        raise TypeError(
            f"`results` must be the list of trial dicts of a tuner results.json. Received: {type(results).__name__}"
        )
    best = {}
    for trial in results:
        if trial.get("status", "COMPLETED") != "COMPLETED":
            continue
        accuracy = trial.get("best_val_accuracy")
        if accuracy is None:
            continue
        ratio = (trial.get("hyperparameters") or {}).get("se_ratio")
        if ratio not in best or accuracy > best[ratio][1]:
            best[ratio] = (trial.get("params"), float(accuracy))
    if not best:
        raise UsageError(
            "`results` holds no completed trial with a best_val_accuracy to draw. "
            f"Received: {len(results)} trials"
        )

    def key(ratio):  # the plain model (ratio None or 0) last
        return (not ratio, float(ratio) if ratio else 0.0)

    return [(r, *best[r]) for r in sorted(best, key=key)]


def ratio_tradeoff_figure(results):
    """Accuracy vs parameters per reduction ratio (see `plot_ratio_tradeoff`).

    Example (a matplotlib ``Figure``):
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "best_val_accuracy": a,
        ...            "params": p, "status": "COMPLETED"}
        ...           for r, a, p in [(4, 0.91, 1.2e6), (16, 0.90, 1.1e6)]]
        >>> len(ratio_tradeoff_figure(trials).axes)
        1
    """
    points = _ratio_points(results)
    fig = _figure(6, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    with_params = all(p is not None for _, p, _ in points)
    xs = [p / 1e6 if with_params else i for i, (_, p, _) in enumerate(points)]
    ys = [a for _, _, a in points]
    ax.plot(xs, ys, color="0.6", lw=1, zorder=1)
    ax.scatter(xs, ys, color="tab:blue", zorder=2)
    for x, y, (ratio, _, _) in zip(xs, ys, points):
        label = "no SE" if not ratio else f"r={ratio:g}"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
    ax.set_xlabel("parameters (millions)" if with_params else "trial")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("Reduction ratio trade-off (best trial per ratio)", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def plot_ratio_tradeoff(results, out_path_without_ext):
    """Figure 4: the reduction-ratio trade-off of a tuner search (paper Table 10).

    One labelled point per ``se_ratio``: x = parameters, y = best validation accuracy
    of the best completed trial with that ratio (failed or running trials are skipped).

    Args:
        results: the parsed ``results.json`` of `keras_se.tuning`: a list of trial
            dicts with ``"hyperparameters"`` (holding ``"se_ratio"``),
            ``"best_val_accuracy"``, ``"params"`` and ``"status"``.
        out_path_without_ext: where to write ``.png`` and ``.svg``.

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "best_val_accuracy": a,
        ...            "params": p, "status": "COMPLETED"}
        ...           for r, a, p in [(4, 0.91, 1.2e6), (16, 0.90, 1.1e6)]]
        >>> plot_ratio_tradeoff(trials, "figs/ratio_tradeoff")  # doctest: +SKIP
        ('figs/ratio_tradeoff.png', 'figs/ratio_tradeoff.svg')
    """
    return save_figure(ratio_tradeoff_figure(results), out_path_without_ext)


def specificity_by_ratio_figure(results):
    """Specificity by depth, one line per trial's reduction ratio (see `plot_specificity_by_ratio`).

    Example (a matplotlib ``Figure``):
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "specificity": s,
        ...            "blocks": ["SE_2_1", "SE_3_1"], "status": "COMPLETED"}
        ...           for r, s in [(4, [0.3, 0.6]), (16, [0.35, 0.55])]]
        >>> fig = specificity_by_ratio_figure(trials)
        >>> [line.get_label() for line in fig.axes[0].get_lines()]
        ['r=4', 'r=16']
    """
    if isinstance(results, dict) and "trials" in results:
        results = results["trials"]
    trials = [
        t for t in results if t.get("specificity") and t.get("status", "COMPLETED") == "COMPLETED"
    ]
    if not trials:
        raise UsageError(
            "`results` holds no completed trial with per-block specificity (tuning records it "
            f"from the trial's last-epoch excitation analysis). Received: {len(results)} trials"
        )
    fig = _figure(max(5.5, 0.4 * len(trials[0]["specificity"]) + 2.5), 3.8)
    ax = fig.add_subplot(1, 1, 1)

    def ratio(trial):
        return (trial.get("hyperparameters") or {}).get("se_ratio") or 0

    for trial in sorted(trials, key=ratio):
        values = [np.nan if v is None else v for v in trial["specificity"]]
        ax.plot(range(len(values)), values, marker="o", lw=1.2, label=f"r={ratio(trial):g}")
    blocks = trials[0].get("blocks") or [str(i + 1) for i in range(len(trials[0]["specificity"]))]
    ax.set_xticks(range(len(blocks)))
    ax.set_xticklabels(blocks, rotation=90, fontsize=7)
    ax.set_xlabel("SE block (network order)")
    ax.set_ylabel("class-specificity η²")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, title="reduction ratio", title_fontsize=8)
    ax.set_title("What each ratio learned: specificity by depth after training", fontsize=10)
    return fig


def plot_specificity_by_ratio(results, out_path_without_ext):
    """Specificity by depth of each trial of a ratio search, one line per ``se_ratio``.

    Args:
        results: the parsed ``results.json`` of `keras_se.tuning`: trial dicts with
            ``"hyperparameters"`` (``"se_ratio"``), ``"specificity"`` (one value per SE block,
            from the trial's last-epoch excitation analysis), ``"blocks"`` (their labels) and
            ``"status"``.
        out_path_without_ext: where to write ``.png`` and ``.svg``.

    Returns:
        ``(png_path, svg_path)``.

    Example:
        >>> trials = [{"hyperparameters": {"se_ratio": r}, "specificity": s,
        ...            "blocks": ["SE_2_1", "SE_3_1"], "status": "COMPLETED"}
        ...           for r, s in [(4, [0.3, 0.6]), (16, [0.35, 0.55])]]
        >>> plot_specificity_by_ratio(trials, "figs/specificity_by_ratio")  # doctest: +SKIP
        ('figs/specificity_by_ratio.png', 'figs/specificity_by_ratio.svg')
    """
    return save_figure(specificity_by_ratio_figure(results), out_path_without_ext)


# --------------------------------------------------------------------------- everything
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
    from keras_se import data as data_lib
    from keras_se import export, models

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
    import keras

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
    from keras_se import data as data_lib
    from keras_se import models

    check_choice("split", split, ("train", "validation"))
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
    source_split = sources[split]
    size = source_split.size
    check_int(
        "image_index",
        image_index,
        minimum=0,
        maximum=size - 1,
        what=f"an image index in [0, {size}) (the {split} split of {dataset!r} has {size} images)",
    )
    class_names = list(info.class_names)
    if run_classes is not None and len(run_classes) != len(class_names):
        raise UsageError(
            f"The model was trained on {len(run_classes)} classes but dataset {dataset!r} has "
            f"{len(class_names)}. Received: dataset={dataset!r}"
        )
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

    os.makedirs(out, exist_ok=True)
    files = {"analysis": result.save_json(os.path.join(out, "excitations.json"))}
    title = f"{split} image {image_index}, class {class_names[label]}"
    with _text_fonts([*(class_names[c] for c in class_ids), title]):  # at most one warning
        files["excitation_by_depth"] = plot_excitation_by_depth(
            result,
            os.path.join(out, "excitation_by_depth"),
            blocks="default" if blocks is None else "all",
            classes=class_ids,
        )
        files["specificity_by_depth"] = plot_specificity_by_depth(
            result, os.path.join(out, "specificity_by_depth")
        )
        files["walkthrough"] = plot_walkthrough(walk, os.path.join(out, "walkthrough"), title=title)
    return VisualizeResult(
        analysis=result,
        files=files,
        image_index=image_index,
        image_label=label,
        untrained=untrained,
    )


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
