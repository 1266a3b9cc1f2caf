"""keras_se.bench.suites_models: the accelerator path (the SE-cost rows: tests/test_suites.py's
quick report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_main


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.integration
def test_device_path_runs_on_whatever_device_is_there(capsys, tmp_path):
    """`--device gpu` (mixed precision + XLA) runs end to end; here on the CPU, at tiny sizes."""
    out = tmp_path / "gpu.json"
    result = run_main(capsys, "bench", "--device", "gpu", "--quick", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick-gpu"
    names = [f["name"] for f in report["figures"]]
    peer = ["device_peer_inference", "device_peer_train_step"] if "peer" in report else []
    assert names == ["device_inference", "device_train_step", *peer]
    assert all("images/s" in f["description"] and f["ratio"] > 0 for f in report["figures"])


@pytest.mark.bench
@pytest.mark.integration
def test_device_path_runs_under_jax_without_tensorflow_figures(tmp_path):
    """What scripts/bench_gpu.sh runs (KERAS_BACKEND=jax), here on the CPU at tiny sizes."""
    out = tmp_path / "gpu.json"
    blocker = tmp_path / "site" / "tensorflow"  # a machine without TensorFlow: importing it fails
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no TensorFlow on this machine')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=path,
        KERAS_SE_PEER_PYTHON="",
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_se_core.cli",
            "bench",
            "--device",
            "gpu",
            "--quick",
        ]
        + ["--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["machine"]["backend"] == "jax"
    assert {f["backend"] for f in report["figures"]} == {"jax"}


def test_rows_time_the_trainers_fast_twin_and_the_textbook_tails():
    """The SE-ResNet-50 rows time what keras-se train runs (`keras_se.speed.accelerate`: the
    fused tails); the *_textbook rows the same twin with each conv → BN → SE left unfused.
    Same variables, same function."""
    import numpy as np

    from keras_se import models
    from keras_se.bench.suites_models import textbook_se_resnet50, trained_as

    model = models.SEResNet50(input_shape=(32, 32, 3), classes=3)
    fast = trained_as(model)
    textbook, labels = textbook_se_resnet50(size=32, classes=3)
    kinds = [type(layer).__name__ for layer in fast.layers]
    assert kinds.count("BatchNormSqueezeExcite") == 16
    book = [type(layer).__name__ for layer in textbook.layers]
    assert "BatchNormSqueezeExcite" not in book and book.count("SqueezeExcite") == 16
    assert "FusedBatchNormalization" in book  # the other speed layers stay
    assert labels == ("SE-ResNet-50, textbook tails", "ResNet-50")
    assert textbook.count_params() == fast.count_params() == model.count_params()
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(fast(x), model(x), atol=1e-5)
