"""Shared fixtures and checking helpers for the keras_se test suite."""

from __future__ import annotations

import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# `pytest -n auto` starts one xdist worker per core; each worker's TensorFlow (and the
# processes its tests start, which inherit this) would otherwise run every op on a pool as
# wide as the machine, so two workers kept four busy threads on two cores. One intra-op
# thread per worker: set before TensorFlow starts (the test modules' `import keras`).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.budget import FastTierBudget, SharedFixtureTimer  # noqa: E402

# Keras is imported where it is used, not here: xdist's controller process loads this file
# too and runs no test; importing TensorFlow there cost ~5 s of CPU while the workers start.

#: A tiny training run (`TrainConfig` keywords): He et al.'s CIFAR SE-ResNet-20 (0.27 M
#: parameters; SE-ResNet-18's 11 M made every step checkpoint 86 MB and a kill-and-resume run
#: twice as slow) on 16x16 digits, global batch 16, evaluating the first 16 validation images
#: only (`validation_steps`; 3.5 s less per epoch than all 360). The whole split's evaluation is
#: tested by tests/test_training.py's multi-worker test.
TINY_RUN = dict(model="se_resnet20_cifar", image_size=16, batch_size=16, validation_steps=1)


def cli_flags(settings=TINY_RUN, **more):
    """`TrainConfig` keywords as ``keras-se train``/``tune`` flags, from the fields' own flag
    names: ``cli_flags(epochs=2)`` is ``["--model", "se_resnet18", ..., "--epochs", "2"]``;
    True gives the bare flag (``log_excitations=True`` is ``--log-excitations``)."""
    import dataclasses

    from keras_se_core.configs import TrainConfig

    names = {
        f.name: f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(TrainConfig)
    }
    out = []
    for key, value in {**settings, **more}.items():
        if value is True:
            out.append(names[key])
        elif value is not None and value is not False:
            out += [names[key], str(value)]
    return out


def pytest_configure(config):
    config.pluginmanager.register(SharedFixtureTimer(), "keras_se_shared_fixture_timer")
    # Under xdist the controller sees every report; the workers only their own share.
    if not hasattr(config, "workerinput") and not config.option.collectonly:
        config.pluginmanager.register(FastTierBudget.from_env(), "keras_se_fast_tier_budget")


#: Module-scoped fixtures that take seconds to build (an export, a training run, the Inception
#: models). Under xdist each worker builds its own copy of a module fixture; the tests that use
#: one of these run in its xdist group (``--dist loadgroup``), on one worker, so the suite
#: builds it once.
SHARED_FIXTURES = ("exported", "resume_reference", "digits_run", "small_model")


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        shared = [name for name in SHARED_FIXTURES if name in getattr(item, "fixturenames", ())]
        if shared and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with float32 policy, channels_last and a fresh name scope.

    Without Keras's ``gc.collect()`` (``free_memory=False``): a full collection of the heap
    TensorFlow builds took 0.3-1.4 s per test, minutes of the suite; Python's own collector
    still frees the cycles.
    """
    import keras

    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.utils.clear_session(free_memory=False)
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """The quickstart's recipe (SE-ResNet-20 on digits), shrunk to 16x16, batch 16, one epoch
    of 2 steps: training, export, then the figure step; what `keras_se.quickstart` returns.

    Shared by tests/test_quickstart.py and tests/test_visualize.py; their tests that use it
    are in the xdist group ``quickstart_run``, so one worker trains it once.
    """
    from keras_se import quickstart as qs

    out = tmp_path_factory.mktemp("quickstart")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(qs.QUICKSTART, "image_size", 16)
        mp.setitem(qs.QUICKSTART, "batch_size", 16)
        mp.setitem(qs.QUICKSTART, "steps_per_epoch", 2)
        return qs.quickstart(str(out), epochs=1, verbose=0)


def assert_layer_roundtrip(layer_factory, inputs, tmp_path, *, atol=1e-6):
    """The standard checks every keras_se layer passes.

    Builds ``layer_factory()`` inside a functional model on ``inputs``, then checks:
    output shape/dtype preserved, config and JSON round trips rebuild an equal layer,
    and a ``.keras`` save/load with ``safe_mode=True`` gives identical outputs.
    Returns the model.
    """
    import keras

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


@contextlib.contextmanager
def shapes_only():
    """Models built inside have every weight's shape and no values: `keras.StatelessScope`
    with ``initialize_variables=False`` (no initializer runs, no TensorFlow variable is made).
    For tests that read shapes only (parameter counts, MACs, which layer feeds which); such a
    model cannot run. SENet-154 builds in 1.1 s instead of 4.0 s, SE-ResNet-50 in 0.26 s
    instead of 1.2 s (measured on 2 idle cores)."""
    import keras

    with keras.StatelessScope(initialize_variables=False):
        yield


def forward(model, x):
    """One eager inference pass of ``model`` on ``x``, as NumPy (a dict for dict outputs).
    ``predict`` first traces a function: 5-7 s for the full Inception graphs, several times
    the pass itself."""
    import keras

    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def free_port():
    """A free TCP port on 127.0.0.1 (servers and workers in tests bind loopback only)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args, timeout=600, env=None):
    """Runs ``python -m keras_se_core.cli ARGS`` (= ``keras-se``) in a new process, forked
    from the preloaded interpreter (tests/prefork.py); a `subprocess.CompletedProcess`."""
    from tests import prefork

    full_env = dict(os.environ, **(env or {}))
    return prefork.run(
        [sys.executable, "-m", "keras_se_core.cli", *args],
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
    """Runs ``keras_se_core.cli.main(args)`` in-process (fast); returns a `CliResult`."""
    from keras_se_core.cli import main

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
