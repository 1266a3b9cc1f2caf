"""keras-tuner search of the reduction ratio: the hypermodels under stock tuners, `search`
(results, the tuner contract, resume after a kill, chief + 2 workers)."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from keras_se import tuning
from keras_se.training import TrainConfig
from keras_se_core.errors import MissingExtraError
from tests.conftest import TINY_RUN, assert_usage_error, cli_flags, free_port, run_main

TINY = dict(TINY_RUN, epochs=1, steps_per_epoch=2)
TINY_FLAGS = [*cli_flags(TINY), "--quiet", "--no-export"]


def _trial_files(out):
    root = os.path.join(out, "tuner")
    if not os.path.isdir(root):
        return []
    return [
        os.path.join(root, d, "trial.json")
        for d in sorted(os.listdir(root))
        if d.startswith("trial_")
    ]


def _trials(out):
    return [json.load(open(f)) for f in _trial_files(out) if os.path.exists(f)]


def test_search_space_and_hypermodel():
    space = tuning.SearchSpace(
        ratios=(4, 16), squeeze=("avg", "max"), gate=("sigmoid", "hard_sigmoid")
    )
    assert space.size() == 8
    hypermodel = tuning.SEHyperModel(TrainConfig(**TINY), space)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    hp.values.update(se_ratio=16, squeeze="max", gate="hard_sigmoid")
    model = hypermodel.build(hp)
    se = model.get_layer("conv4_block1_se")
    assert (se.ratio, se.squeeze, se.get_config()["gate"], se.channels, se.bottleneck_units) == (
        16,
        "max",
        "hard_sigmoid",
        256,
        16,
    )
    assert model.output_shape == (None, 10) and model.input_shape == (None, 16, 16, 3)
    for bad, needle in [
        (dict(ratios=(0, 4)), "ratios"),
        (dict(squeeze=("mean",)), "squeeze"),
        (dict(ratios=(4, 4)), "duplicate"),
    ]:
        with pytest.raises(ValueError, match=needle):
            tuning.SearchSpace(**bad)


# --------------------------------------------------------------------------- hypermodels
@pytest.fixture(scope="module")
def digits16():
    """200 scikit-learn digits as 16x16 RGB floats in [0, 1] (nearest 2x upsampling): 160 + 40."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images[:200], np.ones((2, 2)))[..., None] / 16.0
    x = np.repeat(images, 3, axis=-1).astype("float32")
    y = digits.target[:200].astype("int64")
    return (x[:160], y[:160]), (x[160:], y[160:])


def _se_ratios(model):
    """The reduction ratio of every SE layer (whatever its class) of ``model``."""
    return {layer.ratio for layer in model.layers if hasattr(layer, "excitation")}


def test_hyper_se_resnet_searches_under_a_stock_tuner(digits16, tmp_path):
    """`HyperSEResNet` under keras-tuner's own BayesianOptimization (a model-based oracle that
    reads the ratio choices as numbers), on tf.data datasets. (RandomSearch with arrays ran
    here too; it goes through the same Tuner.search path and was dropped for suite time.)"""
    (x, y), (xv, yv) = digits16
    hypermodel = tuning.HyperSEResNet(
        "se_resnet20_cifar", input_shape=(16, 16, 3), classes=10, ratios=(4, 16)
    )
    tuner = keras_tuner.BayesianOptimization(
        hypermodel, objective="val_accuracy", max_trials=2, directory=str(tmp_path), seed=1
    )
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(32)
    tuner.search(train, validation_data=val, epochs=1, verbose=0)

    trials = tuner.oracle.get_best_trials(2)
    assert sorted(t.hyperparameters["se_ratio"] for t in trials) == [4, 16]
    best_hp = tuner.get_best_hyperparameters(1)[0]
    assert best_hp["se_ratio"] == trials[0].hyperparameters["se_ratio"]
    best = tuner.get_best_models(1)[0]
    # The model built for the best ratio, holding the trained weights of the best trial:
    # its accuracy on the validation images is the trial's score.
    assert _se_ratios(best) == {best_hp["se_ratio"]}
    probabilities = best.predict(xv, verbose=0)
    assert probabilities.shape == (40, 10)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(-1) == yv))
    assert accuracy == pytest.approx(trials[0].score, abs=1e-6)
    tuner.results_summary()


def test_hypermodels_build_the_chosen_space_compiled():
    hypermodel = tuning.HyperSEResNet(
        "se_resnet20_cifar",
        input_shape=(16, 16, 3),
        classes=3,
        ratios=(8, 2),
        squeeze=("max",),
        se_mode=("post",),
        learning_rate=(0.05,),
        optimizer="sgd",
    )
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    # Every dimension is declared, the first value is the default.
    assert hp.values == {"se_ratio": 8, "squeeze": "max", "se_mode": "post", "learning_rate": 0.05}
    assert _se_ratios(model) == {8}
    assert {layer.squeeze for layer in model.layers if hasattr(layer, "excitation")} == {"max"}
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert model.output_shape == (None, 3)
    hp.values["se_ratio"] = 2
    assert _se_ratios(hypermodel.build(hp)) == {2}

    for bad, needle in [
        (dict(model="resnet18"), "model='resnet18'"),  # no SE blocks to tune
        (dict(model="se_inception_v3"), "model='se_inception_v3'"),  # the other family
        (dict(ratios=(0, 4)), "ratios"),
    ]:
        with pytest.raises(ValueError, match=needle):
            tuning.HyperSEResNet(**{"input_shape": (16, 16, 3), **bad})
    with pytest.raises(ValueError, match="se_mode"):
        tuning.HyperSEInception(input_shape=(75, 75, 3), se_mode=("post",))
    assert tuning.HyperSEInception.model_names() == ("se_inception_resnet_v2", "se_inception_v3")


def _tiny_residual_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="branch_a")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="branch_b")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="tiny")


def test_hyper_retrofit_trials_start_from_the_base_weights_and_never_share_them(digits16, tmp_path):
    (x, y), (xv, yv) = digits16
    base = _tiny_residual_model()
    before = [w.copy() for w in base.get_weights()]
    hypermodel = tuning.HyperRetrofit(base, "residual", ratios=(2, 4), learning_rate=(0.01,))

    # Each build is a new copy holding the base's weights, sharing no variable with it.
    hp = keras_tuner.HyperParameters()
    first, second = hypermodel.build(hp), hypermodel.build(hp)
    base_ids = {id(v) for v in base.weights}
    assert not base_ids & {id(v) for v in first.weights}
    assert not {id(v) for v in first.weights} & {id(v) for v in second.weights}
    np.testing.assert_array_equal(
        first.get_layer("branch_b").get_weights()[0], base.get_layer("branch_b").get_weights()[0]
    )
    assert _se_ratios(first) == {2}

    tuner = keras_tuner.GridSearch(
        hypermodel, objective="val_accuracy", max_trials=2, directory=str(tmp_path)
    )
    tuner.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=32, verbose=0)
    assert sorted(t.hyperparameters["se_ratio"] for t in tuner.oracle.trials.values()) == [2, 4]
    for kept, now in zip(before, base.get_weights()):  # training a trial left the base alone
        np.testing.assert_array_equal(kept, now)
    best = tuner.get_best_models(1)[0]
    assert _se_ratios(best) == {tuner.get_best_hyperparameters(1)[0]["se_ratio"]}
    assert best.predict(xv[:4], verbose=0).shape == (4, 10)


def test_tuning_without_keras_tuner_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_tuner", None)  # "not installed"
    monkeypatch.delitem(sys.modules, "keras_se.tuning")
    with pytest.raises(MissingExtraError, match=r"pip install 'keras-se\[tune\]'") as info:
        importlib.import_module("keras_se.tuning")
    assert (info.value.extra, info.value.module) == ("tune", "keras_tuner")


# --------------------------------------------------------------------------- search
def test_space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"ratios": [8, 32], "se_mode": ["standard", "post"]}))
    space = tuning.SearchSpace.from_file(str(path))
    assert space.dimensions() == [("se_ratio", (8, 32)), ("se_mode", ("standard", "post"))]
    path.write_text(json.dumps({"ratio": [8]}))
    with pytest.raises(ValueError, match="ratio"):
        tuning.SearchSpace.from_file(str(path))


def test_empty_space_file_is_refused_not_the_default_search(tmp_path, capsys):
    """``{}`` used to run the default five-ratio search silently."""
    path = tmp_path / "space.json"
    for text in ("{}", '{"ratios": null, "squeeze": null}'):
        path.write_text(text)
        with pytest.raises(ValueError, match="Empty search space in the `--space` file") as err:
            tuning.SearchSpace.from_file(str(path))
        assert f"space={str(path)!r}" in str(err.value) and "\n" not in str(err.value)
    out = tmp_path / "tune"
    result = run_main(capsys, "tune", *TINY_FLAGS, "--space", str(path), "--out", str(out))
    assert_usage_error(result, "Empty search space", "--space", str(path))
    assert not out.exists()
    # A partial file keeps the defaults of the keys it leaves out (documented).
    path.write_text(json.dumps({"squeeze": ["avg", "max"]}))
    space = tuning.SearchSpace.from_file(str(path))
    assert space.dimensions() == [
        ("se_ratio", tuning.DEFAULT_RATIOS),
        ("squeeze", ("avg", "max")),
    ]


def test_space_file_and_search_flags_together_are_refused(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"ratios": [8, 32]}))
    with pytest.raises(ValueError) as err:
        tuning.SearchSpace.from_flags(str(path), ratios=(4, 16), se_mode=("post",))
    message = str(err.value)
    assert "--space" in message and "--ratios" in message and "--se-mode" in message
    assert repr(str(path)) in message and "(4, 16)" in message
    # Either one alone is the space it names.
    assert tuning.SearchSpace.from_flags(str(path)).dimensions() == [("se_ratio", (8, 32))]
    assert tuning.SearchSpace.from_flags(ratios=(4, 16), learning_rate=(0.1,)).dimensions() == [
        ("se_ratio", (4, 16)),
        ("learning_rate", (0.1,)),
    ]
    assert tuning.SearchSpace.from_flags().ratios == tuning.DEFAULT_RATIOS == (2, 4, 8, 16, 32)


def test_grid_oracle_derives_next_trial_from_recorded_trials_only(tmp_path):
    """The workaround for keras-team/keras-tuner#1055: a fresh oracle reloaded from disk
    continues the grid (the stock GridSearchOracle raises KeyError here)."""
    space = tuning.SearchSpace(ratios=(2, 4, 8))

    def oracle():
        o = tuning.make_oracle("grid", space)
        o._set_project_dir(str(tmp_path), "p")
        return o

    first = oracle()
    trial = first.create_trial("tuner0")
    assert trial.hyperparameters.values == {"se_ratio": 2}
    first.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    first.end_trial(trial)
    running = first.create_trial("tuner0")  # "killed" while running
    assert running.hyperparameters.values == {"se_ratio": 4}

    resumed = oracle()
    resumed.reload()
    seen = []
    while True:
        trial = resumed.create_trial("tuner0")
        if trial.status == "STOPPED":
            break
        seen.append(trial.hyperparameters.values["se_ratio"])
        resumed.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        resumed.end_trial(trial)
    assert seen == [4, 8]  # the interrupted trial is retried, the completed one is not


def test_search_on_digits_writes_results_figure_and_best_model(tmp_path):
    out = str(tmp_path / "tune")
    results = tuning.search(
        TrainConfig(**TINY), tuning.SearchSpace(ratios=(8, 16)), out=out, verbose=0
    )
    assert sorted(r["hyperparameters"]["se_ratio"] for r in results) == [8, 16]
    assert all(r["status"] == "COMPLETED" for r in results)
    # Parameters follow the closed form: SE-ResNet-18 10-class = ResNet-18 body + sum 2*C^2/r + C/r + C.
    by_ratio = {r["hyperparameters"]["se_ratio"]: r for r in results}

    def se(r):  # two SE blocks per stage
        return sum(2 * (2 * c * c // r + c // r + c) for c in (64, 128, 256, 512))

    assert by_ratio[8]["params"] - by_ratio[16]["params"] == se(8) - se(16)
    assert all(r["macs"] > 0 and r["time_per_step_s"] > 0 for r in results)
    saved = json.load(open(os.path.join(out, "results.json")))
    assert [r["trial_id"] for r in saved] == [r["trial_id"] for r in results]
    header = open(os.path.join(out, "results.csv")).readline().strip().split(",")
    for column in ("se_ratio", "best_val_accuracy", "params", "macs", "time_per_step_s", "status"):
        assert column in header
    for ext in ("png", "svg"):
        assert os.path.getsize(os.path.join(out, f"ratio_tradeoff.{ext}")) > 1000
        assert os.path.getsize(os.path.join(out, f"specificity_by_ratio.{ext}")) > 1000
    # What each ratio learned: the last epoch's analysis of the trial's own run, per SE block.
    for r in results:
        logged = json.load(open(os.path.join(r["run_dir"], "excitations", "epoch_1.json")))
        assert r["blocks"] == [f"SE_{b['stage']}_{b['index']}" for b in logged["blocks"]]
        assert len(r["blocks"]) == 8 and r["specificity"] == [
            b["specificity"] for b in logged["blocks"]
        ]
        assert r["mean_gate"] == pytest.approx(
            [np.mean(b["mean"]) for b in logged["blocks"]], abs=1e-6
        )
        assert all(0.0 < g < 1.0 for g in r["mean_gate"])
    assert "specificity" in header and "mean_gate" in header
    assert os.path.exists(os.path.join(out, "best_model.keras"))
    assert os.path.exists(os.path.join(out, "serving", "best", "1", "saved_model.pb"))
    assert os.listdir(os.path.join(out, "tuner", "hparams"))

    # keras-tuner's contract on a reopened search directory: the best trial's trained model
    # (the one its run saved, compared with the file read by Keras directly) and its ratio.
    # Trials that tie on the objective are all "best" (keras-tuner picks one in its own order).
    tuner = tuning.load_tuner(out)
    best_ratio = tuner.get_best_hyperparameters(1)[0]["se_ratio"]
    chosen = [r for r in results if r["hyperparameters"]["se_ratio"] == best_ratio]
    assert len(chosen) == 1 and chosen[0]["best_val_accuracy"] == results[0]["best_val_accuracy"]
    best = tuner.get_best_models(1)[0]
    assert _se_ratios(best) == {best_ratio}
    reference = keras.models.load_model(os.path.join(chosen[0]["run_dir"], "model.keras"))
    images = np.random.default_rng(0).normal(size=(3, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(
        best.predict(images, verbose=0), reference.predict(images, verbose=0), atol=1e-6
    )
    tuner.results_summary()
    with pytest.raises(ValueError, match="not a search directory"):
        tuning.load_tuner(str(tmp_path))
    # Rerunning a finished search trains nothing and returns the same table.
    again = tuning.search(
        TrainConfig(**TINY), tuning.SearchSpace(ratios=(8, 16)), out=out, verbose=0
    )
    assert [(r["trial_id"], r["best_val_accuracy"]) for r in again] == [
        (r["trial_id"], r["best_val_accuracy"]) for r in results
    ]


@pytest.mark.integration
def test_killed_grid_search_resumes_without_rerunning_completed_trials(tmp_path):
    out = str(tmp_path / "tune")
    cmd = [
        sys.executable,
        "-m",
        "keras_se.cli",
        "tune",
        *TINY_FLAGS,
        "--ratios",
        "8,16",
        "--out",
        out,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if any(t.get("status") == "COMPLETED" for t in _trials(out)):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    completed = {t["trial_id"]: t for t in _trials(out) if t.get("status") == "COMPLETED"}
    assert len(completed) == 1, "killed too late to test resume"
    stamps = {
        tid: os.path.getmtime(os.path.join(out, "tuner", f"trial_{tid}", "run", "model.keras"))
        for tid in completed
    }

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = [t for t in _trials(out)]
    assert sorted(t["hyperparameters"]["values"]["se_ratio"] for t in trials) == [8, 16]
    assert all(t["status"] == "COMPLETED" for t in trials)
    for tid, stamp in stamps.items():  # completed trials were not retrained
        assert (
            os.path.getmtime(os.path.join(out, "tuner", f"trial_{tid}", "run", "model.keras"))
            == stamp
        )
    assert len(json.load(open(os.path.join(out, "results.json")))) == 2


@pytest.mark.integration
def test_chief_and_two_workers_run_each_trial_once(tmp_path):
    out = str(tmp_path / "tune")
    port = str(free_port())
    base = [
        sys.executable,
        "-m",
        "keras_se.cli",
        "tune",
        *TINY_FLAGS,
        "--ratios",
        "4,8,16",
        "--out",
        out,
        "--oracle-port",
        port,
    ]
    procs = [
        subprocess.Popen(
            base + ["--distributed", "chief"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    ]
    time.sleep(3)
    for index in range(2):
        procs.append(
            subprocess.Popen(
                base + ["--distributed", "worker", "--worker-index", str(index)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    trials = _trials(out)
    assert sorted(t["hyperparameters"]["values"]["se_ratio"] for t in trials) == [4, 8, 16]
    assert all(t["status"] == "COMPLETED" for t in trials)
    results = json.load(open(os.path.join(out, "results.json")))
    assert len(results) == 3 and len({r["run_dir"] for r in results}) == 3
    for r in results:  # each trial trained exactly once: one history row per epoch
        assert len(json.load(open(os.path.join(r["run_dir"], "history.json")))) == 1


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--ratios", "4,x"], ["--ratios", "'4,x'"]),
        (["--ratios", "0,4"], ["--ratios"]),
        (["--oracle", "genetic"], ["--oracle", "'genetic'"]),
        (["--squeeze", "avg,median"], ["--squeeze"]),
        (["--model", "se_resnet"], ["model='se_resnet'"]),
        (["--distributed", "worker"], ["--oracle-port"]),
        (["--space", "/no/such/space.json"], ["/no/such/space.json"]),
    ],
)
def test_cli_tune_user_errors(capsys, args, needles):
    assert_usage_error(
        run_main(capsys, "tune", "--out", "/tmp/keras_se_never_written", *args), *needles
    )
