"""keras_se.callbacks.ExcitationMonitor: --log-excitations for model.fit users.

References: the gates recomputed layer by layer with ``SqueezeExcite.excitation`` and
averaged per class with NumPy; the TensorBoard tags of ``keras-se train --log-excitations``
(tests/test_excitation_log.py) read back with TensorBoard's own reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_se import SqueezeExcite
from keras_se.callbacks import ExcitationMonitor

CLASSES = 3


def _user_model():
    """A hand-written functional model with two SqueezeExcite layers (not a registry model)."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = SqueezeExcite(ratio=2, name="se_a")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = SqueezeExcite(ratio=4, name="se_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="user_net")
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    x = (rng.normal(size=(n, 8, 8, 3)) + y[:, None, None, None]).astype("float32")
    return x, y


def _reference_class_means(model, layer_name, x, y):
    layer = model.get_layer(layer_name)
    features = keras.Model(model.inputs, layer.input).predict(x, verbose=0)
    gates = keras.ops.convert_to_numpy(layer.excitation(features))  # (N, C)
    return np.stack([gates[y == c].mean(axis=0) for c in range(CLASSES)])


@pytest.mark.slow
def test_fit_writes_the_json_and_tags_of_log_excitations(tmp_path):
    model = _user_model()
    x, y = _data()
    sample = (x[:12], y[:12])
    monitor = ExcitationMonitor(sample, log_dir=str(tmp_path), every=2)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[monitor])
    # every 2nd epoch and the last, counted from 1 as the CLI does
    assert sorted(os.listdir(tmp_path / "excitations")) == ["epoch_2.json", "epoch_3.json"]
    saved = json.load(open(tmp_path / "excitations" / "epoch_3.json"))
    assert saved["epoch"] == 3 and saved["model"] == "user_net"
    assert [b["name"] for b in saved["blocks"]] == ["se_a", "se_b"]
    for block in saved["blocks"]:  # the final weights: epoch 3 was the last analysed
        expected = _reference_class_means(model, block["name"], *sample)
        np.testing.assert_allclose(block["class_means"], expected, rtol=1e-5, atol=1e-6)

    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    expected_tags = {f"{p}/{n}" for p in ("excitation", "excitation_mean", "specificity")
                     for n in ("se_a", "se_b")}  # fmt: skip
    expected_tags |= {"figures/specificity_by_depth", "figures/excitation_by_depth"}
    assert set(acc.Tags()["tensors"]) == expected_tags
    for tag in expected_tags:
        assert [e.step for e in acc.Tensors(tag)] == [2, 3], tag


def test_a_model_without_se_layers_is_named(tmp_path):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(CLASSES)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs, name="plain_net")
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = _data(6)
    monitor = ExcitationMonitor((x, y), log_dir=str(tmp_path))
    with pytest.raises(ValueError, match="plain_net"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])


def test_bad_arguments_are_named(tmp_path):
    x, y = _data(6)
    with pytest.raises(ValueError, match="every=0"):
        ExcitationMonitor((x, y), log_dir=str(tmp_path), every=0)
    with pytest.raises(ValueError, match="sample"):
        ExcitationMonitor(x, log_dir=str(tmp_path))
    with pytest.raises(ValueError, match="6 images and 5 labels"):
        ExcitationMonitor((x, y[:5]), log_dir=str(tmp_path))


@pytest.mark.integration
def test_jax_backend_writes_the_json_only(tmp_path):
    """On JAX the JSON is written (and equals the reference); no TensorBoard event file."""
    script = textwrap.dedent(f"""
        import json, os, sys
        import numpy as np
        sys.path.insert(0, {os.getcwd()!r})
        from tests.test_callbacks import _data, _reference_class_means, _user_model
        from keras_se.callbacks import ExcitationMonitor
        model, (x, y) = _user_model(), _data()
        model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                  callbacks=[ExcitationMonitor((x, y), log_dir={str(tmp_path)!r})])
        saved = json.load(open(os.path.join({str(tmp_path)!r}, "excitations", "epoch_2.json")))
        for block in saved["blocks"]:
            np.testing.assert_allclose(block["class_means"],
                _reference_class_means(model, block["name"], x, y), rtol=1e-5, atol=1e-6)
        import keras
        print("backend", keras.backend.backend(), sorted(os.listdir({str(tmp_path)!r})))
    """)
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backend jax ['excitations']" in result.stdout
    assert sorted(os.listdir(tmp_path / "excitations")) == ["epoch_1.json", "epoch_2.json"]
