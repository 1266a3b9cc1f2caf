"""keras_se.models.preprocessing: the Preprocessing spec (plain data, no Keras)."""

from __future__ import annotations

import json

import pytest

from keras_se.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from keras_se_core.errors import UsageError


def test_defaults_are_imagenet_and_uint8():
    spec = Preprocessing()
    assert (
        (spec.mean, spec.std)
        == (IMAGENET_MEAN, IMAGENET_STD)
        == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    )
    assert spec.scale == pytest.approx(1 / 255) and spec.crop_pct == 1.0 and spec.image_size is None


def test_json_round_trip_restores_tuples():
    spec = Preprocessing(
        mean=(0.1, 0.2, 0.3),
        std=(1, 2, 3),
        image_size=(224, 224),
        interpolation="bicubic",
        crop_pct=0.875,
    )
    text = json.dumps(spec.to_dict())
    assert json.loads(text)["image_size"] == [224, 224]
    assert Preprocessing.from_dict(json.loads(text)) == spec


def test_unknown_keys_are_refused():
    with pytest.raises(UsageError, match=r"Unknown preprocessing keys \['size'\]"):
        Preprocessing.from_dict({"size": 224})


def test_keras_se_data_uses_the_same_class():
    from keras_se import data

    assert data.Preprocessing is Preprocessing


def test_attach_and_of_record_the_spec_beside_the_model():
    import keras

    from keras_se.models import preprocessing

    model = keras.Sequential()
    assert preprocessing.of(model) is None and preprocessing.of(model, "default") == "default"
    spec = Preprocessing(crop_pct=0.875)
    assert preprocessing.attach(model, spec) is model and preprocessing.of(model) is spec
    assert preprocessing.of(keras.Sequential()) is None  # per model, not global
    with pytest.raises(TypeError, match=r"`spec` must be a Preprocessing or None.*dict"):
        preprocessing.attach(model, {"mean": (0.5,)})
    assert preprocessing.of(preprocessing.attach(model, None)) is None
