"""Fonts for the text of figures: class names in any script, and one warning when none fits.

Matplotlib's default font (DejaVu Sans) has no CJK glyphs, so class names such as ``雏菊``
would be drawn as empty boxes with one warning per glyph and file. `fonts_for_text` finds an
installed font that has the missing glyphs (checked with FreeType) and appends it to the
``font.family`` list; `text_fonts` applies that to the figures drawn inside it and warns at
most once (`MissingGlyphWarning`) when no installed font has them. Used by
`keras_se.figures` and `keras_se.visualize`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import warnings

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
#: ``(characters, font.family list or None)`` resolved by an enclosing `text_fonts`.
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
def text_fonts(texts):
    """Figures drawn inside use `fonts_for_text` ``(texts)``: at most one warning for all.

    Nested uses (``visualize_model`` → ``plot_*`` → ``*_figure``) reuse the outermost
    resolution when their characters are a subset, so one run warns once.

    Example (the default font draws Latin names: nothing changes):
        >>> with text_fonts(["cat", "dog"]) as families:
        ...     families is None
        True
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
