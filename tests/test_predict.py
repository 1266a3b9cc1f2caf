"""keras-se predict: top-k classes of image files with the model's own preprocessing.

Reference: the image decoded with Pillow, resized and centre-cropped with NumPy
arithmetic around ``tf.image.resize`` (timm's evaluation transform), normalised with
NumPy, then ``model.predict``.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from keras_se import models
from keras_se.data import Preprocessing, save_preprocessing
from keras_se.predict import format_predictions, predict_images
from keras_se.rundir import RunDir
from keras_se_core.configs import TrainConfig
from tests.conftest import assert_usage_error, run_main

SPEC = Preprocessing(
    mean=(0.5, 0.4, 0.3), std=(0.25, 0.2, 0.3), image_size=(16, 16), crop_pct=0.875
)
NAMES = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One tiny model as a .keras file (+ sidecar), a run directory and a SavedModel."""
    root = tmp_path_factory.mktemp("predict")
    model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
    keras_path = str(root / "tiny.keras")
    model.save(keras_path)
    save_preprocessing(keras_path, SPEC)
    run = RunDir(str(root / "run"))
    run.create()
    run.save_model(model, SPEC)
    run.write_config(
        TrainConfig(model="se_resnet18"),
        {"class_names": NAMES, "num_classes": 3, "image_shape": [16, 16, 3]},
    )
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (24 + 2 * i, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"img{i}.png")
    return dict(model=model, keras=keras_path, run=run.path, images=str(images), root=root)


def _reference(model, path):
    import tensorflow as tf

    pixels = np.asarray(Image.open(path).convert("RGB"), "float32")
    big = [math.ceil(16 / SPEC.crop_pct)] * 2
    x = np.clip(np.round(tf.image.resize(pixels, big, method="bilinear").numpy()), 0, 255)
    top, left = (big[0] - 16) // 2, (big[1] - 16) // 2
    x = x[top : top + 16, left : left + 16]
    x = (x / 255.0 - np.array(SPEC.mean)) / np.array(SPEC.std)
    return model.predict(x[None].astype("float32"), verbose=0)[0]


def _check(result, sources, names):
    assert len(result.predictions) == 3 and not result.skipped
    for prediction in result.predictions:
        expected = _reference(sources["model"], prediction.path)
        class_id, name, probability = prediction.top[0]
        assert class_id == int(np.argmax(expected)) and name == names[class_id]
        assert probability == pytest.approx(float(expected.max()), abs=1e-5)
        assert [p for _, _, p in prediction.top] == sorted(
            (p for _, _, p in prediction.top), reverse=True
        )


@pytest.mark.slow
def test_keras_file_and_run_dir_use_the_models_preprocessing(sources):
    result = predict_images([sources["images"]], model=sources["keras"], top_k=2)
    _check(result, sources, ["0", "1", "2"])  # a bare .keras file has no class names
    assert result.preprocessing == SPEC and len(result.predictions[0].top) == 2
    result = predict_images([sources["images"]], model=sources["run"], top_k=5)
    _check(result, sources, NAMES)
    assert len(result.predictions[0].top) == 3  # top_k capped at the class count


@pytest.mark.slow
def test_savedmodel_from_export(sources):
    from keras_se.export import export_model

    exported = export_model(sources["run"], str(sources["root"] / "serving"), name="tiny")
    for model in (exported.path, os.path.dirname(exported.path)):  # version or model directory
        _check(predict_images([sources["images"]], model=model), sources, NAMES)


@pytest.mark.slow
def test_cli_text_json_and_a_corrupt_file(sources, capsys, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    good = os.path.join(sources["images"], "img0.png")
    result = run_main(capsys, "predict", good, str(bad), "--model", sources["run"], "--json")
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr and "skipping" in result.stderr
    data = json.loads(result.stdout)
    assert [p["path"] for p in data["predictions"]] == [good]
    assert data["skipped"][0]["path"] == str(bad)
    expected = _reference(sources["model"], good)
    top = data["predictions"][0]["top_k"][0]
    assert (
        top["class_id"] == int(np.argmax(expected)) and top["class_name"] == NAMES[top["class_id"]]
    )
    assert top["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
    text = run_main(capsys, "predict", good, "--model", sources["run"], "--top-k", "1")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0] == good and NAMES[top["class_id"]] in text.stdout


def test_nothing_readable_is_one_line_exit_2(sources, capsys, tmp_path):
    (tmp_path / "a.png").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    result = run_main(capsys, "predict", str(tmp_path), "--model", sources["keras"])
    assert_usage_error(result, "could be read", "a.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_usage_error(
        run_main(capsys, "predict", str(empty), "--model", sources["keras"]), "No image files"
    )
    assert_usage_error(
        run_main(capsys, "predict", str(tmp_path / "nope.png"), "--model", sources["keras"]),
        "nope.png",
    )


def test_a_bug_while_reading_an_image_is_not_a_skipped_file(sources, monkeypatch):
    from keras_se import predict

    def bug(path, predictor):
        raise KeyError("a bug in the loader")

    monkeypatch.setattr(predict, "_load_image", bug)
    with pytest.raises(KeyError, match="a bug in the loader"):
        predict_images(sources["images"], model=sources["model"])


def test_format_names_imagenet_classes_for_1000_class_models(tmp_path):
    model = models.get("se_resnet18", input_shape=(16, 16, 3))  # 1000 classes, no names
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    result = predict_images([str(tmp_path / "x.png")], model=model, top_k=3)
    from keras_se.models import decode_predictions

    x = (np.zeros((1, 16, 16, 3)) - np.array(Preprocessing().mean)) / np.array(Preprocessing().std)
    expected = decode_predictions(model.predict(x.astype("float32"), verbose=0), top=3)[0]
    assert [name for _, name, _ in result.predictions[0].top] == [name for _, name, _ in expected]
    assert "x.png" in format_predictions(result)
