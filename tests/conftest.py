"""Shared fixtures and checking helpers for the keras_se test suite."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with float32 policy, channels_last and a fresh name scope."""
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.utils.clear_session()
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")


def assert_layer_roundtrip(layer_factory, inputs, tmp_path, *, atol=1e-6):
    """The standard checks every keras_se layer passes.

    Builds ``layer_factory()`` inside a functional model on ``inputs``, then checks:
    output shape/dtype preserved, config and JSON round trips rebuild an equal layer,
    and a ``.keras`` save/load with ``safe_mode=True`` gives identical outputs.
    Returns the model.
    """
    inputs = np.asarray(inputs)
    x = keras.Input(inputs.shape[1:])
    layer = layer_factory()
    model = keras.Model(x, layer(x))
    out = keras.ops.convert_to_numpy(model(inputs))
    assert out.shape == inputs.shape
    assert out.dtype == inputs.dtype

    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    json_model = keras.models.model_from_json(model.to_json())
    json_model.set_weights(model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(json_model(inputs)), out, atol=atol)

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(inputs)), out, atol=atol)
    return model


def free_port():
    """A free TCP port on 127.0.0.1 (servers and workers in tests bind loopback only)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, timeout=600, env=None):
    """Runs ``python -m keras_se.cli ARGS`` in a subprocess; returns CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "keras_se.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


class CliResult:
    """What `run_main` returns: the same fields as subprocess.CompletedProcess."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(capsys, *args):
    """Runs ``keras_se.cli.main(args)`` in-process (fast); returns a `CliResult`."""
    from keras_se.cli import main

    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def assert_usage_error(result, *needles):
    """A CLI user error: exit 2, no traceback, one ``error:`` line naming ``needles``."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
