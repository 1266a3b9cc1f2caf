"""keras_se.export.sources: run directories, .keras files and models in memory."""

from __future__ import annotations

import io
import json
import os
import zipfile

import keras
import pytest

from keras_se.data import Preprocessing, save_preprocessing
from keras_se.export.sources import load_source, served_name
from keras_se_core.errors import UsageError

SPEC = Preprocessing(mean=(0.2, 0.5, 0.7), std=(0.3, 0.1, 0.2))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")
    path = str(tmp_path_factory.mktemp("sources") / "tiny.keras")
    model.save(path)
    return path


def _run_dir(path, model_file, **config):
    os.makedirs(path)
    with open(model_file, "rb") as f, open(os.path.join(path, "model.keras"), "wb") as g:
        g.write(f.read())
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return str(path)


def test_served_names_are_tf_serving_model_names():
    assert served_name("se_resnet50") == "se_resnet50"
    assert served_name("mypkg.models:build_net") == "build_net"
    assert served_name("runs/a/fine tuned.keras") == "fine_tuned"
    assert served_name("keras.applications.ResNet50") == "ResNet50"
    assert served_name(None) is None and served_name("...") is None


def test_a_run_directory_brings_its_config_and_preprocessing(tmp_path, model_file):
    run = _run_dir(
        tmp_path / "run",
        model_file,
        model="mypkg:build",
        class_names=["a", "b", "c"],
        image_shape=[8, 8, 3],
        num_classes=3,
    )
    save_preprocessing(os.path.join(run, "model.keras"), SPEC)
    src = load_source(run)
    assert (src.name, src.class_names, src.image_shape, src.num_classes) == (
        "build",
        ["a", "b", "c"],
        (8, 8, 3),
        3,
    )
    assert src.path == os.path.join(run, "model.keras")
    assert src.preprocessing == SPEC and src.preprocessing_note.endswith("model.preprocessing.json")
    given = Preprocessing(mean=(0.5,), std=(0.5,))
    src = load_source(run, preprocessing=given)
    assert (src.preprocessing, src.preprocessing_note) == (given, "given")


def test_a_run_directory_of_a_newer_format_is_refused(tmp_path, model_file):
    run = _run_dir(tmp_path / "newer", model_file, model="se_resnet18", format_version=99)
    with pytest.raises(UsageError, match="format version 99.*Received: source="):
        load_source(run)


def test_bare_files_and_models_get_the_default_preprocessing(model_file):
    src = load_source(model_file)
    assert (src.name, src.class_names, src.path) == ("tiny", None, model_file)
    assert src.preprocessing == Preprocessing() and "ImageNet mean/std" in src.preprocessing_note
    in_memory = load_source(src.model)
    assert (in_memory.name, in_memory.path) == ("tiny", None)
    assert "ImageNet mean/std" in in_memory.preprocessing_note


def test_sources_that_are_not_models_are_refused(tmp_path, model_file):
    with pytest.raises(TypeError, match="`preprocessing` must be a keras_se.data.Preprocessing"):
        load_source(model_file, preprocessing={"mean": 0.5})
    with pytest.raises(TypeError, match="`source` must be a run directory"):
        load_source(42)
    with pytest.raises(UsageError, match="`source` does not exist"):
        load_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="a directory without model.keras"):
        load_source(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="must be a training run directory or a .keras"):
        load_source(tmp_path / "notes.txt")


def _broken(model_file, member, change):
    """``model_file`` with one zip member changed (None: left out), stored uncompressed."""
    out = io.BytesIO()
    with zipfile.ZipFile(model_file) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            data = change(data) if name == member else data
            if data is not None:
                dst.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize(
    "member, change, error",
    [
        ("config.json", lambda d: None, "KeyError"),
        ("config.json", lambda d: b"{not json", "JSONDecodeError"),
        ("config.json", lambda d: b'"a string"', "TypeError"),
        ("model.weights.h5", lambda d: d[: len(d) // 2], "OSError"),
    ],
    ids=["no_config", "bad_json", "config_not_a_dict", "truncated_weights"],
)
def test_a_broken_keras_file_is_a_usage_error(tmp_path, model_file, member, change, error):
    path = tmp_path / "broken.keras"
    path.write_bytes(_broken(model_file, member, change))
    with pytest.raises(UsageError, match=f"not a readable Keras file \\({error}: .*source="):
        load_source(path)


def test_a_corrupt_zip_member_is_a_usage_error(tmp_path, model_file):
    data = bytearray(_broken(model_file, "config.json", lambda d: d))
    at = data.index(b'"class_name"')  # inside the stored config.json: its CRC no longer matches
    data[at + 1] ^= 0x20
    path = tmp_path / "crc.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=r"not a readable Keras file \(BadZipFile: Bad CRC-32"):
        load_source(path)
