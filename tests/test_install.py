"""The lean core: ``pip install keras-se`` into a fresh venv has no TensorFlow, and the layer,
the builders, model_stats and decode_predictions run under the JAX backend.

An integration test (a venv, pip, subprocesses; ~30 s on 2 idle CPU cores, measured: a venv
``--without-pip`` and this interpreter's ``pip --python VENV install --no-compile . jax`` 11 s,
13 s with pip installed into the venv first, 29 s with pip's byte-compiling).
Skipped, with the reason printed, when pip cannot reach a package index.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTALL_TIMEOUT = 900
RUN_TIMEOUT = 300
#: pip's words for "no index reachable" (then the test is skipped, not failed).
_OFFLINE = (
    "No matching distribution found",
    "Could not find a version that satisfies",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Max retries exceeded",
)


def _run(args, *, timeout, env=None):
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, env=env, cwd=os.path.expanduser("~")
    )


def _pip(python):
    """The command that runs pip on the venv of ``python``: this interpreter's pip with
    ``--python`` (pip >= 22.3; the venv is made ``--without-pip``, 4 s less than installing pip
    into it), else the venv's own pip, installed with ensurepip."""
    outer = [sys.executable, "-m", "pip", "--python", python]
    if _run([*outer, "--version"], timeout=RUN_TIMEOUT).returncode == 0:
        return outer
    _run([python, "-m", "ensurepip", "--default-pip"], timeout=RUN_TIMEOUT)
    return [python, "-m", "pip"]


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory):
    """A fresh venv with ``pip install <repo> jax`` (the core and a backend, nothing else):
    the venv's python and the pip command for it."""
    venv = tmp_path_factory.mktemp("core_venv")
    created = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=RUN_TIMEOUT)
    if created.returncode != 0:
        pytest.skip(f"cannot create a venv: {created.stderr.strip()[-300:]}")
    python = str(venv / "bin" / "python")
    pip = _pip(python)
    try:
        # --no-compile: pip byte-compiled every installed module (Keras, JAX, NumPy...), half of
        # the install's 29 s; the script below compiles the few it imports (43 → 30 s in all).
        install = _run(
            [*pip, "install", "-q", "--no-compile", REPO, "jax"], timeout=INSTALL_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip install did not finish in {INSTALL_TIMEOUT} s (slow or no index)")
    if install.returncode != 0:
        if any(words in install.stderr for words in _OFFLINE):
            reason = f"pip cannot reach a package index: {install.stderr.strip()[-300:]}"
            print(reason)
            pytest.skip(reason)
        pytest.fail(f"pip install failed:\n{install.stderr[-3000:]}")
    return python, pip


@pytest.mark.integration
@pytest.mark.slow
def test_core_install_has_no_tensorflow_and_runs_on_jax(core_venv):
    python, pip = core_venv
    listed = _run([*pip, "list", "--format=freeze"], timeout=RUN_TIMEOUT)
    installed = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert "keras-se" in installed and "jax" in installed
    for extra_only in ("tensorflow", "keras-tuner", "tensorflow-serving-api", "matplotlib"):
        assert extra_only not in installed, f"{extra_only} is in the core install"

    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from keras_se import SqueezeExcite, models
        from keras_se.utils import model_stats
        from keras_se_core.errors import MissingExtraError

        model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=10)
        probabilities = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
        print("output", probabilities.shape, round(float(probabilities.sum()), 4))
        print("backend", __import__("keras").backend.backend())
        print("se", model.get_layer("conv5_block2_se").ratio)
        plain = models.get("resnet18", input_shape=(32, 32, 3), classes=10)
        print("se params", model_stats(model).params - model_stats(plain).params)
        print("decoded", models.decode_predictions(np.eye(1000)[[1]], top=1)[0][0][1])
        try:
            import keras_se.tuning
        except MissingExtraError as err:
            print("extra tuning", err.extra)
        from keras_se import export

        try:
            export.export_model(model, "unused")
        except MissingExtraError as err:
            print("extra export", err.extra)
        print("tensorflow imported", "tensorflow" in sys.modules)
        """
    )
    result = _run(
        [python, "-c", script],
        timeout=RUN_TIMEOUT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "output (2, 10) 2.0" in out  # two softmax rows
    assert "backend jax" in out and "se 16" in out
    # SE parameters by the paper's count: 2*C*C/r + C/r + C per block, two blocks per stage.
    se = sum(2 * (2 * c * c // 16 + c // 16 + c) for c in (64, 128, 256, 512))
    assert f"se params {se}" in out
    assert "decoded goldfish" in out
    assert "extra tuning tune" in out and "extra export serve" in out
    assert "tensorflow imported False" in out
