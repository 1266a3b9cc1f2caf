"""keras_se.export.precision: the model rebuilt to compute in the exported precision."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se import models
from keras_se.export import precision


def test_with_precision_keeps_weights_and_the_classifier_in_float32():
    model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
    assert precision.with_precision(model, "float32") is model  # nothing to change
    bf16 = precision.with_precision(model, "bfloat16")
    assert bf16.layers[-1].name == "predictions" and bf16.layers[-1].compute_dtype == "float32"
    assert {layer.compute_dtype for layer in bf16.layers[1:-1]} == {"bfloat16"}
    assert all(v.dtype == "float32" for v in bf16.weights)  # float32 variables
    for ours, theirs in zip(model.weights, bf16.weights):
        assert ours.path == theirs.path
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert precision.with_precision(bf16, "bfloat16") is bf16
    back = precision.with_precision(bf16, "float32")
    assert {layer.compute_dtype for layer in back.layers} == {"float32"}


def test_a_softmax_layer_keeps_the_dense_before_it_in_float32():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="softmax")(x))
    assert [layer.name for layer in precision._head_layers(model)] == ["softmax", "logits"]
    bf16 = precision.with_precision(model, "bfloat16")
    dtypes = {layer.name: layer.compute_dtype for layer in precision.all_layers(bf16)}
    assert dtypes == {
        "conv": "bfloat16",
        "pool": "bfloat16",
        "logits": "float32",
        "softmax": "float32",
    }


def test_all_layers_enters_nested_models_and_skips_inputs():
    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(2, name="inner_dense")(inner_in), name="inner")
    outer_in = keras.Input((4,))
    outer = keras.Model(outer_in, keras.layers.Softmax(name="out")(inner(outer_in)))
    assert [layer.name for layer in precision.all_layers(outer)] == ["inner_dense", "out"]


def test_an_unknown_precision_is_refused():
    model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
    with pytest.raises(ValueError, match=r"Received: precision='bfloat16 '"):
        precision.with_precision(model, "bfloat16 ")
