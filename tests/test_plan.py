"""keras_se.export.plan: every check on the model and the arguments, before the disk."""

from __future__ import annotations

import dataclasses

import keras
import pytest

from keras_se import SqueezeExcite, models
from keras_se.data import Preprocessing
from keras_se.export.plan import make_plan
from keras_se.export.sources import ExportSource
from keras_se_core.errors import UsageError

ARGS = dict(name="net", version=None, with_excitations=False, top_k=None, dynamic_size=False)


def _source(model, **fields):
    return ExportSource(model=model, preprocessing=Preprocessing(), preprocessing_note="", **fields)


def _classifier(*, input_shape=(8, 8, 3), activation="softmax", se=True):
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    if se:
        x = SqueezeExcite(ratio=2, name="se")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation=activation, name="predictions")(x))


@pytest.fixture(scope="module")
def model():
    return _classifier()


def test_plan_reads_the_model_and_the_shapes_of_the_signatures(model):
    plan = make_plan(_source(model), **{**ARGS, "with_excitations": True, "top_k": 2})
    assert (plan.height, plan.width, plan.channels, plan.classes) == (8, 8, 3, 3)
    assert (plan.logits, plan.top_k, plan.size, plan.resize) == (False, 2, (8, 8), False)
    assert [layer.name for layer in plan.se_layers] == ["se"]
    assert plan.image_shape == plan.model_shape == [None, 8, 8, 3]
    assert plan.sample_shape == (8, 8, 3)
    dynamic = make_plan(_source(model), **{**ARGS, "dynamic_size": True})
    assert dynamic.image_shape == [None, None, None, 3] and dynamic.resize
    assert dynamic.se_layers == ()  # without with_excitations
    assert make_plan(_source(_classifier(activation=None)), **ARGS).logits


def test_any_size_model_resizes_to_the_run_or_spec_size():
    model = _classifier(input_shape=(None, None, 3))
    plan = make_plan(_source(model), **{**ARGS, "dynamic_size": True})
    assert (plan.size, plan.resize, plan.sample_shape) == (None, False, (224, 224, 3))
    plan = make_plan(_source(model, image_shape=(16, 12, 3)), **{**ARGS, "dynamic_size": True})
    assert (plan.size, plan.resize, plan.sample_shape) == ((16, 12), True, (16, 12, 3))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"name": "-net"}, "`name` must be a TF Serving model name"),
        ({"name": "a/b"}, "Received: name='a/b'"),
        ({"version": -1}, "`version`"),
        ({"top_k": 4}, r"number of classes \(3\)"),
        ({"top_k": 0}, "`top_k`"),
    ],
)
def test_bad_arguments_are_named(model, change, match):
    with pytest.raises(UsageError, match=match):
        make_plan(_source(model), **{**ARGS, **change})


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"num_classes": 4}, "says num_classes=4 but the model has 3 outputs"),
        ({"class_names": ["a", "b"]}, "class_names has 2 names for a model with 3 classes"),
    ],
)
def test_the_run_config_must_agree_with_the_model(model, fields, match):
    with pytest.raises(UsageError, match=match):
        make_plan(_source(model, **fields), **ARGS)


@pytest.mark.parametrize(
    "spec, dynamic_size, match",
    [
        (Preprocessing(mean=(0.1, 0.2)), False, "`mean` has 2 values for a model with 3 channels"),
        (Preprocessing(std=(0.0,)), False, "`std` must not be 0"),
        (Preprocessing(interpolation="cubic-ish"), True, "`interpolation` must be one of"),
        (Preprocessing(crop_pct=1.5), True, r"`crop_pct` must be in \(0, 1\]"),
    ],
)
def test_unusable_preprocessing_is_refused(model, spec, dynamic_size, match):
    src = dataclasses.replace(_source(model), preprocessing=spec)
    with pytest.raises(UsageError, match=match):
        make_plan(src, **{**ARGS, "dynamic_size": dynamic_size})


def test_models_that_are_no_image_classifiers_are_refused():
    tabular_in = keras.Input((10,))
    tabular = keras.Model(tabular_in, keras.layers.Dense(3, activation="softmax")(tabular_in))
    with pytest.raises(UsageError, match="exactly one image input"):
        make_plan(_source(tabular), **ARGS)
    features = models.get("se_resnet18", input_shape=(32, 32, 3), include_top=False, pooling="avg")
    with pytest.raises(UsageError, match="must end in a classifier"):
        make_plan(_source(features), **ARGS)
    with pytest.raises(UsageError, match="`with_excitations` needs a model with SqueezeExcite"):
        make_plan(_source(_classifier(se=False)), **{**ARGS, "with_excitations": True})
