"""keras.applications conventions: `preprocess_input` and `decode_predictions` (keras_se.models.imagenet).

References: hand-made prediction vectors with known rankings, a NumPy formula for the
preprocessing, and a few class names anyone can check against the ImageNet-1k list
(index 0 tench, 1 goldfish, 254 pug, 404 airliner, 999 toilet tissue).
"""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_se import models
from keras_se.models import preprocessing
from keras_se.models.preprocessing import Preprocessing


def test_shipped_class_list_is_imagenet_1k_in_index_order():
    classes = models.imagenet.imagenet_classes()
    assert len(classes) == 1000
    wnids = [wnid for wnid, _ in classes]
    assert wnids == sorted(wnids) and len(set(wnids)) == 1000  # the standard order
    assert classes[0] == ("n01440764", "tench")
    assert classes[1] == ("n01443537", "goldfish")
    assert classes[254] == ("n02110958", "pug")
    assert classes[404] == ("n02690373", "airliner")
    assert classes[999] == ("n15075141", "toilet_tissue")


def test_decode_predictions_names_the_top_classes_best_first():
    preds = np.zeros((2, 1000), "float32")
    preds[0, 1] = 0.9  # goldfish
    preds[0, 254] = 0.06  # pug
    preds[0, 0] = 0.04  # tench
    preds[1, [404, 3, 999]] = (0.2, 0.5, 0.3)
    decoded = models.decode_predictions(preds, top=3)
    assert [[name for _, name, _ in row] for row in decoded] == [
        ["goldfish", "pug", "tench"],
        ["tiger_shark", "toilet_tissue", "airliner"],
    ]
    wnid, name, score = decoded[0][0]
    assert (wnid, name) == ("n01443537", "goldfish")
    assert isinstance(score, float) and score == pytest.approx(0.9)
    assert len(models.decode_predictions(preds)[0]) == 5  # keras's default top=5
    # A backend tensor works as well as an array.
    assert models.decode_predictions(keras.ops.convert_to_tensor(preds), top=1)[1][0][1] == (
        "tiger_shark"
    )


@pytest.mark.parametrize(
    "preds, top, needle",
    [
        (np.zeros((2, 10)), 5, r"preds.shape=\(2, 10\)"),
        (np.zeros(1000), 5, r"preds.shape=\(1000,\)"),
        (np.zeros((1, 1000)), 0, "top=0"),
        (np.zeros((1, 1000)), 1001, "top=1001"),
    ],
)
def test_decode_predictions_refuses_what_is_not_imagenet_scores(preds, top, needle):
    with pytest.raises(ValueError, match=needle):
        models.decode_predictions(preds, top=top)


def _numpy_reference(images, mean, std, scale=1 / 255):
    return ((images.astype(np.float64) * scale - np.array(mean)) / np.array(std)).astype(np.float32)


def test_preprocess_input_applies_the_models_spec():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    # No spec: the ImageNet mean/std on pixels / 255.
    out = models.preprocess_input(images)
    assert out.dtype == np.float32 and out.shape == images.shape
    expected = _numpy_reference(images, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    np.testing.assert_allclose(out, expected, atol=1e-5)

    # The spec recorded for a model (as pretrained loaders and training runs attach it).
    spec = Preprocessing(mean=(0.2, 0.5, 0.7), std=(0.3, 0.1, 0.2))
    model = models.get("se_resnet20_cifar", input_shape=(8, 8, 3), classes=3)
    preprocessing.attach(model, spec)
    np.testing.assert_allclose(
        models.preprocess_input(images, model),
        _numpy_reference(images, spec.mean, spec.std),
        atol=1e-5,
    )
    # A backend tensor in, a backend tensor out, same values.
    tensor = models.preprocess_input(keras.ops.convert_to_tensor(images), spec)
    assert not isinstance(tensor, np.ndarray)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tensor), _numpy_reference(images, spec.mean, spec.std), atol=1e-5
    )
    # channels_first: statistics along axis -3.
    first = models.preprocess_input(
        images.transpose(0, 3, 1, 2), spec, data_format="channels_first"
    )
    np.testing.assert_allclose(
        first, _numpy_reference(images, spec.mean, spec.std).transpose(0, 3, 1, 2), atol=1e-5
    )

    with pytest.raises(ValueError, match="3 values for images with 1 channels"):
        models.preprocess_input(images[..., :1], spec)
    with pytest.raises(TypeError, match="model_or_preprocessing"):
        models.preprocess_input(images, "imagenet")


@pytest.mark.integration
def test_preprocess_input_and_decode_predictions_import_no_tensorflow():
    script = (
        "import sys; import keras_se.models.imagenet as m, numpy as np; "
        "m.preprocess_input(np.zeros((1, 2, 2, 3))); m.decode_predictions(np.ones((1, 1000))); "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"KERAS_BACKEND": "numpy", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
