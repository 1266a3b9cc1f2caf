"""keras_se.tuning.hypermodels: the search space, the one trial -> builder mapping, and the
hypermodels under keras-tuner's own tuners (any data, no keras_se training path)."""

from __future__ import annotations

import json

import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from keras_se import models
from keras_se.tuning import hypermodels
from keras_se.tuning.hypermodels import (
    HyperRetrofit,
    HyperSEInception,
    HyperSEResNet,
    SearchSpace,
    trial_model_kwargs,
)
from tests.conftest import TINY_RUN, assert_usage_error, cli_flags, run_main

TINY_FLAGS = [*cli_flags(dict(TINY_RUN, epochs=1, steps_per_epoch=2)), "--quiet", "--no-export"]


def _se_ratios(model):
    """The reduction ratio of every SE layer (whatever its class) of ``model``."""
    return {layer.ratio for layer in model.layers if hasattr(layer, "excitation")}


@pytest.fixture(scope="module")
def digits16():
    """200 scikit-learn digits as 16x16 RGB floats in [0, 1] (nearest 2x upsampling): 160 + 40."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images[:200], np.ones((2, 2)))[..., None] / 16.0
    x = np.repeat(images, 3, axis=-1).astype("float32")
    y = digits.target[:200].astype("int64")
    return (x[:160], y[:160]), (x[160:], y[160:])


# --------------------------------------------------------------------------- the space
def test_search_space_size_and_bad_values():
    space = SearchSpace(ratios=(4, 16), squeeze=("avg", "max"), gate=("sigmoid", "hard_sigmoid"))
    assert space.size() == 2 * 2 * 2
    assert [name for name, _ in space.dimensions()] == ["se_ratio", "squeeze", "gate"]
    for bad, needle in [
        (dict(ratios=(0, 4)), "ratios"),
        (dict(squeeze=("mean",)), "squeeze"),
        (dict(ratios=(4, 4)), "duplicate"),
    ]:
        with pytest.raises(ValueError, match=needle):
            SearchSpace(**bad)


def test_space_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"ratios": [8, 32], "se_mode": ["standard", "post"]}))
    space = SearchSpace.from_file(str(path))
    assert space.dimensions() == [("se_ratio", (8, 32)), ("se_mode", ("standard", "post"))]
    path.write_text(json.dumps({"ratio": [8]}))
    with pytest.raises(ValueError, match="ratio"):
        SearchSpace.from_file(str(path))


def test_empty_space_file_is_refused_not_the_default_search(tmp_path, capsys):
    """``{}`` used to run the default five-ratio search silently."""
    path = tmp_path / "space.json"
    for text in ("{}", '{"ratios": null, "squeeze": null}'):
        path.write_text(text)
        with pytest.raises(ValueError, match="Empty search space in the `--space` file") as err:
            SearchSpace.from_file(str(path))
        assert f"space={str(path)!r}" in str(err.value) and "\n" not in str(err.value)
    out = tmp_path / "tune"
    result = run_main(capsys, "tune", *TINY_FLAGS, "--space", str(path), "--out", str(out))
    assert_usage_error(result, "Empty search space", "--space", str(path))
    assert not out.exists()
    # A partial file keeps the defaults of the keys it leaves out (documented).
    path.write_text(json.dumps({"squeeze": ["avg", "max"]}))
    space = SearchSpace.from_file(str(path))
    assert space.dimensions() == [
        ("se_ratio", hypermodels.DEFAULT_RATIOS),
        ("squeeze", ("avg", "max")),
    ]


def test_space_file_and_search_flags_together_are_refused(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"ratios": [8, 32]}))
    with pytest.raises(ValueError) as err:
        SearchSpace.from_flags(str(path), ratios=(4, 16), se_mode=("post",))
    message = str(err.value)
    assert "--space" in message and "--ratios" in message and "--se-mode" in message
    assert repr(str(path)) in message and "(4, 16)" in message
    # Either one alone is the space it names.
    assert SearchSpace.from_flags(str(path)).dimensions() == [("se_ratio", (8, 32))]
    assert SearchSpace.from_flags(ratios=(4, 16), learning_rate=(0.1,)).dimensions() == [
        ("se_ratio", (4, 16)),
        ("learning_rate", (0.1,)),
    ]
    assert SearchSpace.from_flags().ratios == hypermodels.DEFAULT_RATIOS == (2, 4, 8, 16, 32)


# --------------------------------------------------------------------------- trial -> builder
def test_trial_model_kwargs_merges_the_trial_into_the_fixed_arguments():
    fixed = {"include_top": True, "se_kwargs": {"gate": "sigmoid", "use_bias": False}}
    kwargs = trial_model_kwargs(
        {"se_ratio": 8, "gate": "hard_sigmoid", "squeeze": "max", "se_mode": "pre",
         "learning_rate": 0.1, "tuner/epochs": 3},
        fixed,
    )  # fmt: skip
    assert kwargs == {
        "include_top": True,
        "se_kwargs": {"gate": "hard_sigmoid", "use_bias": False, "squeeze": "max"},
        "se_mode": "pre",
    }
    assert fixed == {"include_top": True, "se_kwargs": {"gate": "sigmoid", "use_bias": False}}
    # A trial of the ratio alone changes nothing the builder is given (se_ratio is the caller's).
    assert trial_model_kwargs({"se_ratio": 4}, fixed) == fixed
    assert trial_model_kwargs({"se_ratio": 4}) == {}


# --------------------------------------------------------------------------- hypermodels
def test_hypermodels_build_the_chosen_space_compiled():
    hypermodel = HyperSEResNet(
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
    # Built for the model's variables (fit then traces its train step once, not twice).
    assert model.optimizer.built and model.optimizer.iterations.numpy() == 0
    # So are the compiled metrics' variables (unbuilt, Keras creates them inside the first
    # traced step: 2 traces), at zero: nothing was counted.
    compiled = {m.name: [float(keras.ops.sum(v)) for v in m.variables] for m in model.metrics}
    assert compiled == {"loss": [0.0, 0.0], "compile_metrics": [0.0, 0.0]}
    assert model.output_shape == (None, 3)
    hp.values["se_ratio"] = 2
    assert _se_ratios(hypermodel.build(hp)) == {2}

    for bad, needle in [
        (dict(model="resnet18"), "model='resnet18'"),  # no SE blocks to tune
        (dict(model="se_inception_v3"), "model='se_inception_v3'"),  # the other family
        (dict(model="se_resnet5O"), "Did you mean: se_resnet50"),  # the registry's message
        (dict(ratios=(0, 4)), "ratios"),
    ]:
        with pytest.raises(ValueError, match=needle):
            HyperSEResNet(**{"input_shape": (16, 16, 3), **bad})
    with pytest.raises(ValueError, match="se_mode"):
        HyperSEInception(input_shape=(75, 75, 3), se_mode=("post",))


def test_hypermodels_build_the_registry_se_models_split_by_family():
    resnets, inceptions = HyperSEResNet.model_names(), HyperSEInception.model_names()
    assert inceptions == ("se_inception_resnet_v2", "se_inception_v3")
    assert not set(resnets) & set(inceptions)
    # The registry's SE models, every one; an SE model is an se_ name or SENet-154.
    assert set(resnets) | set(inceptions) == set(models.names(se=True))
    assert all(n.startswith("se_") or n == "senet154" for n in resnets + inceptions)
    assert {"se_resnet50", "se_resnext50_32x4d", "se_resnet20_cifar", "senet154"} <= set(resnets)


def _tiny_residual_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="branch_a")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", name="branch_b")(y)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="tiny")


@pytest.mark.slow  # measured at 2 s or more (trains two trials)
def test_hyper_se_resnet_searches_under_a_stock_tuner(digits16, tmp_path):
    """`HyperSEResNet` under keras-tuner's own BayesianOptimization (a model-based oracle that
    reads the ratio choices as numbers), on tf.data datasets. (RandomSearch with arrays ran
    here too; it goes through the same Tuner.search path and was dropped for suite time.)"""
    (x, y), (xv, yv) = digits16
    hypermodel = HyperSEResNet(
        "se_resnet20_cifar", input_shape=(16, 16, 3), classes=10, ratios=(4, 16)
    )
    tuner = keras_tuner.BayesianOptimization(
        hypermodel, objective="val_accuracy", max_trials=2, directory=str(tmp_path), seed=1
    )
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    # Whole batches only (160 = 5 x 32, 40 = 1 x 40): a partial last batch traces each
    # trial's evaluation (and the best model's predict) a second time.
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(40)
    tuner.search(train, validation_data=val, epochs=1, verbose=0)

    trials = tuner.oracle.get_best_trials(2)
    assert sorted(t.hyperparameters["se_ratio"] for t in trials) == [4, 16]
    best_hp = tuner.get_best_hyperparameters(1)[0]
    assert best_hp["se_ratio"] == trials[0].hyperparameters["se_ratio"]
    best = tuner.get_best_models(1)[0]
    # The model built for the best ratio, holding the trained weights of the best trial:
    # its accuracy on the validation images is the trial's score.
    assert _se_ratios(best) == {best_hp["se_ratio"]}
    probabilities = best.predict(xv, batch_size=40, verbose=0)
    assert probabilities.shape == (40, 10)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(-1) == yv))
    assert accuracy == pytest.approx(trials[0].score, abs=1e-6)
    tuner.results_summary()


@pytest.mark.slow  # measured at 2 s or more (trains two trials)
def test_hyper_retrofit_trials_start_from_the_base_weights_and_never_share_them(digits16, tmp_path):
    (x, y), (xv, yv) = digits16
    base = _tiny_residual_model()
    before = [w.copy() for w in base.get_weights()]
    hypermodel = HyperRetrofit(base, "residual", ratios=(2, 4), learning_rate=(0.01,))

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


def test_hyper_retrofit_gives_the_searched_squeeze_and_gate_to_every_se_layer():
    base = _tiny_residual_model()
    hypermodel = HyperRetrofit(
        base, "residual", ratios=(2,), squeeze=("max",), gate=("hard_sigmoid",), use_bias=False
    )
    model = hypermodel.build(keras_tuner.HyperParameters())
    se = [layer for layer in model.layers if hasattr(layer, "excitation")]
    assert len(se) == 1  # one residual addition
    config = se[0].get_config()
    assert (config["ratio"], config["squeeze"], config["gate"]) == (2, "max", "hard_sigmoid")
    assert config["use_bias"] is False  # the fixed **se_kwargs reach the layer too
