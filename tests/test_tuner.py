"""keras_se.tuning.tuner: the trials of ``keras-se tune`` (the trial's TrainConfig, the
resumable grid, the oracles), `search` end to end, resume after a kill, chief + 2 workers."""

from __future__ import annotations

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

from keras_se import tuning
from keras_se.training import TrainConfig
from tests import prefork
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


def _se_ratios(model):
    """The reduction ratio of every SE layer (whatever its class) of ``model``."""
    return {layer.ratio for layer in model.layers if hasattr(layer, "excitation")}


def test_se_hypermodel_builds_the_trial_and_maps_it_onto_the_train_config():
    space = tuning.SearchSpace(
        ratios=(4, 16), squeeze=("avg", "max"), gate=("sigmoid", "hard_sigmoid")
    )
    base = TrainConfig(**TINY, model_kwargs={"se_kwargs": {"use_bias": False}})
    hypermodel = tuning.SEHyperModel(base, space)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare_hyperparameters(hp)
    hp.values.update(se_ratio=16, squeeze="max", gate="hard_sigmoid")
    model = hypermodel.build(hp)
    se = model.get_layer("conv4_block1_se")
    assert (se.ratio, se.squeeze, se.get_config()["gate"], se.channels, se.bottleneck_units) == (
        16,
        "max",
        "hard_sigmoid",
        64,  # CIFAR ResNet-20's last stage (TINY_RUN)
        64 // 16,
    )
    assert se.get_config()["use_bias"] is False
    assert model.output_shape == (None, 10) and model.input_shape == (None, 16, 16, 3)

    # The trial's TrainConfig: its ratio, rate and SE arguments over the base recipe's;
    # Hyperband's budget as the epochs; the last epoch's excitations analysed.
    hp.values.update({"learning_rate": 0.5, "tuner/epochs": 3})
    config = hypermodel.trial_config(hp, out="trial_run")
    assert (config.out, config.se_ratio, config.learning_rate, config.epochs) == (
        "trial_run", 16, 0.5, 3
    )  # fmt: skip
    assert config.log_excitations == 3
    assert config.model_kwargs == {
        "se_kwargs": {"use_bias": False, "squeeze": "max", "gate": "hard_sigmoid"}
    }
    assert base.model_kwargs == {"se_kwargs": {"use_bias": False}}  # the base is not changed


def test_search_refuses_models_it_cannot_rebuild_per_ratio_before_writing(tmp_path):
    saved = tmp_path / "model.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(saved)
    out = tmp_path / "tune"
    ratios = tuning.SearchSpace(ratios=(4, 16))
    for model, space, needle in [
        ("se_resnet5O", ratios, "Did you mean: se_resnet50"),  # the registry's own check
        (str(saved), ratios, "built anew for each ratio"),
        ("keras.applications.ResNet50", ratios, "must take an `se_ratio` argument"),
        # a factory taking se_ratio, but asked to search the SE layer's arguments
        ("keras_se.models:SEResNet18", tuning.SearchSpace(ratios=(4,), squeeze=("max",)),
         r"searches se_ratio \(and learning_rate\) only, not squeeze"),
    ]:  # fmt: skip
        with pytest.raises(ValueError, match=needle) as err:
            tuning.search(TrainConfig(**dict(TINY, model=model)), space, out=str(out), verbose=0)
        assert f"model={model!r}" in str(err.value)
    assert not out.exists()


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


@pytest.mark.slow  # measured at 2 s or more (trains two trials)
def test_search_on_digits_writes_results_figure_and_best_model(tmp_path):
    out = str(tmp_path / "tune")
    results = tuning.search(
        TrainConfig(**TINY), tuning.SearchSpace(ratios=(8, 16)), out=out, verbose=0
    )
    assert sorted(r["hyperparameters"]["se_ratio"] for r in results) == [8, 16]
    assert all(r["status"] == "COMPLETED" for r in results)
    # Parameters follow the closed form: CIFAR SE-ResNet-20 = ResNet-20 body + per SE block
    # 2*C*(C/r) + C/r + C.
    by_ratio = {r["hyperparameters"]["se_ratio"]: r for r in results}

    def se(r):  # three SE blocks per stage
        return sum(3 * (2 * c * (c // r) + c // r + c) for c in (16, 32, 64))

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
        assert len(r["blocks"]) == 9 and r["specificity"] == [
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
    proc = prefork.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    result = prefork.run(cmd, capture_output=True, text=True, timeout=900)
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
        "--ratios",  # two trials for two workers (a third only lengthened the test by one)
        "8,16",
        "--out",
        out,
        "--oracle-port",
        port,
    ]
    procs = [
        prefork.Popen(
            base + ["--distributed", "chief"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    ]
    time.sleep(3)
    for index in range(2):
        procs.append(
            prefork.Popen(
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
    assert sorted(t["hyperparameters"]["values"]["se_ratio"] for t in trials) == [8, 16]
    assert all(t["status"] == "COMPLETED" for t in trials)
    results = json.load(open(os.path.join(out, "results.json")))
    assert len(results) == 2 and len({r["run_dir"] for r in results}) == 2
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
