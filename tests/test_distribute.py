"""keras_se.distribute: TF_CONFIG parsing, strategy names and roles (no cluster is started)."""

from __future__ import annotations

import json

import pytest

from keras_se import distribute
from keras_se_core.errors import UsageError


def test_tf_config_unset_and_valid(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.tf_config() == {} and distribute.tf_config_workers() == 0
    cluster = {"chief": ["h:1"], "worker": ["h:2", "h:3"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    )
    assert distribute.tf_config_workers() == 3


@pytest.mark.parametrize(
    "value, needle",
    [
        ("{", "not valid JSON"),
        ("3", "must be a JSON object"),
        ('{"cluster": {"worker": "h:1"}}', '"cluster"'),
        ('{"cluster": {"worker": ["h:1"]}}', '"task"'),
        (
            '{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
            "not in the cluster",
        ),
    ],
)
def test_malformed_tf_config_names_the_variable(monkeypatch, value, needle):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UsageError, match="TF_CONFIG") as info:
        distribute.tf_config()
    assert needle in str(info.value)


def test_strategy_names_and_chief(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distribute.make_strategy("one-device")
    assert distribute.strategy_name(strategy) == "one-device"
    assert distribute.is_chief(strategy) and distribute.worker_index(strategy) == 0
    assert isinstance(distribute.make_strategy("auto"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(UsageError, match="strategy='gpus'"):
        distribute.make_strategy("gpus")
    with pytest.raises(UsageError, match="TF_CONFIG"):
        distribute.make_strategy("multi-worker")
