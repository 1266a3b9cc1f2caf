"""``keras-se tune``: a search whose trials train through `keras_se.training.train`
(Hu et al., 2018, Section 6.1, Table 10: the reduction ratio r against accuracy and size).

`SEHyperModel` turns a trial into a `TrainConfig`; `SETuner` runs each trial in its own
run directory (`keras_se.tuning.results` owns the layout) and keeps keras-tuner's
contract; `ResumableGridOracle` is the grid that survives a restart
(keras-team/keras-tuner#1055); `search` runs or resumes a search, `load_tuner` reopens
one. Distributed tuning follows keras-tuner's chief/worker protocol (`distributed_env`).

Example:
    >>> distributed_env("chief", port=8000)["KERASTUNER_TUNER_ID"]
    'chief'
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os

import keras
import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from keras_se.extras import require
from keras_se.tuning import results as results_lib
from keras_se.tuning.hypermodels import SearchSpace, trial_model_kwargs
from keras_se.tuning.results import OBJECTIVE, PROJECT_NAME, trial_model_path, trial_run_dir
from keras_se_core import fileio
from keras_se_core.choices import ORACLES
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_choice


# --------------------------------------------------------------------------- trials
class SEHyperModel(keras_tuner.HyperModel):
    """The hypermodel of `search`: any registry model, trained by `keras_se.training.train`.

    ``build(hp)`` returns the Keras model for the hyperparameters; ``fit(hp, model, out=...)``
    trains it with `keras_se.training.train` (the model is rebuilt inside the training
    strategy's scope, so the ``model`` argument is not used) and returns the metrics.
    Needs TensorFlow (the training path); for a search over your own data and any
    backend use `HyperSEResNet`.

    Example:
        >>> from keras_se.training import TrainConfig
        >>> hypermodel = SEHyperModel(TrainConfig(model="se_resnet18"), SearchSpace(ratios=(8, 16)))
        >>> hypermodel.build(keras_tuner.HyperParameters()).get_layer("conv5_block2_se").ratio  # doctest: +SKIP
        8
    """

    def __init__(self, base_config, space=None, *, name="se_hypermodel"):
        super().__init__(name=name, tunable=True)
        self.base_config = base_config
        self.space = space or SearchSpace()
        self._info = None

    @property
    def info(self):
        if self._info is None:
            from keras_se import data as data_lib

            self._info, _ = data_lib.describe_dataset(
                self.base_config.dataset,
                data_dir=self.base_config.data_dir,
                manual_dir=self.base_config.manual_dir,
                image_size=self.base_config.image_size,
            )
        return self._info

    def declare_hyperparameters(self, hp):
        self.space.declare(hp)

    def trial_config(self, hp, *, out):
        """The `TrainConfig` of one trial: the base recipe with the trial's values."""
        values = hp.values
        config = dataclasses.replace(
            self.base_config,
            out=out,
            se_ratio=values.get("se_ratio", self.base_config.se_ratio),
            learning_rate=values.get("learning_rate", self.base_config.learning_rate),
            model_kwargs=trial_model_kwargs(values, self.base_config.model_kwargs),
        )
        if "tuner/epochs" in values:  # Hyperband's budget for this trial
            config.epochs = int(values["tuner/epochs"])
        if config.log_excitations is None:  # what each ratio learned: analyse the last epoch
            config.log_excitations = config.epochs
        return config

    def build(self, hp):
        from keras_se import training

        self.space.declare(hp)
        model, _ = training.build_model(self.trial_config(hp, out=""), self.info)
        return model

    def fit(self, hp, model=None, *, out, verbose=0, **kwargs):
        from keras_se import training

        summary = training.train(self.trial_config(hp, out=out), verbose=verbose)
        return {
            OBJECTIVE: summary["best_val_accuracy"],
            "final_val_accuracy": summary["final_val_accuracy"],
            "params": summary["params"],
            "macs": summary["macs"] or 0,
            "time_per_step_s": summary["time_per_step_s"],
        }


# --------------------------------------------------------------------------- oracles
class ResumableGridOracle(keras_tuner.Oracle):
    """Exhaustive grid over Choice hyperparameters that survives restarts.

    The next trial is the first combination (in declaration order, defaults first)
    that no recorded trial holds, computed from ``self.trials`` alone: nothing but
    the trials needs to be persisted, unlike keras-tuner 1.4.8's GridSearchOracle
    (keras-team/keras-tuner#1055).

    Example (`make_oracle` builds it for ``oracle="grid"``, one trial per combination):
        >>> oracle = make_oracle("grid", SearchSpace(ratios=(4, 8, 16), squeeze=("avg", "max")))
        >>> isinstance(oracle, ResumableGridOracle), oracle.max_trials
        (True, 6)
    """

    def _combinations(self):
        hps = self.get_space()
        names, choices = [], []
        for hp in hps.space:
            values = list(getattr(hp, "values", None) or [hp.default])
            if hp.default in values:  # defaults first, as keras-tuner's grid does
                values.remove(hp.default)
                values.insert(0, hp.default)
            names.append(hp.name)
            choices.append(values)
        for combo in itertools.product(*choices):
            yield dict(zip(names, combo))

    @staticmethod
    def _key(values):
        return json.dumps(values, sort_keys=True, default=str)

    def populate_space(self, trial_id):
        taken = {
            self._key(t.hyperparameters.values) for tid, t in self.trials.items() if tid != trial_id
        }
        for values in self._combinations():
            if self._key(values) not in taken:
                return {"status": TrialStatus.RUNNING, "values": values}
        if self.ongoing_trials:
            return {"status": TrialStatus.IDLE, "values": None}
        return {"status": TrialStatus.STOPPED, "values": None}


def make_oracle(name, space, *, max_trials=None, epochs=10, seed=0):
    """The keras-tuner oracle ``name`` over ``space`` (objective ``val_accuracy``).

    ``"grid"``, ``"random"`` and ``"bayesian"`` run ``max_trials`` trials (default: the
    size of the grid); ``"hyperband"`` trains up to ``epochs`` epochs per trial.

    Example:
        >>> oracle = make_oracle("random", SearchSpace(ratios=(4, 8, 16)))
        >>> isinstance(oracle, keras_tuner.oracles.RandomSearchOracle), oracle.max_trials
        (True, 3)
        >>> oracle.objective.name
        'val_accuracy'
        >>> hyperband = make_oracle("hyperband", SearchSpace(ratios=(4, 16)), epochs=9)
        >>> isinstance(hyperband, keras_tuner.oracles.HyperbandOracle), hyperband.max_epochs
        (True, 9)
    """
    check_choice("oracle", name, ORACLES)
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    hp = keras_tuner.HyperParameters()
    space.declare(hp)
    common = dict(
        objective=objective,
        hyperparameters=hp,
        tune_new_entries=False,
        allow_new_entries=False,
        seed=seed,
    )
    if name == "grid":
        return ResumableGridOracle(max_trials=max_trials or space.size(), **common)
    if name == "random":
        return keras_tuner.oracles.RandomSearchOracle(
            max_trials=max_trials or space.size(), **common
        )
    if name == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=max_trials or space.size(), **common
        )
    return keras_tuner.oracles.HyperbandOracle(max_epochs=epochs, factor=3, **common)


class SETuner(keras_tuner.Tuner):
    """Runs each trial through `SEHyperModel.fit` in ``<project>/trial_<id>/run``.

    Keeps keras-tuner's ``Tuner`` contract: each trial's checkpoint is the model its
    training run saved (`trial_model_path`), so the inherited ``get_best_models()``
    returns trained models (the trial's final epoch, as ``keras-se train`` saves it)
    and ``get_best_hyperparameters()``/``results_summary()`` work as for any tuner.

    Example (`search` builds it so; a search trains, so it is not run here):
        >>> import os, tempfile
        >>> from keras_se.training import TrainConfig
        >>> space, out = SearchSpace(ratios=(8, 16)), tempfile.mkdtemp()
        >>> tuner = SETuner(
        ...     hypermodel=SEHyperModel(TrainConfig(model="se_resnet18", epochs=1), space),
        ...     oracle=make_oracle("grid", space),
        ...     directory=out,
        ...     project_name="tuner",
        ... )
        >>> tuner.project_dir == os.path.join(out, "tuner")
        True
        >>> tuner.search()  # doctest: +SKIP
        >>> tuner.get_best_models(1)[0].name  # doctest: +SKIP
        'se_resnet18'
    """

    def __init__(self, *args, verbose=0, **kwargs):
        self.trial_verbose = verbose
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        out = trial_run_dir(self.project_dir, trial.trial_id)
        metrics = self.hypermodel.fit(
            trial.hyperparameters, None, out=out, verbose=self.trial_verbose
        )
        results_lib.write_hparams(self.project_dir, trial, metrics)
        return metrics

    def save_model(self, trial_id, model, step=0):
        """Saves ``model`` as the trial's checkpoint (the run writes it itself during `search`)."""
        path = trial_model_path(self.project_dir, trial_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with fileio.atomic_path(path) as tmp:
            model.save(tmp)

    def load_model(self, trial):
        """The trial's trained model, read from its run directory (compiled as saved)."""
        path = trial_model_path(self.project_dir, trial.trial_id)
        if not os.path.isfile(path):
            raise UsageError(
                f"Trial {trial.trial_id} has no saved model (status {trial.status}). "
                f"Received: path={path!r}"
            )
        return keras.models.load_model(path, safe_mode=True)


# --------------------------------------------------------------------------- search
def distributed_env(role, *, port, address="127.0.0.1", worker_index=0):
    """The ``KERASTUNER_*`` variables for a chief (``role="chief"``) or a worker.

    Example:
        >>> distributed_env("worker", port=8000, worker_index=1)
        {'KERASTUNER_TUNER_ID': 'tuner1', 'KERASTUNER_ORACLE_IP': '127.0.0.1', 'KERASTUNER_ORACLE_PORT': '8000'}
    """
    check_choice("role", role, ("chief", "worker"))
    return {
        "KERASTUNER_TUNER_ID": "chief" if role == "chief" else f"tuner{worker_index}",
        "KERASTUNER_ORACLE_IP": address,
        "KERASTUNER_ORACLE_PORT": str(port),
    }


def _is_distributed_worker():
    return (
        "KERASTUNER_ORACLE_IP" in os.environ
        and os.environ.get("KERASTUNER_TUNER_ID", "") != "chief"
    )


def _make_tuner(base_config, space, *, out, oracle, max_trials, verbose):
    """The `SETuner` of a search directory: new, or reloading the trials recorded there."""
    return SETuner(
        make_oracle(
            oracle, space, max_trials=max_trials, epochs=base_config.epochs, seed=base_config.seed
        ),
        hypermodel=SEHyperModel(base_config, space),
        directory=out,
        project_name=PROJECT_NAME,
        overwrite=False,
        verbose=verbose,
    )


def _check_searchable_model(model, space):
    """A registry name, or a ``--model`` factory that takes ``se_ratio`` (ratios only).

    A registry name is checked by `finetune.model_source` (`keras_se.models.registry.check_name`,
    as for ``keras-se train``).
    """
    from keras_se import finetune

    kind, factory = finetune.model_source(model)
    if kind == "registry":
        return
    if kind == "file":
        raise UsageError(
            "`model` must be built anew for each ratio: a registry name or a factory "
            f"package.module:function taking se_ratio, not a saved model file. Received: model={model!r}"
        )
    if not finetune.factory_accepts_se_ratio(factory):
        raise UsageError(
            f"`model` factory must take an `se_ratio` argument for the search to set it. "
            f"Received: model={model!r}"
        )
    searched = [k for k in ("squeeze", "gate", "se_mode") if getattr(space, k)]
    if searched:
        raise UsageError(
            f"a `model` factory searches se_ratio (and learning_rate) only, not {', '.join(searched)}. "
            f"Received: model={model!r}"
        )


def search(
    base_config,
    space=None,
    *,
    out="runs/tune",
    oracle="grid",
    max_trials=None,
    verbose=1,
    export=True,
):
    """Runs (or resumes) a search; writes results, the trade-off figure and the best model.

    Args:
        base_config: the `keras_se.training.TrainConfig` every trial starts from
            (model, dataset, epochs, strategy, ...); its ``out`` is ignored.
        space: a `SearchSpace` (default: r ∈ {2, 4, 8, 16, 32}).
        out: the search directory; rerunning with the same ``out`` resumes, and
            `load_tuner` reopens it.
        oracle: ``"grid"``, ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        max_trials: cap on trials (default: the grid size).
        verbose: 1 prints progress per trial and the final table.
        export: also export the best model as a TF Serving SavedModel.

    Returns:
        The list of trial result dicts (also ``results.json``), or None on a
        distributed worker (the chief writes the results).

    Example:
        >>> from keras_se.training import TrainConfig
        >>> results = search(TrainConfig(model="se_resnet18", epochs=1, steps_per_epoch=2, image_size=16),
        ...                  SearchSpace(ratios=(8, 16)), out="/tmp/tune")       # doctest: +SKIP
    """
    require("tensorflow", feature="keras_se.tuning.search", extra="tune")
    space = space or SearchSpace()
    check_choice("oracle", oracle, ORACLES)
    base_config.validate()
    _check_searchable_model(base_config.model, space)
    os.makedirs(out, exist_ok=True)
    if not _is_distributed_worker():  # the chief records what load_tuner and a resume reopen
        settings = {
            "oracle": oracle,
            "max_trials": max_trials,
            "space": space.to_dict(),
            "train": base_config.to_dict(),
        }
        results_lib.write_settings(out, settings)
    tuner = _make_tuner(
        base_config, space, out=out, oracle=oracle, max_trials=max_trials, verbose=verbose
    )
    tuner.search(verbose=verbose)
    if _is_distributed_worker():
        return None
    return results_lib.summarize(tuner.oracle, out, export=export, verbose=verbose)


def load_tuner(out):
    """Reopens the search directory of a `search` (``keras-se tune --out OUT``).

    Returns:
        An `SETuner` with the recorded trials: ``get_best_models(1)[0]`` is the best
        trial's trained model, ``get_best_hyperparameters(1)[0]["se_ratio"]`` its ratio,
        and ``results_summary()`` prints the trials. Calling ``search()`` on it resumes
        the search with the recorded settings.

    Example:
        >>> tuner = load_tuner("runs/tune")  # doctest: +SKIP
        >>> tuner.get_best_hyperparameters(1)[0]["se_ratio"]  # doctest: +SKIP
        16
    """
    from keras_se_core.configs import TrainConfig

    out = os.fspath(out)
    settings, settings_path = results_lib.read_settings(out)
    space = SearchSpace.from_dict(settings["space"], source=settings_path)
    base_config = TrainConfig.from_dict(settings["train"])
    return _make_tuner(
        base_config,
        space,
        out=out,
        oracle=settings["oracle"],
        max_trials=settings.get("max_trials"),
        verbose=0,
    )
