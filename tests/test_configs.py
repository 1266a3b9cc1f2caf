"""keras_se_core.configs.TrainConfig: one declaration for the settings, their checks and flags."""

from __future__ import annotations

import dataclasses
import json

import pytest

from keras_se_core import choices
from keras_se_core.configs import RESUMABLE_CHANGES, TrainConfig
from keras_se_core.errors import UsageError


def test_defaults_follow_the_paper():
    config = TrainConfig()
    assert (config.momentum, config.weight_decay, config.schedule, config.step_epochs) == (
        0.9,
        1e-4,
        "step",
        30,
    )
    assert TrainConfig(batch_size=1024).peak_learning_rate() == pytest.approx(0.6)
    assert TrainConfig(batch_size=256).peak_learning_rate() == pytest.approx(0.15)
    assert TrainConfig(learning_rate=0.01).peak_learning_rate() == 0.01
    assert config.validate() is config


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("batch_size", 2.5),
        ("learning_rate", float("inf")),
        ("learning_rate", float("nan")),
        ("momentum", 1.0),
        ("weight_decay", -1e-4),
        ("label_smoothing", float("inf")),
        ("schedule", "linear"),
        ("strategy", "gpus"),
        ("mixed_precision", "float8"),
        ("image_size", 4),
        ("se_ratio", 0),
        ("checkpoint_every", 0),
        ("keep_checkpoints", 0),
        ("sync_bn", "yes"),
        ("seed", 1.5),
        ("model", ""),
    ],
)
def test_every_bad_setting_names_itself(field, value):
    with pytest.raises(UsageError, match=rf"`{field}`.*Received: {field}="):
        TrainConfig(**{field: value}).validate()


def test_every_cli_field_has_help_and_a_check_or_is_free_text():
    for field in TrainConfig.cli_fields():
        assert field.metadata["help"], field.name
        assert field.metadata["group"], field.name
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RESUMABLE_CHANGES) <= names


def test_choices_are_the_ones_in_choices():
    by_name = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name, options in (
        ("strategy", choices.STRATEGIES),
        ("schedule", choices.SCHEDULES),
        ("mixed_precision", choices.PRECISIONS),
    ):
        assert by_name[name].metadata["check"].keywords["choices"] == options


def test_dict_round_trip_and_unknown_keys():
    config = TrainConfig(model="se_resnet50", epochs=3, model_kwargs={"se_mode": "post"})
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(UsageError, match="newer keras_se"):
        TrainConfig.from_dict({"model": "x", "future_setting": 1})
