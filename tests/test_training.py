"""Training: run directory, strategies (mirrored on 2 logical CPUs, 2 loopback workers),
kill-and-resume (epoch ends and mid-epoch), SIGTERM, divergence, distributed evaluation,
bad input. Every subprocess and port is bounded/local; subprocess tests are `integration`."""

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

from keras_se.rundir import RunDir
from keras_se.training import (
    Preempted,
    TrainConfig,
    Trainer,
    batchnorm_layers,
    train,
)
from tests import prefork
from tests.conftest import TINY_RUN, assert_usage_error, free_port, run_cli, run_main

# A tiny run: CIFAR SE-ResNet-20 (as `TINY_RUN`) on 16x16 digits, 3 steps of 16 images per epoch.
DIGITS16 = [
    "--model",
    "se_resnet20_cifar",
    "--dataset",
    "digits",
    "--image-size",
    "16",
    "--batch-size",
    "16",
]
# As `TINY_RUN` (tests/conftest.py): the first 16 validation images only; the whole split's
# distributed evaluation is the multi-worker test's (`DIGITS16` without the cap).
CAPPED = [*DIGITS16, "--validation-steps", "1"]
TINY = [*CAPPED, "--steps-per-epoch", "3", "--quiet"]


def _cli(*args, env=None):
    return [sys.executable, "-m", "keras_se_core.cli", *args], dict(os.environ, **(env or {}))


def _final_weights(run_dir):
    model = keras.models.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def _max_diff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


@pytest.mark.slow
def test_train_writes_run_directory_and_history(tmp_path):
    out = str(tmp_path / "run")
    summary = train(_tiny(out, steps_per_epoch=2, epochs=2), verbose=0)
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
    assert config["train"]["model"] == "se_resnet20_cifar" and config["num_classes"] == 10
    assert config["image_shape"] == [16, 16, 3] and config["class_names"][3] == "3"
    # Trainable: ResNet-20's 269,722 (He et al.; tests/test_cifar.py) + 3 SE blocks per stage of
    # 2*C*(C/16) + C/16 + C for C = 16, 32, 64 (49 + 162 + 580).
    assert summary["params"] == 269_722 + 3 * (49 + 162 + 580) and summary["epochs"] == 2
    # Rerunning a finished run trains nothing more and gives the same model.
    again = train(_tiny(out, steps_per_epoch=2, epochs=2), verbose=0)
    assert again["weights_sha256"] == summary["weights_sha256"]
    assert len(json.load(open(os.path.join(out, "history.json")))) == 2


@pytest.mark.slow
def test_mixed_precision_keeps_a_float32_head(tmp_path):
    out = str(tmp_path / "mp")
    train(_tiny(out, steps_per_epoch=1, mixed_precision="bfloat16"), verbose=0)
    model = keras.models.load_model(os.path.join(out, "model.keras"), safe_mode=True)
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model.get_layer("conv2_block1_se").dtype_policy.compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def _latest_step(run_dir):
    """The global step of the run's latest checkpoint (``ckpt-N``), or None."""
    state = os.path.join(run_dir, "checkpoints", "checkpoint")
    if not os.path.exists(state):
        return None
    first = open(state).readline()  # model_checkpoint_path: "ckpt-N"
    return int(first.rsplit("-", 1)[1].strip().strip('"')) if "ckpt-" in first else None


def _wait_for_step_checkpoint(proc, run_dir, steps_per_epoch, timeout=600):
    """Waits until the run saved a checkpoint inside an epoch; returns its global step."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        step = _latest_step(run_dir)
        if step is not None and step % steps_per_epoch:
            return step
        time.sleep(0.05)
    raise AssertionError(f"no mid-epoch checkpoint appeared (exit code {proc.poll()})")


# 8 steps per epoch, a checkpoint every 2: interrupted runs resume inside an epoch.
STEP_FLAGS = ["--steps-per-epoch", "8", "--checkpoint-every", "2", "--quiet"]
STEPPED = [*CAPPED, *STEP_FLAGS]


INTERRUPTED = [*STEPPED, "--epochs", "2", "--seed", "7"]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """The run directory of `INTERRUPTED` run once without interruption (shared). In this
    process, through the CLI's own entry point: the same flags, seed and thread count as the
    interrupted subprocesses, without a third TensorFlow start (8 s)."""
    from keras_se_core.cli import main

    reference = str(tmp_path_factory.mktemp("uninterrupted") / "run")
    assert main(["train", *INTERRUPTED, "--out", reference]) == 0
    return reference


@pytest.mark.integration
@pytest.mark.xdist_group("uninterrupted_run")  # one worker runs both: the reference once
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_interrupted_mid_epoch_resumes_to_the_uninterrupted_weights(
    tmp_path, sig, uninterrupted_run
):
    """(a) SIGKILL / (b) SIGTERM mid-epoch after a step checkpoint, rerun the same command:
    every epoch once in the history, final weights equal the uninterrupted run's (1e-5).
    SIGTERM saves at the next step boundary and exits with code 3."""
    args, reference = INTERRUPTED, uninterrupted_run
    killed = str(tmp_path / "killed")
    cmd, env = _cli("train", *args, "--out", killed)
    proc = prefork.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = _wait_for_step_checkpoint(proc, killed, steps_per_epoch=8)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert not os.path.exists(os.path.join(killed, "model.keras")), (
        "stopped too late to test resume"
    )
    if sig == signal.SIGTERM:
        assert proc.returncode == 3, err[-2000:]
        stopped = _latest_step(killed)
        assert stopped % 8 and stopped >= seen  # saved at a step boundary inside the epoch
        assert "Traceback" not in err and "SIGTERM" in err and "rerun" in err
    else:
        assert proc.returncode == -signal.SIGKILL

    result = prefork.run(cmd, env=env, timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.load(open(os.path.join(killed, "history.json")))
    assert [row["epoch"] for row in rows] == [1, 2]
    ref_rows = json.load(open(os.path.join(reference, "history.json")))
    for key in ("loss", "accuracy", "val_accuracy"):  # the interrupted epoch's sums were kept
        assert [r[key] for r in rows] == pytest.approx([r[key] for r in ref_rows], rel=1e-5)
    assert _max_diff(_final_weights(killed), _final_weights(reference)) <= 1e-5


def _worker_procs(args, out, workers):
    procs = []
    for index in range(len(workers)):
        tf_config = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        cmd, env = _cli(
            "train", *args, "--strategy", "multi-worker", "--out", out, env={"TF_CONFIG": tf_config}
        )
        procs.append(
            prefork.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    return procs


def _finish(procs, timeout=600):
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]


def _single_device_val_accuracy(run_dir):
    """Accuracy of the saved model on the whole validation split, one device, NumPy counts."""
    from keras_se import data

    config = json.load(open(os.path.join(run_dir, "config.json")))
    info, sources = data.describe_dataset("digits", image_size=config["image_shape"][0])
    images, labels = [], []
    for x, y in data.make_dataset(info, sources["validation"], training=False, batch_size=50):
        images.append(x.numpy())
        labels.append(y.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert len(labels) == info.val_size == 360
    probs = keras.models.load_model(os.path.join(run_dir, "model.keras")).predict(images, verbose=0)
    return float(np.sum(np.argmax(probs, -1) == labels)) / len(labels)


@pytest.mark.integration
def test_mirrored_two_logical_cpus_and_two_loopback_workers_agree(tmp_path):
    """2 workers (MultiWorkerMirroredStrategy, 127.0.0.1), one SIGKILLed mid-epoch and both
    restarted with the same command, end with identical weights that match a single-process
    MirroredStrategy run over 2 logical CPU devices with the same global batch; the distributed
    val_accuracy equals a single-device evaluation (360 images, global batch 16: the last batch
    is partial, nothing dropped or counted twice). (One killed-and-restarted multi-worker run
    instead of an uninterrupted one and a killed one: a resume that replayed or skipped a step
    would move the weights by far more than the 1e-4 all-reduce-order tolerance.)"""
    # 4 steps per epoch, a checkpoint after each (a kill lands inside an epoch, as with the
    # resume tests' 8 and 2, at half their steps); the whole validation split.
    args = [*DIGITS16, "--steps-per-epoch", "4", "--checkpoint-every", "1", "--quiet"]
    args += ["--epochs", "2", "--seed", "3"]
    mirrored = str(tmp_path / "mirrored")
    cmd, env = _cli(
        "train", *args, "--strategy", "mirrored", "--cpu-devices", "2", "--out", mirrored
    )
    result = prefork.run(cmd, env=env, timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.load(open(os.path.join(mirrored, "summary.json")))
    assert summary["replicas"] == 2 and summary["strategy"] == "mirrored"
    h_mirrored = json.load(open(os.path.join(mirrored, "history.json")))
    assert h_mirrored[-1]["val_accuracy"] == _single_device_val_accuracy(mirrored)

    # Kill worker 1 mid-epoch; the chief cannot go on alone: stop it too, restart both.
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    multi = str(tmp_path / "multi")
    procs = _worker_procs(args, multi, workers)
    try:
        killed_at = _wait_for_step_checkpoint(procs[0], multi, steps_per_epoch=4)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(timeout=60)
        time.sleep(1)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=60)
    finally:
        for p in procs:
            p.kill()
    assert not os.path.exists(os.path.join(multi, "model.keras")), "killed too late to test resume"
    _finish(_worker_procs(args, multi, workers))

    chief = json.load(open(os.path.join(multi, "summary.json")))
    other = json.load(open(os.path.join(multi, "worker_1.summary.json")))
    assert chief["replicas"] == 2 and chief["strategy"] == "multi-worker"
    assert chief["weights_sha256"] == other["weights_sha256"]
    assert not any(name.startswith(".worker_") for name in os.listdir(multi))
    h_multi = json.load(open(os.path.join(multi, "history.json")))
    assert [row["epoch"] for row in h_multi] == [1, 2]
    # Same global batches, same per-replica BN batches: equal up to all-reduce order.
    assert _max_diff(_final_weights(multi), _final_weights(mirrored)) <= 1e-4
    if killed_at < 4:  # killed in epoch 1: epoch 2 ran whole after the restart
        assert h_multi[-1]["loss"] == pytest.approx(h_mirrored[-1]["loss"], rel=1e-4)
    assert h_multi[-1]["val_accuracy"] == _single_device_val_accuracy(multi)


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
        (["--lr", "inf"], ["--lr", "'inf'"]),
        (["--lr", "nan"], ["--lr", "'nan'"]),
        (["--momentum", "nan"], ["--momentum", "'nan'"]),
        (["--weight-decay=-inf"], ["--weight-decay", "'-inf'"]),
        (["--label-smoothing", "inf"], ["--label-smoothing", "'inf'"]),
        (["--checkpoint-every", "0"], ["--checkpoint-every", "'0'"]),
        (["--validation-steps", "0"], ["--validation-steps", "'0'"]),
    ],
)
def test_cli_train_user_errors(capsys, args, needles):
    assert_usage_error(run_main(capsys, "train", "--epochs", "1", *args), *needles)


@pytest.mark.integration
def test_cli_error_in_a_real_process_has_no_traceback():
    assert_usage_error(run_cli("train", "--model", "nope", timeout=300), "model='nope'")


@pytest.mark.slow
def test_resume_refuses_a_different_configuration(tmp_path):
    out = str(tmp_path / "run")
    train(_tiny(out, steps_per_epoch=1), verbose=0)
    with pytest.raises(ValueError, match="different settings.*batch_size"):
        train(_tiny(out, steps_per_epoch=1, batch_size=32), verbose=0)


def _tiny(out, **overrides):
    return TrainConfig(
        **{**TINY_RUN, "steps_per_epoch": 4, "epochs": 1, "out": str(out), **overrides}
    )


@pytest.mark.slow
def test_validation_steps_evaluates_the_first_global_batches(tmp_path):
    """``validation_steps=2`` at global batch 16: the history's val_accuracy and val_loss are
    NumPy's over the split's first 32 images on the saved model, not over all 360."""
    from keras_se import data

    out = tmp_path / "run"
    train(_tiny(out, steps_per_epoch=2, validation_steps=2), verbose=0)
    row = json.load(open(out / "history.json"))[-1]
    info, sources = data.describe_dataset("digits", image_size=16)
    images, labels = zip(
        *data.make_dataset(info, sources["validation"], training=False, batch_size=360)
    )
    images, labels = images[0].numpy(), labels[0].numpy()
    probs = keras.models.load_model(out / "model.keras").predict(images, verbose=0)
    # Keras's crossentropy clips the probabilities to [eps, 1 - eps]
    per_image = -np.log(np.clip(probs[np.arange(360), labels], 1e-7, 1 - 1e-7))
    correct = np.argmax(probs, -1) == labels
    assert row["val_accuracy"] == np.sum(correct[:32]) / 32
    assert row["val_loss"] == pytest.approx(np.mean(per_image[:32]), rel=1e-4)
    assert abs(np.mean(per_image) - np.mean(per_image[:32])) > 1e-3  # the cap is visible


@pytest.mark.slow
def test_batchnorm_state_is_found_by_layer_type():
    """SE-ResNet-50 has the 53 BatchNorms of ResNet-50, nested models searched too."""
    from keras_se import models

    model = models.SEResNet50(input_shape=(32, 32, 3), classes=3)
    layers = batchnorm_layers(model)
    assert len(layers) == 1 + 3 * (3 + 4 + 6 + 3) + 4  # stem + 3 per unit + 4 projections
    nested = keras.Sequential([keras.Input((32, 32, 3)), model])
    assert len(batchnorm_layers(nested)) == 53


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted_run")  # shares the CLI's uninterrupted reference run
def test_sigterm_in_process_saves_at_a_step_and_resumes_exactly(tmp_path, uninterrupted_run):
    """SIGTERM (sent to this process during epoch 1, step 3) stops at the next step boundary with
    a checkpoint; the rerun continues mid-epoch and ends with the uninterrupted run's weights
    (`INTERRUPTED` run by the CLI, whose saved settings this run takes)."""

    class SignalledTrainer(Trainer):
        def _build_steps(self):
            super()._build_steps()
            original, calls = self.train_step, []

            def step(batch, stop):
                calls.append(1)
                if len(calls) == 3:
                    os.kill(os.getpid(), signal.SIGTERM)
                return original(batch, stop)

            self.train_step = step

    out = tmp_path / "stopped"
    config = TrainConfig(**dict(RunDir(uninterrupted_run).saved_train_config(), out=str(out)))
    assert (config.steps_per_epoch, config.epochs, config.seed) == (8, 2, 7)
    with pytest.raises(Preempted, match="epoch 1, step [34]"):
        SignalledTrainer(config, verbose=0).run()
    assert not RunDir(out).has_model() and RunDir(out).read_history() == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was removed
    train(config, verbose=0)
    assert [row["epoch"] for row in RunDir(out).read_history()] == [1, 2]
    assert _max_diff(_final_weights(str(out)), _final_weights(uninterrupted_run)) <= 1e-5


@pytest.mark.slow
def test_divergence_stops_within_one_step_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "nan")
    result = run_main(
        capsys,
        "train",
        *TINY,
        "--epochs",
        "1",
        "--lr",
        "1e30",
        "--checkpoint-every",
        "1",
        "--out",
        out,
    )
    assert_usage_error(result, "not finite", "epoch 1, step 2", "ckpt-1")
    assert _latest_step(out) == 1 and os.path.exists(
        os.path.join(out, "checkpoints", "ckpt-1.index")
    )
    assert RunDir(out).read_history() == [] and not RunDir(out).has_model()


@pytest.mark.parametrize(
    "value, needle",
    [
        ("{not json", "not valid JSON"),
        ('["worker"]', "must be a JSON object"),
        ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}', '"task"'),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
            "not in the cluster",
        ),
    ],
    ids=["bad-json", "list", "no-task", "index"],
)
def test_malformed_tf_config_is_one_line(capsys, monkeypatch, tmp_path, value, needle):
    monkeypatch.setenv("TF_CONFIG", value)
    out = tmp_path / "run"
    assert_usage_error(run_main(capsys, "train", *TINY, "--out", str(out)), "TF_CONFIG", needle)
    assert not out.exists()  # failed before the first epoch: no empty --out left behind


def test_a_dataset_with_one_class_is_refused(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        folder = tmp_path / "data" / split / "only"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), i * 40, "uint8")).save(folder / f"{i}.png")
    result = run_main(
        capsys, "train", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "run")
    )
    assert_usage_error(result, "at least 2 classes", "dataset=")


@pytest.mark.slow
def test_epochs_below_the_epochs_done_are_refused_without_touching_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    train(_tiny(out, steps_per_epoch=1, epochs=2), verbose=0)
    before = (out / "config.json").read_bytes()
    result = run_main(
        capsys, "train", *CAPPED, "--steps-per-epoch", "1", "--epochs", "1", "--out", str(out)
    )
    assert_usage_error(result, "epochs=1", "2 epochs")
    assert (out / "config.json").read_bytes() == before


@pytest.mark.slow
def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    out = tmp_path / "run"
    real_save = tf.train.CheckpointManager.save
    calls = []

    def save(self, *args, **kwargs):  # the second save finds the disk full, half-written
        calls.append(1)
        if len(calls) == 2:
            os.makedirs(os.path.join(self.directory, "ckpt-4_temp"), exist_ok=True)
            raise OSError(28, "No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    args = [
        *CAPPED,
        "--steps-per-epoch",
        "4",
        "--checkpoint-every",
        "2",
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    assert_usage_error(
        run_main(capsys, "train", *args),
        "No space left on device",
        str(out / "checkpoints"),
        "ckpt-2",
    )
    assert _latest_step(str(out)) == 2
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    assert run_main(capsys, "train", *args).returncode == 0  # resumes at step 2, cleans up
    assert not [n for n in os.listdir(out / "checkpoints") if "_temp" in n]


@pytest.mark.slow
def test_format_1_run_directory_resumes_and_newer_versions_are_refused(tmp_path):
    """A run directory of keras_se 0.1 (checkpoints of model, optimizer, epoch; no format version)
    resumes; one claiming a newer format is refused naming the version."""
    import tensorflow as tf

    out = tmp_path / "old"
    config = _tiny(out, steps_per_epoch=2, epochs=2)
    train(_tiny(out, steps_per_epoch=2, epochs=1), verbose=0)
    run = RunDir(out)
    saved = json.load(open(run.config_path))
    trainer = Trainer(config, verbose=0)
    trainer.setup()
    trainer.restore()
    trainer.epoch_var.assign(1)
    for name in os.listdir(run.checkpoint_dir):
        os.remove(os.path.join(run.checkpoint_dir, name))
    old = tf.train.Checkpoint(
        model=trainer.model, optimizer=trainer.optimizer, epoch=trainer.epoch_var
    )
    tf.train.CheckpointManager(old, run.checkpoint_dir, max_to_keep=2).save(checkpoint_number=1)
    del saved["format_version"]
    for key in ("checkpoint_every", "keep_checkpoints"):
        del saved["train"][key]
    json.dump(saved, open(run.config_path, "w"))
    summary = train(config, verbose=0)
    assert summary["epochs"] == 2 and [r["epoch"] for r in run.read_history()] == [1, 2]
    assert json.load(open(run.config_path))["format_version"] == 2

    json.dump({**saved, "format_version": 99}, open(run.config_path, "w"))
    with pytest.raises(ValueError, match="format version 99"):
        train(config, verbose=0)
