"""keras_se.models.pretrained: named reference sources resolved beside the architectures.

The state dicts are written from `tests.test_weights.timm_shapes` (timm's layouts, written from
timm's model code); downloads are replaced by the local file (no network here).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from keras_se import models, state_dicts
from keras_se import weights as reference
from keras_se.models import preprocessing, pretrained
from tests.test_weights import timm_shapes, values, write_state


def test_named_sources_need_network_and_say_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(reference.MissingDependencyError, match=r"keras-se\[hub\]") as info:
        pretrained.fetch_source("timm/seresnet50.ra2_in1k")
    assert "network" in str(info.value) and "\n" not in str(info.value)

    def offline(url):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(state_dicts, "_download_url", offline)
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


@pytest.mark.slow
def test_named_source_builds_the_matching_architecture(tmp_path, monkeypatch):
    # A non-legacy source switches SE-ResNet-50 to stride-in-3x3 and the padded stem pool.
    path, state = write_state(tmp_path, timm_shapes((3, 4, 6, 3), layout="timm"))
    calls = []

    def fake_hub(repo_id, filename):
        calls.append((repo_id, filename))
        return path

    monkeypatch.setattr(state_dicts, "_download_from_hub", fake_hub)
    model = models.SEResNet50(input_shape=(64, 64, 3), weights="timm/seresnet50.ra2_in1k")
    assert calls == [("timm/seresnet50.ra2_in1k", "model.safetensors")]
    assert model.get_layer("conv3_block1_2_conv").strides == (2, 2)
    assert model.get_layer("pool1_pad") is not None
    np.testing.assert_array_equal(
        values(model.get_layer("conv4_block6_se").expand_kernel),
        state["layer3.5.se.fc2.weight"][:, :, 0, 0].T,
    )
    expected = pretrained.SOURCES["seresnet50.ra2_in1k"].preprocessing
    assert preprocessing.of(model) == expected
    assert (expected.interpolation, expected.crop_pct) == ("bicubic", 0.875)


@pytest.mark.slow
def test_load_reference_model_builds_the_registered_architecture(tmp_path, monkeypatch):
    shapes = timm_shapes((2, 2, 2, 2), groups=32, base_width=4)  # legacy SE-ResNeXt-26 32x4d
    path, state = write_state(tmp_path, shapes)
    monkeypatch.setattr(state_dicts, "_download_from_hub", lambda repo_id, filename: path)
    model = pretrained.load_reference_model(
        "timm/legacy_seresnext26_32x4d.in1k", input_shape=(64, 64, 3)
    )
    assert model.name == "se_resnext26_32x4d"
    assert model.get_layer("conv3_block1_1_conv").strides == (1, 1)  # stride in the 3x3
    np.testing.assert_array_equal(
        values(model.get_layer("conv5_block2_2_conv").kernel),
        np.transpose(state["layer4.1.conv2.weight"], (2, 3, 1, 0)),
    )
    assert preprocessing.of(model).interpolation == "bicubic"


# ---------------------------------------------------------------- fine-tuning: a fresh head
SMALL = dict(input_shape=(32, 32, 3))  # the CIFAR stem: Keras files only
REF = dict(input_shape=(64, 64, 3))  # the ImageNet stem: timm files too


def _assert_backbone_loaded_head_fresh(source, target, *, source_classes, classes):
    """Every weight but the classifier's equals the source's (NumPy); the head is new."""
    for layer in source.layers:
        if not layer.weights or layer.name == "predictions":
            continue
        for a, b in zip(layer.weights, target.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(values(a), values(b), err_msg=layer.name)
    old, new = source.get_layer("predictions"), target.get_layer("predictions")
    assert old.kernel.shape[-1] == source_classes and tuple(new.kernel.shape) == (512, classes)
    assert not np.allclose(values(new.kernel), values(old.kernel)[:, :classes])


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras_files_of_ten_classes_load_into_five(tmp_path, suffix):
    from keras_se.data import Preprocessing, save_preprocessing

    source = models.get("se_resnet18", **SMALL, classes=10)
    path = str(tmp_path / f"ten{suffix}")
    spec = Preprocessing(mean=(0.5,) * 3, std=(0.25,) * 3, image_size=(32, 32))
    if suffix == ".keras":
        source.save(path)
        save_preprocessing(path, spec)
    else:
        source.save_weights(path)
    with pytest.warns(UserWarning, match="weights have 10 classes, model has 5: the backbone"):
        target = models.get("se_resnet18", **SMALL, classes=5, weights=path)
    _assert_backbone_loaded_head_fresh(source, target, source_classes=10, classes=5)
    assert preprocessing.of(target) == (spec if suffix == ".keras" else None)

    built = models.get("se_resnet18", **SMALL, classes=5)  # the trainer's call: a built model
    with pytest.warns(UserWarning, match="classifier starts fresh"):
        info = models.load_weights(built, path)
    assert info.skipped == ("predictions",) and info.new_head
    assert (info.source_classes, info.model_classes, info.kind) == (10, 5, "keras")
    with_weights = [layer.name for layer in source.layers if layer.weights]
    assert list(info.loaded) == with_weights[:-1] and with_weights[-1] == "predictions"
    _assert_backbone_loaded_head_fresh(source, built, source_classes=10, classes=5)


@pytest.mark.slow
def test_timm_state_dict_of_ten_classes_loads_into_five(tmp_path):
    source = models.get("se_resnet18", **REF, classes=10)
    path = reference.save_reference_weights(source, str(tmp_path / "ten.safetensors"))
    with pytest.warns(UserWarning, match="weights have 10 classes, model has 5"):
        target = models.get("se_resnet18", **REF, classes=5, weights=path)
    _assert_backbone_loaded_head_fresh(source, target, source_classes=10, classes=5)
    assert preprocessing.of(target) == pretrained.DEFAULT_PREPROCESSING
    strict = models.get("se_resnet18", **REF, classes=5)
    before = [values(w) for w in strict.weights]
    with pytest.raises(ValueError, match="first mismatched layer: predictions"):
        models.load_weights(strict, path, skip_mismatched_head=False)
    for old, w in zip(before, strict.weights, strict=True):  # nothing was loaded
        np.testing.assert_array_equal(old, values(w))


def test_named_source_with_another_class_count(tmp_path, monkeypatch):
    source = models.get("se_resnet18", **REF)  # 1000 classes, as timm's file
    path = reference.save_reference_weights(source, str(tmp_path / "in1k.safetensors"))
    monkeypatch.setattr(reference, "download", lambda *a, **k: path)
    with pytest.warns(UserWarning, match="weights have 1000 classes, model has 5"):
        target = models.get("se_resnet18", **REF, classes=5, weights="timm/legacy_seresnet18")
    _assert_backbone_loaded_head_fresh(source, target, source_classes=1000, classes=5)
    assert preprocessing.of(target) == pretrained.get_source("timm/legacy_seresnet18").preprocessing


def test_same_class_count_loads_everything_without_a_warning(tmp_path):
    import warnings

    source = models.get("se_resnet18", **SMALL, classes=5)
    path = str(tmp_path / "five.weights.h5")
    source.save_weights(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target = models.get("se_resnet18", **SMALL, classes=5, weights=path)
    for a, b in zip(source.weights, target.weights, strict=True):
        np.testing.assert_array_equal(values(a), values(b))


def test_keras_file_addresses_are_keras_own(tmp_path):
    """The layer → group table equals what Keras writes (checked shape by shape)."""
    from keras_se.models import pretrained as loading

    for name in ("se_resnet18", "se_resnet20_cifar"):
        model = models.get(name, **SMALL, classes=3)
        path = str(tmp_path / f"{name}.weights.h5")
        model.save_weights(path)
        groups, addresses = loading.read_keras_weights(path), loading.keras_file_addresses(model)
        with_weights = [layer for layer in model.layers if layer.weights]
        assert len(groups) == len(with_weights)
        for layer in with_weights:
            found = groups[addresses[layer.name]]
            assert [a.shape for a in found] == [tuple(w.shape) for w in layer.weights], layer.name


@pytest.mark.slow
def test_bad_weights_name_the_argument_and_the_first_mismatched_layer(tmp_path):
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(ValueError, match=r"does not exist.*Received: weights="):
        models.get("se_resnet18", **SMALL, classes=3, weights=missing)
    built = models.get("se_resnet18", **SMALL, classes=3)
    with pytest.raises(ValueError, match="does not exist"):
        models.load_weights(built, missing)
    for name, body in (("junk.weights.h5", b"not hdf5"), ("junk.keras", b"not a zip"),
                       ("junk.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"),
                       ("notes.txt", b"text")):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(body)
        with pytest.raises(ValueError, match=r"weights") as info:
            models.get("se_resnet18", **SMALL, classes=3, weights=str(path))
        assert repr(str(path)) in str(info.value)
    # another architecture: one input channel instead of three
    rgb = models.get("se_resnet18", **SMALL, classes=3)
    rgb.save_weights(str(tmp_path / "rgb.weights.h5"))
    with pytest.raises(ValueError) as info:
        models.get("se_resnet18", input_shape=(32, 32, 1), classes=3,
                   weights=str(tmp_path / "rgb.weights.h5"))  # fmt: skip
    assert (
        "first mismatched layer: conv1_conv (expected [(3, 3, 1, 64)], found [(3, 3, 3, 64)])"
        in str(info.value)
    )
    ref_path = reference.save_reference_weights(
        models.get("se_resnet18", **REF, classes=3), str(tmp_path / "rgb.safetensors")
    )
    with pytest.raises(ValueError, match=r"first mismatched layer: conv1_conv \(layer0.conv1.weight: "
                       r"the model expects \(64, 1, 7, 7\), the file has \(64, 3, 7, 7\)\)"):  # fmt: skip
        models.get("se_resnet18", input_shape=(64, 64, 1), classes=3, weights=ref_path)


def _truncated(tmp_path):
    model = models.get("se_resnet18", **REF, classes=3)
    path = reference.save_reference_weights(model, str(tmp_path / "cut.safetensors"))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def test_truncated_safetensors_is_one_error_naming_the_file(tmp_path):
    path = _truncated(tmp_path)
    with pytest.raises(ValueError, match=r"Cannot read the weights file .*cut\.safetensors"):
        models.get("se_resnet18", **REF, classes=3, weights=path)
    with pytest.raises(ValueError, match="cut.safetensors"):
        reference.read_state_dict(path)


def test_convert_of_a_truncated_file_is_one_line(tmp_path, capsys):
    from tests.conftest import assert_usage_error, run_main

    path, out = _truncated(tmp_path), tmp_path / "x.keras"
    result = run_main(capsys, "convert", path, "--model", "se_resnet18", "--out", str(out))
    assert_usage_error(result, "cut.safetensors", "truncated")
    assert not out.exists()


def test_one_class_needs_the_sigmoid_head():
    with pytest.raises(ValueError, match=r'classes=1.*classifier_activation="sigmoid"'):
        models.get("se_resnet18", **SMALL, classes=1)
    models.get("se_resnet18", **SMALL, classes=1, include_top=False)  # no head: no softmax
    model = models.get("se_resnet18", **SMALL, classes=1, classifier_activation="sigmoid")
    x = np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)).astype("float32")
    import keras

    features = keras.Model(model.inputs, model.get_layer("avg_pool").output)(x)
    head = model.get_layer("predictions")
    logit = values(features) @ values(head.kernel) + values(head.bias)
    expected = 1 / (1 + np.exp(-logit))  # the NumPy sigmoid: not a constant 1.0
    np.testing.assert_allclose(values(model(x)), expected, rtol=1e-5, atol=1e-6)
    assert model.output_shape == (None, 1)
