"""keras_se.models.pretrained: named reference sources resolved beside the architectures.

The state dicts are written from `tests.test_weights.timm_shapes` (timm's layouts, written from
timm's model code); downloads are replaced by the local file (no network here).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from keras_se import models
from keras_se import weights as reference
from keras_se.models import pretrained
from tests.test_weights import timm_shapes, values, write_state


def test_named_sources_need_network_and_say_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(reference.MissingDependencyError, match=r"keras-se\[hub\]") as info:
        pretrained.fetch_source("timm/seresnet50.ra2_in1k")
    assert "network" in str(info.value) and "\n" not in str(info.value)

    def offline(url):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(reference, "_download_url", offline)
    with pytest.raises(ConnectionError, match="need network access") as info:
        models.SEResNet18(weights="timm/legacy_seresnet18.in1k")  # never a random model
    assert "name resolution" in str(info.value)


def test_unknown_names_point_to_the_sources():
    for bad in ("imagenet", "timm/seresnet9000.in1k"):
        with pytest.raises(ValueError, match="timm/legacy_seresnet50.in1k") as info:
            models.SEResNet18(weights=bad)
        assert f"weights={bad!r}" in str(info.value)
    with pytest.raises(ValueError, match="Known: timm/legacy_seresnet18.in1k"):
        pretrained.get_source("legacy_seresnet9000")
    assert pretrained.is_named_source("legacy_seresnet50")  # tag and prefix optional
    assert pretrained.get_source("timm/seresnet50").name == "seresnet50.a1_in1k"  # timm's default


def test_named_source_builds_the_matching_architecture(tmp_path, monkeypatch):
    # A non-legacy source switches SE-ResNet-50 to stride-in-3x3 and the padded stem pool.
    path, state = write_state(tmp_path, timm_shapes((3, 4, 6, 3), layout="timm"))
    calls = []

    def fake_hub(repo_id, filename):
        calls.append((repo_id, filename))
        return path

    monkeypatch.setattr(reference, "_download_from_hub", fake_hub)
    model = models.SEResNet50(input_shape=(64, 64, 3), weights="timm/seresnet50.ra2_in1k")
    assert calls == [("timm/seresnet50.ra2_in1k", "model.safetensors")]
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("pool1_pad") is not None
    np.testing.assert_array_equal(
        values(model.get_layer("conv4_block6_se").expand_kernel),
        state["layer3.5.se.fc2.weight"][:, :, 0, 0].T,
    )
    expected = pretrained.SOURCES["seresnet50.ra2_in1k"].preprocessing
    assert model.preprocessing == expected
    assert (expected.interpolation, expected.crop_pct) == ("bicubic", 0.875)


def test_load_reference_model_builds_the_registered_architecture(tmp_path, monkeypatch):
    shapes = timm_shapes((2, 2, 2, 2), groups=32, base_width=4)  # legacy SE-ResNeXt-26 32x4d
    path, state = write_state(tmp_path, shapes)
    monkeypatch.setattr(reference, "_download_from_hub", lambda repo_id, filename: path)
    model = pretrained.load_reference_model(
        "timm/legacy_seresnext26_32x4d.in1k", input_shape=(64, 64, 3)
    )
    assert model.name == "se_resnext26_32x4d"
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)  # stride in the 3x3
    np.testing.assert_array_equal(
        values(model.get_layer("conv5_block2_2_conv").kernel),
        np.transpose(state["layer4.1.conv2.weight"], (2, 3, 1, 0)),
    )
    assert model.preprocessing.interpolation == "bicubic"
