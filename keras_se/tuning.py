"""Searching the SE reduction ratio with keras-tuner (Hu et al., 2018, Section 6.1, Table 10).

The paper's central ablation varies r ∈ {2, 4, 8, 16, 32} on SE-ResNet-50: accuracy is
about the same down to r = 16 and drops at 32, while parameters fall from 45.7M to
26.8M. `search` runs the same study on any registry model and dataset, optionally
with the other ablated dimensions (squeeze avg/max, gate sigmoid/hard_sigmoid,
integration mode) and the learning rate.

Every trial trains through `keras_se.training.train` — the one training path, with
its strategies, recipe, checkpoints and resume — in ``OUT/tuner/trial_<id>/run``.
A killed search rerun with the same command keeps every completed trial, resumes the
interrupted one from its last epoch, and runs only the rest.

keras-tuner 1.4.8's ``GridSearchOracle`` loses its internal order on reload
(keras-team/keras-tuner#1055: ``KeyError`` on the first trial after a resume);
the ``"grid"`` oracle here is `ResumableGridOracle`, which derives the next
combination from the recorded trials alone and therefore survives restarts and
serves distributed workers.

Distributed tuning follows keras-tuner: one chief oracle and N workers, configured
by ``KERASTUNER_TUNER_ID`` (``chief`` / ``tuner0``...), ``KERASTUNER_ORACLE_IP``
and ``KERASTUNER_ORACLE_PORT``; `distributed_env` builds them (loopback by default).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import shutil

import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from keras_se import data as data_lib
from keras_se import training

DEFAULT_RATIOS = (2, 4, 8, 16, 32)
ORACLES = ("grid", "random", "bayesian", "hyperband")
SQUEEZES = ("avg", "max")
GATES = ("sigmoid", "hard_sigmoid")
SE_MODES = ("standard", "pre", "post", "identity")
OBJECTIVE = "val_accuracy"


@dataclasses.dataclass
class SearchSpace:
    """The hyperparameters to search; None leaves a dimension at the model default.

    Example:
        >>> space = SearchSpace(ratios=(4, 16), squeeze=("avg", "max"))
        >>> space.size()
        4
    """

    ratios: tuple = DEFAULT_RATIOS
    squeeze: tuple | None = None
    gate: tuple | None = None
    se_mode: tuple | None = None
    learning_rate: tuple | None = None

    def __post_init__(self):
        self.ratios = _check_values("ratios", self.ratios, number=True)
        self.squeeze = _check_values("squeeze", self.squeeze, allowed=SQUEEZES)
        self.gate = _check_values("gate", self.gate, allowed=GATES)
        self.se_mode = _check_values("se_mode", self.se_mode, allowed=SE_MODES)
        self.learning_rate = _check_values("learning_rate", self.learning_rate, number=True)

    def dimensions(self):
        """``[(hyperparameter name, values)]`` in declaration (grid) order."""
        dims = [("se_ratio", self.ratios)]
        for name in ("squeeze", "gate", "se_mode", "learning_rate"):
            values = getattr(self, name)
            if values:
                dims.append((name, values))
        return dims

    def size(self):
        n = 1
        for _, values in self.dimensions():
            n *= len(values)
        return n

    def declare(self, hp):
        """Registers the space on a ``keras_tuner.HyperParameters``."""
        for name, values in self.dimensions():
            hp.Choice(name, list(values), default=values[0])

    @classmethod
    def from_file(cls, path):
        """Reads ``{"ratios": [...], "squeeze": [...], ...}`` from JSON or YAML."""
        with open(path) as f:
            text = f.read()
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as err:
                raise ValueError(
                    f"Reading YAML needs PyYAML (pip install pyyaml). Received: space={path!r}"
                ) from err
            spec = yaml.safe_load(text)
        else:
            spec = json.loads(text)
        if not isinstance(spec, dict):
            raise ValueError(f"A search-space file must hold a mapping. Received: space={path!r}")
        unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Unknown search-space keys {sorted(unknown)} in {path!r}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})


def _check_values(name, values, *, allowed=None, number=False):
    if values is None:
        return None
    if isinstance(values, (str, int, float)):
        values = (values,)
    values = tuple(values)
    if not values:
        raise ValueError(f"`{name}` must list at least one value. Received: {name}={values!r}")
    for value in values:
        if number and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise ValueError(f"`{name}` must hold positive numbers. Received: {name}={values!r}")
        if allowed and value not in allowed:
            raise ValueError(f"`{name}` values must be in {allowed}. Received: {name}={values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"`{name}` has duplicate values. Received: {name}={values!r}")
    return values


# --------------------------------------------------------------------------- hypermodel
class SEHyperModel(keras_tuner.HyperModel):
    """A keras-tuner HyperModel over any registry model and the SE ablation dimensions.

        ``build(hp)`` returns the Keras model for the hyperparameters; ``fit(hp, model, out=...)``
        trains it with `keras_se.training.train` (the model is rebuilt inside the training
        strategy's scope, so the ``model`` argument is not used) and returns the metrics.

        Example:
            >>> import keras_tuner
    from keras_tuner.engine.trial import TrialStatus
            >>> hypermodel = SEHyperModel(training.TrainConfig(model="se_resnet18"), SearchSpace(ratios=(8, 16)))
            >>> hp = keras_tuner.HyperParameters()
            >>> hypermodel.declare_hyperparameters(hp)
            >>> hypermodel.build(hp).get_layer("conv5_block2_se").ratio
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
        model_kwargs = dict(self.base_config.model_kwargs)
        se_kwargs = dict(model_kwargs.get("se_kwargs") or {})
        for key in ("squeeze", "gate"):
            if key in values:
                se_kwargs[key] = values[key]
        if se_kwargs:
            model_kwargs["se_kwargs"] = se_kwargs
        if "se_mode" in values:
            model_kwargs["se_mode"] = values["se_mode"]
        config = dataclasses.replace(
            self.base_config,
            out=out,
            se_ratio=values.get("se_ratio", self.base_config.se_ratio),
            learning_rate=values.get("learning_rate", self.base_config.learning_rate),
            model_kwargs=model_kwargs,
        )
        if "tuner/epochs" in values:  # Hyperband's budget for this trial
            config.epochs = int(values["tuner/epochs"])
        return config

    def build(self, hp):
        self.space.declare(hp)
        return training.build_model(self.trial_config(hp, out=""), self.info)

    def fit(self, hp, model=None, *, out, verbose=0, **kwargs):
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
    """The keras-tuner oracle ``name`` over ``space`` (objective ``val_accuracy``)."""
    if name not in ORACLES:
        raise ValueError(f"`oracle` must be one of {ORACLES}. Received: oracle={name!r}")
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
    """Runs each trial through `SEHyperModel.fit` in ``<project>/trial_<id>/run``."""

    def __init__(self, *args, verbose=0, **kwargs):
        self.trial_verbose = verbose
        super().__init__(*args, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        out = os.path.join(self.get_trial_dir(trial.trial_id), "run")
        metrics = self.hypermodel.fit(
            trial.hyperparameters, None, out=out, verbose=self.trial_verbose
        )
        _write_hparams(self.project_dir, trial, metrics)
        return metrics


def _write_hparams(project_dir, trial, metrics):
    """TensorBoard HParams record of one trial (``<project>/hparams``)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    values = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
    with tf.summary.create_file_writer(
        os.path.join(project_dir, "hparams", f"trial_{trial.trial_id}")
    ).as_default():
        hparams_api.hparams(values, trial_id=trial.trial_id)
        for key in (OBJECTIVE, "params", "time_per_step_s"):
            if metrics.get(key) is not None:
                tf.summary.scalar(key, metrics[key], step=1)


# --------------------------------------------------------------------------- search
def distributed_env(role, *, port, address="127.0.0.1", worker_index=0):
    """The ``KERASTUNER_*`` variables for a chief (``role="chief"``) or a worker."""
    if role not in ("chief", "worker"):
        raise ValueError(f"`role` must be 'chief' or 'worker'. Received: role={role!r}")
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
        out: the search directory; rerunning with the same ``out`` resumes.
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
    space = space or SearchSpace()
    base_config.validate()
    os.makedirs(out, exist_ok=True)
    hypermodel = SEHyperModel(base_config, space)
    tuner = SETuner(
        make_oracle(
            oracle, space, max_trials=max_trials, epochs=base_config.epochs, seed=base_config.seed
        ),
        hypermodel=hypermodel,
        directory=out,
        project_name="tuner",
        overwrite=False,
        verbose=verbose,
    )
    tuner.search(verbose=verbose)
    if _is_distributed_worker():
        return None
    results = collect_results(tuner.oracle, out)
    write_results(results, out)
    if verbose:
        print(format_table(results))
    best = next((r for r in results if r["status"] == "COMPLETED"), None)
    if best is not None:
        _save_best(best, out, export=export, verbose=verbose)
    return results


def collect_results(oracle, out):
    """One dict per trial of the search in ``out``, best ``val_accuracy`` first."""
    rows = []
    for trial in oracle.trials.values():
        metrics = {}
        for name in (OBJECTIVE, "final_val_accuracy", "params", "macs", "time_per_step_s"):
            if trial.metrics.exists(name):
                metrics[name] = trial.metrics.get_best_value(name)
        values = {
            k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")
        }
        rows.append(
            {
                "trial_id": trial.trial_id,
                "hyperparameters": values,
                "best_val_accuracy": metrics.get(OBJECTIVE),
                "final_val_accuracy": metrics.get("final_val_accuracy"),
                "params": int(metrics["params"]) if "params" in metrics else None,
                "macs": int(metrics["macs"]) if "macs" in metrics else None,
                "time_per_step_s": metrics.get("time_per_step_s"),
                "status": str(trial.status),
                "run_dir": os.path.join(out, "tuner", f"trial_{trial.trial_id}", "run"),
            }
        )
    rows.sort(
        key=lambda r: (
            r["best_val_accuracy"] is None,
            -(r["best_val_accuracy"] or 0),
            r["trial_id"],
        )
    )
    return rows


def write_results(results, out):
    """``results.json``, ``results.csv`` and the trade-off figure (PNG + SVG) in ``out``."""
    with open(os.path.join(out, "results.json.tmp"), "w") as f:
        json.dump(results, f, indent=2)
    os.replace(os.path.join(out, "results.json.tmp"), os.path.join(out, "results.json"))
    hp_names = sorted({k for r in results for k in r["hyperparameters"]})
    fields = [
        "trial_id",
        *hp_names,
        "best_val_accuracy",
        "final_val_accuracy",
        "params",
        "macs",
        "time_per_step_s",
        "status",
    ]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row = {k: r.get(k) for k in fields if k not in hp_names}
            row.update({k: r["hyperparameters"].get(k) for k in hp_names})
            writer.writerow(row)
    if any(r["status"] == "COMPLETED" for r in results):
        from keras_se.visualize import plot_ratio_tradeoff

        plot_ratio_tradeoff(results, os.path.join(out, "ratio_tradeoff"))


def format_table(results):
    """The paper's reduction-ratio table for the terminal."""
    lines = [
        f"{'trial':>6} {'hyperparameters':<40} {'val_acc':>8} {'params':>12} {'GMACs':>7} {'s/step':>7}  status"
    ]
    for r in results:
        hp = ", ".join(f"{k}={v}" for k, v in r["hyperparameters"].items())
        acc = "-" if r["best_val_accuracy"] is None else f"{r['best_val_accuracy']:.4f}"
        params = "-" if r["params"] is None else f"{r['params']:,}"
        macs = "-" if not r["macs"] else f"{r['macs'] / 1e9:.3f}"
        step = "-" if r["time_per_step_s"] is None else f"{r['time_per_step_s']:.3f}"
        lines.append(
            f"{r['trial_id']:>6} {hp:<40} {acc:>8} {params:>12} {macs:>7} {step:>7}  {r['status']}"
        )
    return "\n".join(lines)


def _save_best(best, out, *, export, verbose):
    source = os.path.join(best["run_dir"], "model.keras")
    target = os.path.join(out, "best_model.keras")
    shutil.copyfile(source, target + ".tmp")
    os.replace(target + ".tmp", target)
    preprocessing = data_lib.load_preprocessing(source)
    if preprocessing is not None:
        data_lib.save_preprocessing(target, preprocessing)
    if verbose:
        print(f"Best trial {best['trial_id']} ({best['hyperparameters']}): {target}")
    if export:
        from keras_se.export import export_model

        serving = os.path.join(out, "serving")
        if not os.path.isdir(os.path.join(serving, "best")):
            result = export_model(best["run_dir"], serving, name="best")
            if verbose:
                print(f"Exported the best model for TF Serving: {result.path}")
