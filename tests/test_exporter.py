"""keras_se.export.exporter: export_model's order of steps and the CLI's report.

The SavedModels themselves are checked end to end in test_export.py.
"""

from __future__ import annotations

import os

import keras
import pytest

from keras_se.data import Preprocessing
from keras_se.export import exporter
from keras_se_core.errors import UsageError


def _tiny():
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")


def test_precision_and_model_are_checked_before_anything_is_written(tmp_path):
    base = tmp_path / "models"
    with pytest.raises(
        ValueError, match=r"`precision` must be one of .*Received: precision='fp16'"
    ):
        exporter.export_model(_tiny(), base, precision="fp16")
    with pytest.raises(UsageError, match="`top_k`"):
        exporter.export_model(_tiny(), base, top_k=9)
    with pytest.raises(UsageError, match="`name` must be a TF Serving model name"):
        exporter.export_model(_tiny(), base, name="../up")
    assert os.listdir(tmp_path) == []


def _result(**changes):
    fields = dict(
        path="models/net/1",
        name="net",
        version=1,
        signatures={
            "excitations": {
                "inputs": {"image": ("uint8", [-1, -1, -1, 3])},
                "outputs": {"se": ("float32", None)},
            }
        },
        models_config="models/models.config",
        request="r.json",
        warmup="w",
        preprocessing=Preprocessing(),
        preprocessing_note="given",
        max_abs_diff=0.004,
    )
    return exporter.ExportResult(**{**fields, **changes})


def test_report_names_precision_unknown_shapes_and_removed_temporaries():
    text = exporter.format_result(
        _result(precision="bfloat16", removed_stale=("models/net/.tmp-export-1-9-ab",))
    )
    lines = text.splitlines()
    assert lines[2] == (
        "precision: bfloat16 (mixed_bfloat16: bfloat16 convolutions and matmuls, float32 "
        "classifier and outputs)"
    )
    assert "  input  image: uint8 [-1, -1, -1, 3] (checked in the graph)" in lines
    assert "  output se: float32 (any shape)" in lines
    assert lines[-2] == "checked: max |keras - SavedModel| = 0.004"
    assert lines[-1] == "removed stale temporary directories: models/net/.tmp-export-1-9-ab"
    assert exporter.format_result(_result()).splitlines()[2] == "precision: float32"
