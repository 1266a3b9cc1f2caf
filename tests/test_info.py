"""keras_se.info and ``keras-se info``: versions, backend, registry and registered layers."""

from __future__ import annotations

import keras
import pytest

import keras_se
from keras_se import info, models
from tests.conftest import run_main


@pytest.mark.slow
def test_collect_info_reports_the_registry_and_the_registered_layers():
    report = info.collect_info(devices=False)
    assert report["keras_se"] == keras_se.__version__ and report["keras"] == keras.__version__
    assert report["backend"] == keras.backend.backend() and "devices" not in report
    assert report["models"] == models.names() and "se_resnet50" in report["models"]
    # what keras.models.load_model needs: both SE layers under the package's name
    for name in ("SqueezeExcite", "BatchNormSqueezeExcite", "GroupedConv2D"):
        assert f"keras_se>{name}" in report["layers"]


def test_keras_se_info_prints_one_line_per_key(capsys):
    result = run_main(capsys, "info", "--no-devices")
    assert result.returncode == 0
    lines = {
        k.strip(): v
        for k, v in (line.split(": ", 1) for line in result.stdout.splitlines() if line)
    }
    assert lines["keras_se"] == keras_se.__version__ and lines["backend"] == keras.backend.backend()
    assert "se_resnet18" in lines["models"].split(", ")
