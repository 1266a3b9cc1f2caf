"""keras_se_core.fileio: atomic writes leave the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os

import pytest

from keras_se_core import fileio


def test_write_json_and_text_replace_atomically(tmp_path):
    path = str(tmp_path / "summary.json")
    fileio.write_json(path, {"a": 1})
    fileio.write_json(path, {"a": 2, "b": [1, 2]})
    assert json.load(open(path)) == {"a": 2, "b": [1, 2]}
    fileio.write_text(str(tmp_path / "x.md"), "hello")
    assert open(tmp_path / "x.md").read() == "hello"
    assert sorted(os.listdir(tmp_path)) == ["summary.json", "x.md"]  # no temporary left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "history.json")
    fileio.write_json(path, [1])
    with pytest.raises(ValueError):  # NaN refused half-way through the dump
        fileio.write_json(path, {"ok": 1, "ratio": float("nan")}, allow_nan=False)
    assert json.load(open(path)) == [1] and os.listdir(tmp_path) == ["history.json"]


def test_atomic_path_keeps_the_suffix_for_writers_that_check_it(tmp_path):
    target = str(tmp_path / "model.keras")
    with fileio.atomic_path(target) as tmp:
        assert tmp.endswith(".keras") and os.path.dirname(tmp) == str(tmp_path)
        open(tmp, "w").write("weights")
        assert not os.path.exists(target)
    assert open(target).read() == "weights"


def test_non_finite_numbers_can_be_refused(tmp_path):
    with pytest.raises(ValueError):
        fileio.write_json(str(tmp_path / "x.json"), {"ratio": float("inf")}, allow_nan=False)
    assert not os.listdir(tmp_path)
