"""keras_se.export.savedmodel: the serving functions, written, reloaded and described.

A tiny classifier with one SqueezeExcite layer keeps the SavedModel a second's work; the full
SE-ResNet exports are in test_export.py. References are NumPy formulas, not the code's output.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_se import SqueezeExcite
from keras_se.data import Preprocessing
from keras_se.export import savedmodel
from keras_se.export.plan import make_plan
from keras_se.export.sources import ExportSource

SPEC = Preprocessing(mean=(0.2, 0.5, 0.7), std=(0.3, 0.1, 0.2))


def _plan_and_functions(*, activation="softmax", top_k=2):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = SqueezeExcite(ratio=2, name="se")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="predictions")(x))
    src = ExportSource(model=model, preprocessing=SPEC, preprocessing_note="given")
    plan = make_plan(
        src, name="tiny", version=None, with_excitations=True, top_k=top_k, dynamic_size=False
    )
    return savedmodel.ServingFunctions(model, SPEC, plan)


def _reference(model, images, *, logits=False):
    x = (images.astype(np.float64) / 255.0 - np.array(SPEC.mean)) / np.array(SPEC.std)
    out = keras.ops.convert_to_numpy(model(x.astype(np.float32), training=False)).astype(np.float64)
    if logits:
        out = np.exp(out - out.max(-1, keepdims=True))
        out /= out.sum(-1, keepdims=True)
    return out


def test_written_savedmodel_is_verified_and_described(tmp_path):
    fns = _plan_and_functions()
    path = str(tmp_path / "sm")
    savedmodel.write_archive(fns, path)
    images = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    signatures, diff = savedmodel.verify(path, fns, images)
    assert diff <= 1e-5
    assert list(signatures) == ["serving_default", "excitations", "serving_preprocessed"]
    assert signatures["serving_default"] == {
        "inputs": {"image": ("uint8", [-1, 8, 8, 3])},
        "outputs": {
            "class_id": ("int64", [-1]),
            "probabilities": ("float32", [-1, 3]),
            "top_k_class_ids": ("int64", [-1, 2]),
            "top_k_probabilities": ("float32", [-1, 2]),
        },
    }
    assert signatures["serving_preprocessed"]["inputs"] == {"image": ("float32", [-1, 8, 8, 3])}
    assert signatures["excitations"]["outputs"] == {"se": ("float32", [-1, 8])}
    served = tf.saved_model.load(path).signatures["serving_default"](image=tf.constant(images))
    reference = _reference(fns.model, images)
    assert np.abs(served["probabilities"].numpy() - reference).max() <= 1e-5


def test_each_signature_is_traced_once_and_each_weight_stored_once(tmp_path, monkeypatch):
    """Keras's ExportArchive traced every signature three times (once itself, once more
    inside the save, whose cache key differs, and the model's default save signature) and
    stored every weight twice (the Keras variable and the TensorFlow variable under it):
    SE-ResNet-50's SavedModel was 225 MB for 28 M float32 parameters."""
    fns = _plan_and_functions()
    traces = {"serve": 0, "serve_preprocessed": 0, "excitations": 0}
    for name in traces:
        original = getattr(fns, name)

        def counted(image, name=name, original=original):
            traces[name] += 1
            return original(image)

        monkeypatch.setattr(fns, name, counted)
    path = str(tmp_path / "sm")
    savedmodel.write_archive(fns, path)
    assert traces == {"serve": 1, "serve_preprocessed": 1, "excitations": 1}

    model = fns.model
    stored = [
        (name, shape)
        for name, shape in tf.train.list_variables(f"{path}/variables/variables")
        if not name.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")
    ]
    # conv 3x3x3x8 + 8, SE 8x4 + 4 + 4x8 + 8 (ratio 2), dense 8x3 + 3: Hu et al.'s count
    assert sum(int(np.prod(shape)) for _, shape in stored) == 224 + 76 + 27
    assert len(stored) == len(model.weights) == 8  # a kernel and a bias each
    loaded = tf.saved_model.load(path)
    assert len(loaded.variables) == len(loaded.trainable_variables) == 8
    assert loaded.non_trainable_variables == []
    for saved, weight in zip(loaded.variables, model.weights):
        np.testing.assert_array_equal(saved.numpy(), keras.ops.convert_to_numpy(weight))


def test_head_adds_a_softmax_to_logits_and_orders_top_k():
    fns = _plan_and_functions(activation=None, top_k=3)
    images = np.random.default_rng(2).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    out = fns.serve(tf.constant(images))
    reference = _reference(fns.model, images, logits=True)
    np.testing.assert_allclose(out["probabilities"].numpy(), reference, atol=1e-5)
    np.testing.assert_array_equal(out["class_id"].numpy(), reference.argmax(-1))
    np.testing.assert_array_equal(out["top_k_class_ids"].numpy(), np.argsort(-reference, -1))


@pytest.mark.parametrize("shape", [(2, 8, 8, 1), (2, 9, 8, 3), (8, 8, 3)])
def test_check_image_names_the_expected_and_the_received_shape(shape):
    fns = _plan_and_functions()
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fns.check_image(tf.zeros(shape, tf.uint8), fns.image_shape, "uint8")
    received = ", ".join(str(d) for d in shape)
    assert "`image` must have shape [batch, 8, 8, 3] (uint8, channels last)" in info.value.message
    assert f"Received: image.shape=[{received}]" in info.value.message


def test_an_empty_batch_never_reaches_the_network():
    fns = _plan_and_functions()
    out = fns.serve(tf.zeros((0, 8, 8, 3), tf.uint8))
    assert tuple(out["probabilities"].shape) == (0, 3) and tuple(out["class_id"].shape) == (0,)
    assert {
        k: tuple(v.shape) for k, v in fns.excitations(tf.zeros((0, 8, 8, 3), tf.uint8)).items()
    } == {"se": (0, 8)}
