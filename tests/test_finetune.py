"""Fine-tuning and your own model (keras_se.finetune, keras-se train --weights/--freeze-*/--retrofit,
--model FILE|pkg.mod:fn): counts against keras.applications and closed forms, frozen statistics
against the inference-mode output, resume across the freeze phases, the CLI end to end, bad input."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

from keras_se import SqueezeExcite, finetune, models
from keras_se.models.preprocessing import of as spec_of
from keras_se.rundir import RunDir
from keras_se.speed import BatchNormSqueezeExcite
from keras_se.training import Preempted, TrainConfig, Trainer, train
from tests.conftest import TINY_RUN, assert_usage_error, cli_flags, run_main

TINY_FLAGS = [*cli_flags(steps_per_epoch=2), "--quiet"]

USER_MODULE = '''
import keras
from keras_se import SqueezeExcite


def build(input_shape, classes, se_ratio=4):
    """A user's model: two conv + BN + SqueezeExcite stages."""
    inputs = keras.Input(input_shape)
    x = inputs
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = SqueezeExcite(ratio=se_ratio)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax", name="predictions")(x))


def no_batchnorm(input_shape, classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def raises(input_shape, classes):
    raise RuntimeError("out of coffee")


def not_a_model(input_shape, classes):
    return "a string"
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_models_ft.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_models_ft"
    sys.modules.pop("user_models_ft", None)


def _digit_folder(root, classes=(0, 1, 2), per_class=24):
    """An image folder of real digits (scikit-learn's load_digits), 3 classes by default."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split, part in (("train", slice(0, per_class)), ("val", slice(per_class, 2 * per_class))):
        for label in classes:
            folder = root / split / f"digit{label}"
            folder.mkdir(parents=True)
            for i in np.flatnonzero(digits.target == label)[part]:
                pixels = (digits.images[i] * 255 / 16).astype("uint8")
                Image.fromarray(pixels).convert("RGB").save(folder / f"{i}.png")
    return str(root)


def _trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


# ----------------------------------------------------------------------------- counts
@pytest.mark.slow
def test_freeze_counts_of_se_resnet50_against_keras_applications():
    """--freeze-bn leaves trainable everything but the BatchNorm affine parameters (the same
    BatchNorms as keras.applications.ResNet50, whose gamma/beta are counted there); the head-only
    phase leaves the classifier alone (2048 x 1000 + 1000); unfreezing restores the count."""
    model = models.SEResNet50()
    reference = keras.applications.ResNet50(weights=None)
    reference_bn = [
        layer for layer in reference.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    bn_affine = sum(int(np.prod(layer.gamma.shape)) * 2 for layer in reference_bn)
    all_params, all_vars = _trainable_params(model), len(model.trainable_weights)

    assert finetune.freeze_batchnorm(model) == len(reference_bn) == 53
    assert _trainable_params(model) == all_params - bn_affine
    assert len(model.trainable_weights) == all_vars - 2 * len(reference_bn)
    for layer in finetune.se_layers_of(model):  # the gate after a frozen BatchNorm trains
        assert len(layer.trainable_weights) == len(layer.weights) == 4

    finetune.freeze_backbone(model, trainable=False)
    assert _trainable_params(model) == 2048 * 1000 + 1000
    finetune.freeze_backbone(model, trainable=True)
    assert _trainable_params(model) == all_params  # --freeze-epochs without --freeze-bn
    print(
        f"SE-ResNet-50 trainable parameters: all {all_params:,} ({all_vars} variables); "
        f"--freeze-bn {all_params - bn_affine:,} ({all_vars - 106}); classifier only 2,049,000 (2)"
    )


@pytest.mark.slow  # 10-25 s: an SE-ResNet-50 step / a training run
def test_freeze_bn_in_the_fast_twin_keeps_statistics_and_trains_the_gate():
    """A training step of the trainer's fast twin of an SE-ResNet-50 (`keras_se.speed.accelerate`:
    BN+SE fused tails) under freeze_batchnorm: every moving statistic, gamma and beta stay as
    they were, the SE gates move, and the training-mode output equals the inference-mode
    output (BatchNorm in inference mode)."""
    from keras_se import speed

    model = models.get("se_resnet50", input_shape=(32, 32, 3), classes=3)
    finetune.freeze_batchnorm(model)
    fast = speed.accelerate(model)
    bns = finetune.batchnorm_layers(model)
    frozen = {
        id(v): keras.ops.convert_to_numpy(v).copy()
        for layer in bns
        for v in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta)
    }
    fused = finetune.se_layers_of(model)
    gates = {
        id(w): keras.ops.convert_to_numpy(w).copy() for f in fused for w in f.trainable_weights
    }
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fast(x, training=True)),
        keras.ops.convert_to_numpy(model(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )
    fast.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    fast.train_on_batch(x, np.array([0, 1, 2, 0]))
    for layer in bns:
        for v in (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), frozen[id(v)])
    moved = [
        not np.allclose(keras.ops.convert_to_numpy(w), gates[id(w)])
        for f in fused
        for w in f.trainable_weights
    ]
    assert all(moved), "every SE gate weight trained"


def test_batchnorm_trainable_round_trips_and_older_configs_load():
    layer = BatchNormSqueezeExcite(4, batchnorm_trainable=False)
    assert BatchNormSqueezeExcite.from_config(layer.get_config()).batchnorm_trainable is False
    config = BatchNormSqueezeExcite(4).get_config()
    assert "batchnorm_trainable" not in config  # files of earlier releases are unchanged
    with pytest.raises(ValueError, match="batchnorm_trainable"):
        BatchNormSqueezeExcite(4, batchnorm_trainable="no")


# ----------------------------------------------------------------------------- --model
def test_model_source_kinds(user_module, tmp_path):
    assert finetune.model_source("se_resnet18") == ("registry", "se_resnet18")
    kind, factory = finetune.model_source(f"{user_module}:build")
    assert kind == "factory" and factory.__name__ == "build"
    assert finetune.model_source("keras.applications.ResNet50")[1] is keras.applications.ResNet50
    assert finetune.factory_accepts_se_ratio(factory)
    assert not finetune.factory_accepts_se_ratio(finetune.model_source(f"{user_module}:raises")[1])


@pytest.mark.slow
def test_user_factory_trains_with_excitation_logs_and_tunes(user_module, tmp_path, capsys):
    """keras-se train --model pkg.mod:fn trains a user's model (its SE layers logged), and
    keras-se tune searches its se_ratio through the factory's argument."""
    out = str(tmp_path / "user")
    result = run_main(
        capsys, "train", *TINY_FLAGS, "--model", f"{user_module}:build", "--epochs", "1",
        "--log-excitations", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    assert sum(isinstance(layer, SqueezeExcite) for layer in model.layers) == 2
    assert RunDir(out).excitation_epochs() == [1]
    base = str(tmp_path / "models")  # served as "build" (the factory's name), figures drawn
    result = run_main(capsys, "export", out, "--base", base)
    assert result.returncode == 0 and os.path.isdir(os.path.join(base, "build", "1")), result.stderr
    figures = str(tmp_path / "figures")
    result = run_main(capsys, "visualize", out, "--out", figures, "--max-images", "20")
    assert result.returncode == 0, result.stderr
    assert os.path.isfile(os.path.join(figures, "specificity_by_depth.png"))

    tuned = str(tmp_path / "tune")
    result = run_main(
        capsys, "tune", *TINY_FLAGS, "--model", f"{user_module}:build", "--epochs", "1",
        "--ratios", "2,8", "--no-export", "--out", tuned,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.load(open(os.path.join(tuned, "results.json")))
    assert sorted(r["hyperparameters"]["se_ratio"] for r in rows) == [2, 8]
    for row in rows:  # each trial's model was built with its ratio: 8, 16 channels -> C // r units
        ratio = row["hyperparameters"]["se_ratio"]
        trial = keras.models.load_model(os.path.join(row["run_dir"], "model.keras"))
        ses = [layer for layer in trial.layers if isinstance(layer, SqueezeExcite)]
        assert [se.bottleneck_units for se in ses] == [max(8 // ratio, 1), 16 // ratio]


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A 10-class CIFAR SE-ResNet-20 trained on digits (`TINY_RUN`): the weights fine-tuning
    starts from."""
    out = str(tmp_path_factory.mktemp("base") / "run")
    train(TrainConfig(**TINY_RUN, steps_per_epoch=2, epochs=1, out=out), verbose=0)
    return out


@pytest.mark.slow
def test_finetune_new_head_then_export_and_predict(digits_run, tmp_path, capsys):
    """keras-se train --weights RUN/model.keras on a 3-class folder: the backbone is the run's,
    the classifier is new (one line naming 10 and 3), the weights' preprocessing (digits
    statistics) is the run's and export's; export and predict serve the result."""
    folder = _digit_folder(tmp_path / "folder")
    base = keras.models.load_model(os.path.join(digits_run, "model.keras"))
    config = TrainConfig(
        model=TINY_RUN["model"], dataset=folder, image_size=16, batch_size=16,
        weights=os.path.join(digits_run, "model.keras"), out=str(tmp_path / "setup"),
    )  # fmt: skip
    trainer = Trainer(config, verbose=0)
    trainer.setup()
    for layer in trainer.model.layers:
        if layer.weights and layer.name != "predictions":
            for mine, theirs in zip(layer.weights, base.get_layer(layer.name).weights):
                np.testing.assert_array_equal(
                    keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs)
                )
    assert trainer.model.get_layer("predictions").kernel.shape == (64, 3)
    assert trainer.info.preprocessing.mean == spec_of(RunDir(digits_run).load_model()).mean
    assert config.peak_learning_rate() == pytest.approx(0.6 * 16 / 1024 / 10)

    out = str(tmp_path / "tuned")
    result = run_main(
        capsys, "train", "--dataset", folder, "--weights", os.path.join(digits_run, "model.keras"),
        "--freeze-epochs", "1", "--epochs", "2", *TINY_FLAGS[:-1], "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    assert "weights have 10 classes, model has 3" in text
    assert "classifier only" in text and "backbone unfrozen" in text
    tuned = RunDir(out).load_model()
    assert spec_of(tuned).mean == spec_of(RunDir(digits_run).load_model()).mean

    base_dir = str(tmp_path / "models")
    result = run_main(capsys, "export", out, "--base", base_dir, "--name", "ft")
    assert result.returncode == 0, result.stderr
    image = os.path.join(
        folder, "val", "digit2", sorted(os.listdir(os.path.join(folder, "val", "digit2")))[0]
    )
    result = run_main(capsys, "predict", image, "--model", os.path.join(base_dir, "ft"), "--json")
    assert result.returncode == 0, result.stderr
    top = json.loads(result.stdout)["predictions"][0]["top_k"][0]
    from keras_se import data

    pixels = np.asarray(Image.open(image).convert("RGB"))[None]
    x = data.normalize(
        data.resize_and_crop(pixels, spec_of(tuned), (16, 16)), spec_of(tuned)
    )
    expected = tuned.predict(keras.ops.convert_to_numpy(x), verbose=0)[0]
    assert top["class_id"] == int(np.argmax(expected))
    assert top["class_name"] == f"digit{top['class_id']}"
    assert top["probability"] == pytest.approx(float(expected.max()), abs=1e-3)


@pytest.mark.slow  # 10-25 s: an SE-ResNet-50 step / a training run
def test_retrofit_of_a_pretrained_plain_network_starts_from_its_function(tmp_path):
    """--weights + --retrofit: the plain network's weights load, SE blocks are inserted with
    identity gates, so the model computes (within the gates' 1e-4) what the plain one did."""
    plain_out = str(tmp_path / "plain")
    train(
        TrainConfig(**dict(TINY_RUN, model="resnet18"), steps_per_epoch=1, epochs=1, out=plain_out),
        verbose=0,
    )
    plain = RunDir(plain_out).load_model()
    config = TrainConfig(
        **dict(TINY_RUN, model="resnet18"), weights=os.path.join(plain_out, "model.keras"),
        retrofit=True, out=str(tmp_path / "se"),
    )  # fmt: skip
    trainer = Trainer(config, verbose=0)
    trainer.setup()
    ses = [layer for layer in trainer.model.layers if isinstance(layer, SqueezeExcite)]
    assert len(ses) == 8  # one per basic block of ResNet-18
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        trainer.model.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=2e-3, atol=2e-4
    )


@pytest.mark.slow
def test_sigterm_in_the_unfrozen_phase_resumes_to_the_uninterrupted_weights(digits_run, tmp_path):
    """--weights --freeze-epochs 1 --freeze-bn, stopped by SIGTERM in epoch 2 (after the
    unfreeze) and resumed: every epoch once, final weights equal the uninterrupted run's."""

    class SignalledTrainer(Trainer):
        calls = 0

        def _build_steps(self):
            super()._build_steps()
            original = self.train_step

            def step(batch, stop):
                SignalledTrainer.calls += 1
                if SignalledTrainer.calls == 4:  # epoch 2, step 1: stops after step 2 (of 3)
                    os.kill(os.getpid(), signal.SIGTERM)
                return original(batch, stop)

            self.train_step = step

    settings = dict(
        TINY_RUN, steps_per_epoch=3, epochs=2, checkpoint_every=1, freeze_epochs=1,
        freeze_bn=True, weights=os.path.join(digits_run, "model.keras"), seed=4,
    )  # fmt: skip
    reference = str(tmp_path / "reference")
    train(TrainConfig(**settings, out=reference), verbose=0)
    out = str(tmp_path / "stopped")
    with pytest.raises(Preempted, match="epoch 2"):
        SignalledTrainer(TrainConfig(**settings, out=out), verbose=0).run()
    train(TrainConfig(**settings, out=out), verbose=0)
    assert [row["epoch"] for row in RunDir(out).read_history()] == [1, 2]
    ours, theirs = RunDir(out).load_model(), RunDir(reference).load_model()
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5
        )
    base = RunDir(digits_run).load_model()
    for layer in finetune.batchnorm_layers(ours):  # --freeze-bn: the base run's statistics
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(layer.moving_mean),
            keras.ops.convert_to_numpy(base.get_layer(layer.name).moving_mean),
        )


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--weights", "/no/such/weights.keras"], ["weights", "does not exist"]),
        (["--weights", "{garbage}"], ["weights", "not recognised"]),
        (["--weights", "{other_arch}"], ["first mismatched layer"]),
        (["--freeze-epochs", "2", "--epochs", "2"], ["freeze_epochs=2", "epochs"]),
        (["--model", "{mod}:no_batchnorm", "--freeze-bn"], ["freeze_bn", "has none"]),
        (["--model", "{mod}:no_batchnorm", "--log-excitations"], ["log_excitations", "--retrofit"]),
        (["--retrofit"], ["retrofit", "already has"]),
        (["--model", "{mod}:raises"], ["raised RuntimeError", "out of coffee"]),
        (["--model", "{mod}:not_a_model"], ["returned str", "not a keras.Model"]),
        (["--model", "{mod}:missing"], ["not a callable"]),
        (["--model", "no_such_module_xyz:build"], ["cannot be imported"]),
        (["--model", "/no/such/model.keras"], ["model", "does not exist"]),
        (["--model", "{garbage_keras}"], ["not a Keras model file"]),
    ],
    ids=[
        "missing-weights", "not-weights", "other-architecture", "freeze-epochs", "freeze-bn-no-bn",
        "excitations-no-se", "retrofit-se", "factory-raises", "factory-non-model",
        "factory-missing", "module-missing", "model-file-missing", "model-file-not-keras",
    ],
)  # fmt: skip
def test_bad_fine_tuning_input_is_one_line_and_writes_nothing(
    flags, needles, user_module, tmp_path, capsys, request
):
    garbage = tmp_path / "weights.txt"
    garbage.write_text("not weights")
    garbage_keras = tmp_path / "model.keras"
    garbage_keras.write_text("not a zip")
    values = dict(mod=user_module, garbage=str(garbage), garbage_keras=str(garbage_keras))
    if "{other_arch}" in flags:
        other = models.get("resnet20_cifar", input_shape=(16, 16, 3), classes=10)
        values["other_arch"] = str(tmp_path / "resnet20_cifar.weights.h5")
        other.save_weights(values["other_arch"])
    flags = [f.format(**values) for f in flags]
    out = tmp_path / "out"
    result = run_main(capsys, "train", *TINY_FLAGS, "--epochs", "1", *flags, "--out", str(out))
    assert_usage_error(result, *needles)
    assert not out.exists()
