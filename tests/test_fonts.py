"""keras_se.fonts: class names in any script, and one warning when no installed font has them."""

from __future__ import annotations

import pytest

from keras_se import figures, fonts
from tests.test_figures import _assert_written, _synthetic_analysis

CJK_NAMES = ["猫", "犬", "c2"]


def _cjk_analysis():
    result = _synthetic_analysis(stages=(1,), channels=(8,), classes=3)  # one panel: fast
    result.class_names = list(CJK_NAMES)
    return result


def _glyph_warnings(records):
    """(our MissingGlyphWarnings, matplotlib's own per-glyph warnings)."""
    ours = [w for w in records if issubclass(w.category, fonts.MissingGlyphWarning)]
    theirs = [w for w in records if "missing from font" in str(w.message)]
    return ours, theirs


@pytest.fixture
def no_cjk_font(monkeypatch):
    """DejaVu Sans (shipped with matplotlib) as the default, and no fallback font to find."""
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "font.family", ["DejaVu Sans"])
    monkeypatch.setattr(fonts, "FALLBACK_FAMILIES", ())
    monkeypatch.setattr(fonts, "FALLBACK_FILES", ())


def test_cjk_class_names_without_a_cjk_font_warn_once(tmp_path, no_cjk_font):
    import warnings

    assert fonts.fonts_for_text(["cat", "dog"]) is None  # Latin names: nothing changes, silently
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        paths = figures.plot_excitation_by_depth(
            _cjk_analysis(), tmp_path / "fig1", classes=[0, 1, 2]
        )
    _assert_written(paths)  # the figure is still written
    ours, theirs = _glyph_warnings(records)
    assert len(ours) == 1 and not theirs, [str(w.message) for w in records]
    message = str(ours[0].message)
    assert "'犬猫'" in message and "fonts-noto-cjk" in message and "\n" not in message


def _system_cjk_font():
    """A font file with 猫 (U+732B) according to fontconfig, independently of keras_se."""
    import shutil
    import subprocess

    if not shutil.which("fc-list"):
        return None
    out = subprocess.run(
        ["fc-list", ":charset=732b 72ac", "file"], capture_output=True, text=True
    ).stdout
    return out.split(":")[0].strip() or None


@pytest.mark.skipif(
    _system_cjk_font() is None,
    reason="no CJK font installed (fontconfig finds none with 猫/犬; e.g. apt-get install fonts-noto-cjk)",
)
def test_an_installed_cjk_font_draws_cjk_class_names(tmp_path, monkeypatch):
    import warnings

    import matplotlib
    from matplotlib import font_manager

    monkeypatch.setitem(matplotlib.rcParams, "font.family", ["DejaVu Sans"])
    families = fonts.fonts_for_text(["猫", "犬"])
    assert families is not None and families[0] == "DejaVu Sans"  # Latin text as before
    path = font_manager.findfont(
        font_manager.FontProperties(family=families[-1]), fallback_to_default=False
    )
    font = font_manager.get_font(path)
    assert font.get_char_index(ord("猫")) != 0 and font.get_char_index(ord("犬")) != 0
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        paths = figures.plot_excitation_by_depth(_cjk_analysis(), tmp_path / "fig1", classes=[0, 1])
    _assert_written(paths)
    assert _glyph_warnings(records) == ([], []), [str(w.message) for w in records]
    assert matplotlib.rcParams["font.family"] == ["DejaVu Sans"]  # restored afterwards


def test_nested_text_fonts_resolve_once(monkeypatch, no_cjk_font):
    import warnings

    calls = []
    resolve = fonts._resolve_fonts
    monkeypatch.setattr(
        fonts, "_resolve_fonts", lambda texts: calls.append(texts) or resolve(texts)
    )
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        with fonts.text_fonts(["猫", "犬 c2"]):
            with fonts.text_fonts(["犬"]):  # a subset: the outer resolution is reused
                pass
    assert calls and all(texts == ["猫", "犬 c2"] for texts in calls)  # never the inner texts
    assert len(_glyph_warnings(records)[0]) == 1
