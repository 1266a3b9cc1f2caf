"""Training: run directory, strategies (mirrored on 2 logical CPUs, 2 loopback workers),
kill-and-resume, determinism, CLI errors. Every subprocess and port is bounded/local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_se.training import TrainConfig, learning_rate_schedule, train
from tests.conftest import assert_usage_error, free_port, run_cli, run_main

# A tiny run: SE-ResNet-18 on 16x16 digits, 3 steps of 16 images per epoch.
TINY = [
    "--model",
    "se_resnet18",
    "--dataset",
    "digits",
    "--image-size",
    "16",
    "--batch-size",
    "16",
    "--steps-per-epoch",
    "3",
    "--quiet",
]


def _cli(*args, env=None):
    return [sys.executable, "-m", "keras_se.cli", *args], dict(os.environ, **(env or {}))


def _final_weights(run_dir):
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_train_writes_run_directory_and_history(tmp_path):
    out = str(tmp_path / "run")
    summary = train(
        TrainConfig(
            model="se_resnet18", image_size=16, batch_size=16, steps_per_epoch=2, epochs=2, out=out
        ),
        verbose=0,
    )
    for name in (
        "config.json",
        "history.csv",
        "history.json",
        "model.keras",
        "model.preprocessing.json",
        "summary.json",
    ):
        assert os.path.exists(os.path.join(out, name)), name
    assert os.listdir(os.path.join(out, "logs")) and os.listdir(os.path.join(out, "checkpoints"))
    history = json.load(open(os.path.join(out, "history.json")))
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(np.isfinite(row["loss"]) and 0 <= row["val_accuracy"] <= 1 for row in history)
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["train"]["model"] == "se_resnet18" and config["num_classes"] == 10
    assert config["image_shape"] == [16, 16, 3] and config["class_names"][3] == "3"
    assert summary["params"] == 11_263_042 - 0 and summary["epochs"] == 2
    # Rerunning a finished run trains nothing more and gives the same model.
    again = train(
        TrainConfig(
            model="se_resnet18", image_size=16, batch_size=16, steps_per_epoch=2, epochs=2, out=out
        ),
        verbose=0,
    )
    assert again["weights_sha256"] == summary["weights_sha256"]
    assert len(json.load(open(os.path.join(out, "history.json")))) == 2


def test_learning_rate_follows_paper_recipe():
    config = TrainConfig(batch_size=256, epochs=100)
    assert config.peak_learning_rate() == pytest.approx(0.6 * 256 / 1024)
    schedule = learning_rate_schedule(config, steps_per_epoch=10)
    lr = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert lr(0) == pytest.approx(0.15) and lr(299) == pytest.approx(0.15)
    assert lr(301) == pytest.approx(0.015) and lr(601) == pytest.approx(0.0015)
    cosine = learning_rate_schedule(
        TrainConfig(batch_size=1024, epochs=10, schedule="cosine", warmup_epochs=2), 10
    )
    values = [float(keras.ops.convert_to_numpy(cosine(s))) for s in (0, 10, 20, 60, 100)]
    assert (
        values[0] == pytest.approx(0.0)
        and values[1] == pytest.approx(0.3)
        and values[2] == pytest.approx(0.6)
    )
    assert values[3] < 0.6 and values[4] == pytest.approx(0.0, abs=1e-6)


def test_mixed_precision_keeps_a_float32_head(tmp_path):
    out = str(tmp_path / "mp")
    train(
        TrainConfig(
            model="se_resnet18",
            image_size=16,
            batch_size=16,
            steps_per_epoch=1,
            epochs=1,
            out=out,
            mixed_precision="bfloat16",
        ),
        verbose=0,
    )
    model = keras.models.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("conv2_block1_se").dtype_policy.compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL mid-run, rerun the same command: no epoch lost or repeated, same weights."""
    args = [*TINY, "--epochs", "3", "--seed", "7"]
    reference = str(tmp_path / "reference")
    cmd, env = _cli("train", *args, "--out", reference)
    subprocess.run(cmd, env=env, check=True, timeout=600, capture_output=True)

    killed = str(tmp_path / "killed")
    cmd, env = _cli("train", *args, "--out", killed)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = os.path.join(killed, "history.json")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(history) and len(json.load(open(history))) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not os.path.exists(os.path.join(killed, "model.keras")), "killed too late to test resume"

    result = subprocess.run(cmd, env=env, timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.load(open(history))
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert _max_diff(_final_weights(killed), _final_weights(reference)) <= 1e-5


def test_mirrored_two_logical_cpus_and_two_loopback_workers_agree(tmp_path):
    """2 workers (MultiWorkerMirroredStrategy, 127.0.0.1) end with identical weights that match a
    single-process MirroredStrategy run over 2 logical CPU devices with the same global batch."""
    args = [*TINY, "--epochs", "2", "--seed", "3"]
    mirrored = str(tmp_path / "mirrored")
    cmd, env = _cli(
        "train", *args, "--strategy", "mirrored", "--cpu-devices", "2", "--out", mirrored
    )
    result = subprocess.run(cmd, env=env, timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.load(open(os.path.join(mirrored, "summary.json")))
    assert summary["replicas"] == 2 and summary["strategy"] == "mirrored"

    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    multi = str(tmp_path / "multi")
    procs = []
    for index in range(2):
        tf_config = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        cmd, env = _cli(
            "train",
            *args,
            "--strategy",
            "multi-worker",
            "--out",
            multi,
            env={"TF_CONFIG": tf_config},
        )
        procs.append(
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    try:
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    chief = json.load(open(os.path.join(multi, "summary.json")))
    other = json.load(open(os.path.join(multi, "worker_1.summary.json")))
    assert chief["replicas"] == 2 and chief["strategy"] == "multi-worker"
    assert chief["weights_sha256"] == other["weights_sha256"]
    assert not any(name.startswith(".worker_") for name in os.listdir(multi))
    # Same global batches, same per-replica BN batches: equal up to all-reduce order.
    assert _max_diff(_final_weights(multi), _final_weights(mirrored)) <= 1e-4
    h_multi = json.load(open(os.path.join(multi, "history.json")))
    h_mirrored = json.load(open(os.path.join(mirrored, "history.json")))
    assert h_multi[-1]["loss"] == pytest.approx(h_mirrored[-1]["loss"], rel=1e-4)


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--model", "se_resnet5"], ["model='se_resnet5'", "se_resnet50"]),
        (["--dataset", "no_such_data"], ["dataset='no_such_data'"]),
        (["--strategy", "gpus"], ["--strategy", "'gpus'"]),
        (["--epochs", "0"], ["--epochs", "'0'"]),
        (["--batch-size", "x"], ["--batch-size", "'x'"]),
        (["--lr", "-1"], ["--lr", "'-1'"]),
        (["--out", "/proc/keras_se_cannot_write"], ["out='/proc/keras_se_cannot_write'"]),
        (["--batch-size", "4096"], ["batch_size=4096"]),
    ],
)
def test_cli_train_user_errors(capsys, args, needles):
    assert_usage_error(run_main(capsys, "train", "--epochs", "1", *args), *needles)


def test_cli_error_in_a_real_process_has_no_traceback():
    assert_usage_error(run_cli("train", "--model", "nope", timeout=300), "model='nope'")


def test_resume_refuses_a_different_configuration(tmp_path):
    out = str(tmp_path / "run")
    train(
        TrainConfig(
            model="se_resnet18", image_size=16, batch_size=16, steps_per_epoch=1, epochs=1, out=out
        ),
        verbose=0,
    )
    with pytest.raises(ValueError, match="different settings.*batch_size"):
        train(
            TrainConfig(
                model="se_resnet18",
                image_size=16,
                batch_size=32,
                steps_per_epoch=1,
                epochs=1,
                out=out,
            ),
            verbose=0,
        )


def test_sync_bn_clone_synchronizes_fused_se_tails():
    """``sync_bn``: every BatchNorm, including those folded into the fused SE tails, computes
    cross-replica statistics, and the clone computes the same function."""
    from keras_se import BatchNormSqueezeExcite, models
    from keras_se.training import _synchronize_batchnorm

    model = models.SEResNet50(input_shape=(32, 32, 3), classes=3)
    clone = _synchronize_batchnorm(model)
    clone.set_weights(model.get_weights())
    norms = [
        layer
        for layer in clone.layers
        if isinstance(layer, keras.layers.BatchNormalization | BatchNormSqueezeExcite)
    ]
    assert sum(isinstance(layer, BatchNormSqueezeExcite) for layer in norms) == 16
    assert all(layer.synchronized for layer in norms)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6
    )
