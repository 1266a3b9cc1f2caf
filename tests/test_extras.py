"""keras_se.extras.require: a missing optional package names the pip extra; a broken one keeps
its traceback."""

from __future__ import annotations

import sys

import pytest

from keras_se.extras import require
from keras_se_core.choices import EXTRAS
from keras_se_core.errors import MissingExtraError, UsageError


def test_an_installed_module_is_returned():
    assert require("json", feature="x", extra="train") is sys.modules["json"]


def test_a_missing_module_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)  # import of it fails as if absent
    with pytest.raises(MissingExtraError) as info:
        require("keras_tuner", feature="keras_se.tuning", extra="tune")
    assert isinstance(info.value, UsageError) and isinstance(info.value, ImportError)
    assert (
        str(info.value)
        == "keras_se.tuning needs the `keras_tuner` package: pip install 'keras-se[tune]'"
    )


def test_a_missing_dependency_inside_an_installed_package_is_not_an_extra(tmp_path, monkeypatch):
    (tmp_path / "broken_pkg").mkdir()
    (tmp_path / "broken_pkg" / "__init__.py").write_text("import no_such_module_inside\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as info:
        require("broken_pkg", feature="x", extra="train")
    assert (
        not isinstance(info.value, MissingExtraError) and info.value.name == "no_such_module_inside"
    )


def test_the_cli_table_names_real_extras():
    import configparser
    import os

    setup = configparser.ConfigParser()
    setup.read(os.path.join(os.path.dirname(os.path.dirname(__file__)), "setup.cfg"))
    extras = set(setup["options.extras_require"])
    assert set(EXTRAS.values()) <= extras, set(EXTRAS.values()) - extras
