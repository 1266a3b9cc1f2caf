"""keras_se.excitation_log: the excitation analysis during training, in TensorBoard and JSON.

Event files are read back with TensorBoard's own reader; a running TensorBoard serves them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from keras_se import SqueezeExcite, data
from keras_se.excitation_log import (
    ExcitationLog,
    ExcitationRecorder,
    fixed_sample,
    sample_classes,
)
from keras_se.rundir import RunDir
from keras_se.training import TrainConfig, Trainer, train
from tests import prefork
from tests.conftest import TINY_RUN, free_port


def _events(logdir):
    acc = EventAccumulator(
        logdir, size_guidance={"histograms": 0, "scalars": 0, "images": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def _steps(acc, tag):
    """Steps of a TF2 summary tag (tf.summary writes tensors; TensorBoard reads them as such)."""
    return [event.step for event in acc.Tensors(tag)]


def test_sample_follows_the_protocol():
    assert sample_classes(5) == [0, 1, 2, 3, 4]
    assert sample_classes(1000) == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    info, sources = data.describe_dataset("digits", image_size=8)
    x, y = fixed_sample(info, sources["validation"], per_class=5)
    assert x.shape == (50, 8, 8, 3) and np.bincount(y).tolist() == [5] * 10
    x2, y2 = fixed_sample(info, sources["validation"], per_class=5)
    np.testing.assert_array_equal(x, x2)  # fixed: the same images every epoch


@pytest.mark.slow
def test_known_gates_give_known_statistics_in_the_logs(tmp_path):
    """One SE layer whose gate is sigmoid(W2·relu(z)) with z the class's constant pixel value:
    gates are constant within a class and differ between classes, so every channel's η² is 1,
    and the logged mean gate equals the NumPy formula."""
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, SqueezeExcite(units=2, name="se")(inputs))
    se = model.get_layer("se")
    se.reduce_kernel.assign(np.eye(2, dtype="float32"))  # W1 = I, W2 below, biases 0
    se.expand_kernel.assign(np.array([[1.0, -2.0], [0.5, 3.0]], "float32"))
    values = np.array([0.2, 0.9, 1.7])  # class c: every pixel = values[c]
    labels = np.repeat(np.arange(3), 4)
    images = np.broadcast_to(values[labels][:, None, None, None], (12, 4, 4, 2)).astype("float32")
    info = data.DatasetInfo("toy", 3, ["a", "b", "c"], (4, 4, 2), 12, 12, data.Preprocessing())
    run = RunDir(tmp_path)
    log = ExcitationLog(model, run, info, None, every=1, epochs=1, sample=(images, labels))
    writer = tf.summary.create_file_writer(run.logs_dir)
    result = log.log(1, writer)
    z = np.stack([values, values], axis=1)  # (3 classes, 2 channels)
    gates = 1 / (1 + np.exp(-(np.maximum(z, 0) @ np.array([[1.0, -2.0], [0.5, 3.0]]))))
    np.testing.assert_allclose(result.blocks[0].class_means, gates, atol=1e-6)
    assert result.blocks[0].specificity == pytest.approx(1.0)
    acc = _events(run.logs_dir)
    mean = tf.make_ndarray(acc.Tensors("excitation_mean/se")[0].tensor_proto)
    assert float(mean) == pytest.approx(gates[labels].mean(), abs=1e-6)
    spec = tf.make_ndarray(acc.Tensors("specificity/se")[0].tensor_proto)
    assert float(spec) == pytest.approx(1.0)
    saved = json.load(open(run.excitations_path(1)))
    assert saved["epoch"] == 1 and saved["blocks"][0]["name"] == "se"


def test_analysis_runs_whole_batches_and_gives_every_images_gate(monkeypatch):
    """250 images: three probe calls of 100 (the last one's 50 padded, so that the probe is
    traced for one batch shape), and one gate row per image, the NumPy formula's."""
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, SqueezeExcite(units=2, name="se")(inputs))
    se = model.get_layer("se")
    w1, w2 = np.array([[0.7, -0.4], [0.2, 1.1]]), np.array([[1.0, -2.0], [0.5, 3.0]])
    se.reduce_kernel.assign(w1.astype("float32"))
    se.expand_kernel.assign(w2.astype("float32"))
    images = np.random.default_rng(0).normal(size=(250, 4, 4, 2)).astype("float32")
    labels = np.arange(250) % 5
    recorder = ExcitationRecorder(model, images, labels, class_names=list("abcde"))
    sizes = []
    predict = recorder.probe.predict_on_batch
    monkeypatch.setattr(
        recorder.probe, "predict_on_batch", lambda x: sizes.append(len(x)) or predict(x)
    )
    result, gates = recorder.analyse()
    assert sizes == [100, 100, 100]
    z = images.astype(np.float64).mean(axis=(1, 2))  # squeeze: (250, 2)
    expected = 1 / (1 + np.exp(-(np.maximum(z @ w1, 0) @ w2)))  # biases are 0
    np.testing.assert_allclose(gates[0], expected, atol=1e-6)
    assert result.blocks[0].class_means.shape == (5, 2)


def _tiny(out, **overrides):
    # (the logged excitations read the validation split on their own, whatever validation_steps)
    values = dict(TINY_RUN, steps_per_epoch=2, epochs=3, out=str(out), log_excitations=2)
    return TrainConfig(**{**values, **overrides})


@pytest.mark.slow
def test_training_logs_every_nth_epoch_once_across_a_kill(tmp_path):
    """--log-excitations 2 over 3 epochs logs epochs 2 and 3 (the last); a run killed after epoch
    2's checkpoint but before its log logs epoch 2 on restore, and nothing twice."""

    class KilledBeforeTheLog(Trainer):
        def setup(self):
            super().setup()
            original = self.excitations.log

            def log(epoch, writer):
                if epoch == 2:
                    raise KeyboardInterrupt("killed between the checkpoint and the log")
                return original(epoch, writer)

            self.excitations.log = log

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        KilledBeforeTheLog(_tiny(out), verbose=0).run()
    run = RunDir(out)
    assert run.excitation_epochs() == [] and [r["epoch"] for r in run.read_history()] == [1, 2]
    train(_tiny(out), verbose=0)
    assert run.excitation_epochs() == [2, 3]
    acc = _events(run.logs_dir)
    blocks = [b["name"] for b in json.load(open(run.excitations_path(3)))["blocks"]]
    assert len(blocks) == 9  # TINY_RUN's CIFAR SE-ResNet-20: 3 stages of 3 blocks
    for name in blocks:
        for prefix in ("excitation/", "excitation_mean/", "specificity/"):
            assert _steps(acc, prefix + name) == [2, 3], prefix + name
    for figure in ("figures/specificity_by_depth", "figures/excitation_by_depth"):
        assert _steps(acc, figure) == [2, 3]
    assert _steps(acc, "val_accuracy") == [1, 2, 3]


@pytest.mark.integration
def test_tensorboard_serves_the_logged_scalars(tmp_path):
    out = tmp_path / "run"
    train(_tiny(out, epochs=1, log_excitations=1), verbose=0)
    port = free_port()
    server = prefork.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(out / "logs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = (
            f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=.&tag="
            "specificity%2Fconv2_block1_se"
        )
        deadline, body = time.time() + 120, None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "TensorBoard did not answer within 120 s"
        assert [step for _, step, _ in body] == [1] and 0.0 <= body[0][2] <= 1.0
    finally:
        server.terminate()
        server.wait(timeout=30)
