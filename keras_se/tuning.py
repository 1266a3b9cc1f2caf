"""Searching the SE reduction ratio with keras-tuner (Hu et al., 2018, Section 6.1, Table 10).

The paper's central ablation varies r ∈ {2, 4, 8, 16, 32} on SE-ResNet-50: accuracy is
about the same down to r = 16 and drops at 32, while parameters fall from 45.7M to
26.8M. Two ways to run the same study:

* **Hypermodels for your own search** (any keras-tuner tuner, any data, any Keras
  backend): `HyperSEResNet`, `HyperSEInception` and `HyperRetrofit` are
  ``keras_tuner.HyperModel`` s in the shape of ``keras_tuner.applications.HyperResNet``:
  ``build(hp)`` returns a compiled model whose hyperparameter ``se_ratio`` (and,
  optionally, ``squeeze``, ``gate``, ``se_mode``, ``learning_rate``; see `SearchSpace`)
  the tuner chooses, and ``tuner.search(x, y, validation_data=..., epochs=...)`` trains it
  with ``model.fit``.
* **`search`** (behind ``keras-se tune``): every trial trains through
  `keras_se.training.train` — the one training path, with its strategies, recipe,
  checkpoints and resume — in ``OUT/tuner/trial_<id>/run``. A killed search rerun with
  the same command keeps every completed trial, resumes the interrupted one from its
  last checkpoint, and runs only the rest. `SETuner` keeps keras-tuner's contract:
  ``get_best_models()`` loads the trials' saved models, and `load_tuner` reopens a
  finished search directory.

keras-tuner 1.4.8's ``GridSearchOracle`` loses its internal order on reload
(keras-team/keras-tuner#1055: ``KeyError`` on the first trial after a resume);
the ``"grid"`` oracle here is `ResumableGridOracle`, which derives the next
combination from the recorded trials alone and therefore survives restarts and
serves distributed workers.

Distributed tuning follows keras-tuner: one chief oracle and N workers, configured
by ``KERASTUNER_TUNER_ID`` (``chief`` / ``tuner0``...), ``KERASTUNER_ORACLE_IP``
and ``KERASTUNER_ORACLE_PORT``; `distributed_env` builds them (loopback by default).

This module needs the ``tune`` extra (keras-tuner); `search` also needs TensorFlow
(``pip install 'keras-se[tune]'`` installs both). The hypermodels need only Keras.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os

import keras

from keras_se import models as models_lib
from keras_se.extras import require
from keras_se.retrofit import add_squeeze_excite
from keras_se_core import fileio
from keras_se_core.choices import ABLATION_RATIOS, GATES, ORACLES, SE_MODES, SQUEEZES
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_choice, is_number

keras_tuner = require("keras_tuner", feature="keras_se.tuning", extra="tune")
from keras_tuner.engine.trial import TrialStatus  # noqa: E402 (after the extra's check)

#: Kept for callers of earlier versions; the facts live in keras_se_core.choices.
DEFAULT_RATIOS = ABLATION_RATIOS
OBJECTIVE = "val_accuracy"
#: The search settings `search` records in its directory, for `load_tuner`.
SEARCH_FILE = "search.json"
PROJECT_NAME = "tuner"


@dataclasses.dataclass
class SearchSpace:
    """The hyperparameters to search; None leaves a dimension at the model default.

    Example:
        >>> space = SearchSpace(ratios=(4, 16), squeeze=("avg", "max"))
        >>> space.size()
        4
    """

    ratios: tuple = ABLATION_RATIOS
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
        """Registers the space on a ``keras_tuner.HyperParameters``; returns the values.

        Returns:
            ``{name: value}`` for this trial (the first value of each dimension when
            the tuner has not chosen one yet).
        """
        return {
            name: hp.Choice(name, list(values), default=values[0])
            for name, values in self.dimensions()
        }

    def to_dict(self):
        return {k: None if v is None else list(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, spec, *, source="space"):
        """A space from ``{"ratios": [...], "squeeze": [...], ...}``.

        Keys left out keep the defaults (``ratios``: the paper's 2, 4, 8, 16, 32; the
        others: not searched). An empty mapping (or only ``null`` values) is refused:
        it would silently run the default search, which is what leaving the file out
        does.

        Args:
            spec: the mapping.
            source: what to name in errors (the file path).

        Returns:
            A `SearchSpace`.

        Example:
            >>> SearchSpace.from_dict({"ratios": [8, 16], "squeeze": ["avg", "max"]}).size()
            4
        """
        if not isinstance(spec, dict):
            raise UsageError(f"A search space must be a mapping. Received: {source}={spec!r}")
        unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise UsageError(f"Unknown search-space keys {sorted(unknown)} in {source!r}.")
        if all(v is None for v in spec.values()):
            keys = ", ".join(f.name for f in dataclasses.fields(cls))
            raise UsageError(
                f"Empty search space in the `--space` file: it must set at least one of {keys} "
                f"(leave --space out for the default ratios). Received: space={source!r}"
            )
        spec = {k: v for k, v in spec.items() if not (k == "ratios" and v is None)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})

    @classmethod
    def from_flags(
        cls, space=None, *, ratios=None, squeeze=None, gate=None, se_mode=None, learning_rate=None
    ):
        """The space of ``keras-se tune``: a ``--space`` file, or the flags, never both.

        A file given together with search flags used to win silently (the flags were
        ignored); now that is an error naming both.

        Args:
            space: the ``--space`` file path, or None.
            ratios, squeeze, gate, se_mode, learning_rate: the ``--ratios``, ``--squeeze``,
                ``--gate``, ``--se-mode`` and ``--lrs`` values; None when not given
                (``ratios`` None: the paper's 2, 4, 8, 16, 32).

        Returns:
            A `SearchSpace`.

        Raises:
            UsageError: a file and flags together, or a bad file (see `from_file`).

        Example:
            >>> SearchSpace.from_flags(ratios=(4, 16)).size()
            2
        """
        flags = {
            "--ratios": ratios,
            "--squeeze": squeeze,
            "--gate": gate,
            "--se-mode": se_mode,
            "--lrs": learning_rate,
        }
        given = [flag for flag, value in flags.items() if value is not None]
        if space is not None and given:
            raise UsageError(
                f"--space and {', '.join(given)} both set the search space; give the file or the "
                f"flags, not both. Received: --space {space!r}, "
                + ", ".join(f"{flag} {flags[flag]!r}" for flag in given)
            )
        if space is not None:
            return cls.from_file(space)
        return cls(
            ratios=ABLATION_RATIOS if ratios is None else ratios,
            squeeze=squeeze,
            gate=gate,
            se_mode=se_mode,
            learning_rate=learning_rate,
        )

    @classmethod
    def from_file(cls, path):
        """Reads ``{"ratios": [...], "squeeze": [...], ...}`` from JSON or YAML (see `from_dict`)."""
        try:
            with open(path) as f:
                text = f.read()
        except OSError as err:
            raise UsageError(
                f"`space` cannot be read ({err.strerror or err}). Received: space={path!r}"
            ) from err
        if path.endswith((".yaml", ".yml")):
            try:
                import yaml
            except ImportError as err:
                raise UsageError(
                    f"Reading YAML needs PyYAML (pip install pyyaml). Received: space={path!r}"
                ) from err
            spec = yaml.safe_load(text)
        else:
            try:
                spec = json.loads(text)
            except json.JSONDecodeError as err:
                raise UsageError(
                    f"`space` is not valid JSON ({err}). Received: space={path!r}"
                ) from err
        return cls.from_dict(spec, source=path)


def _check_values(name, values, *, allowed=None, number=False):
    if values is None:
        return None
    if isinstance(values, (str, int, float)):
        values = (values,)
    values = tuple(values)
    if not values:
        raise UsageError(f"`{name}` must list at least one value. Received: {name}={values!r}")
    for value in values:
        if number and not (is_number(value) and value > 0):
            raise UsageError(f"`{name}` must hold positive numbers. Received: {name}={values!r}")
        if allowed:
            check_choice(name, value, allowed)
    if len(set(values)) != len(values):
        raise UsageError(f"`{name}` has duplicate values. Received: {name}={values!r}")
    return values


# --------------------------------------------------------------------------- hypermodels
class _CompiledSEHyperModel(keras_tuner.HyperModel):
    """What the public hypermodels share: the space, and compiling what they build."""

    #: Space dimensions a subclass cannot use (e.g. ``se_mode`` outside SE-ResNets).
    unsupported = ()

    def __init__(
        self,
        *,
        ratios,
        squeeze,
        gate,
        se_mode,
        learning_rate,
        optimizer,
        loss,
        metrics,
        name,
        tunable,
    ):
        super().__init__(name=name, tunable=tunable)
        self.space = SearchSpace(
            ratios=ratios, squeeze=squeeze, gate=gate, se_mode=se_mode, learning_rate=learning_rate
        )
        for key in self.unsupported:
            if getattr(self.space, key) is not None:
                raise UsageError(
                    f"`{key}` cannot be searched with {type(self).__name__}. "
                    f"Received: {key}={getattr(self.space, key)!r}"
                )
        self.optimizer = optimizer
        self.loss = loss
        self.metrics = list(metrics)

    def build(self, hp):
        values = self.space.declare(hp)
        se_kwargs = {k: values[k] for k in ("squeeze", "gate") if k in values}
        model = self.build_model(values, se_kwargs)
        optimizer = keras.optimizers.get(self.optimizer)
        if "learning_rate" in values:
            optimizer.learning_rate = values["learning_rate"]
        model.compile(optimizer=optimizer, loss=self.loss, metrics=self.metrics)
        return model

    def build_model(self, values, se_kwargs):
        raise NotImplementedError


class HyperSEResNet(_CompiledSEHyperModel):
    """An SE-ResNet/SE-ResNeXt hypermodel over the reduction ratio, for any keras-tuner tuner.

    ``build(hp)`` declares ``se_ratio`` (and the other `SearchSpace` dimensions given)
    and returns the registry model ``model`` for them, compiled with ``optimizer``
    (its learning rate from ``learning_rate`` when that is searched), ``loss`` and
    ``metrics``, like ``keras_tuner.applications.HyperResNet``. The data, epochs and
    callbacks are the tuner's ``search(...)`` arguments (arrays or ``tf.data``).

    Args:
        model: an SE registry name outside the Inception family (see `model_names`),
            e.g. ``"se_resnet18"``, ``"se_resnet50"``, ``"se_resnext50_32x4d"``,
            ``"se_resnet20_cifar"``.
        input_shape: ``(H, W, C)`` of the images.
        classes: number of classes (the model ends in a softmax).
        ratios: reduction ratios to search (the paper's 2, 4, 8, 16, 32 by default).
        squeeze, gate, se_mode, learning_rate: optional values to search as well
            (``("avg", "max")``, ``("sigmoid", "hard_sigmoid")``, SE modes, numbers).
        optimizer: a Keras optimizer name or instance (default ``"adam"``).
        loss: default ``"sparse_categorical_crossentropy"`` (integer labels).
        metrics: default ``["accuracy"]`` (gives ``val_accuracy`` to the tuner).
        model_kwargs: other builder arguments (e.g. ``{"include_top": True}``).
        name, tunable: as ``keras_tuner.HyperModel``.

    Example:
        >>> import keras_tuner as kt
        >>> tuner = kt.RandomSearch(HyperSEResNet("se_resnet18", input_shape=(32, 32, 3), classes=10,
        ...                                       ratios=(4, 16)),
        ...                         objective="val_accuracy", max_trials=2, directory="/tmp/kt")  # doctest: +SKIP
        >>> tuner.search(x, y, validation_data=(x_val, y_val), epochs=1)  # doctest: +SKIP
        >>> tuner.get_best_hyperparameters()[0]["se_ratio"]  # doctest: +SKIP
        16
    """

    family = "resnet"

    def __init__(
        self,
        model="se_resnet18",
        *,
        input_shape=(32, 32, 3),
        classes=10,
        ratios=ABLATION_RATIOS,
        squeeze=None,
        gate=None,
        se_mode=None,
        learning_rate=None,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=("accuracy",),
        model_kwargs=None,
        name=None,
        tunable=True,
    ):
        super().__init__(
            ratios=ratios,
            squeeze=squeeze,
            gate=gate,
            se_mode=se_mode,
            learning_rate=learning_rate,
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            name=name,
            tunable=tunable,
        )
        check_choice("model", model, self.model_names())
        self.model = model
        self.input_shape = tuple(input_shape)
        self.classes = classes
        self.model_kwargs = dict(model_kwargs or {})

    @classmethod
    def model_names(cls):
        """The registry names this hypermodel builds: the SE models of its family."""
        import inspect

        def is_se(name):  # an SE builder's se_ratio defaults to a number, a plain one's to None
            parameter = inspect.signature(models_lib.builder(name)).parameters.get("se_ratio")
            return parameter is not None and parameter.default is not None

        inception = cls.family == "inception"
        return tuple(n for n in models_lib.names() if is_se(n) and ("inception" in n) == inception)

    def build_model(self, values, se_kwargs):
        kwargs = dict(self.model_kwargs, input_shape=self.input_shape, classes=self.classes)
        kwargs["se_ratio"] = values["se_ratio"]
        if se_kwargs:
            kwargs["se_kwargs"] = {**(kwargs.get("se_kwargs") or {}), **se_kwargs}
        if "se_mode" in values:
            kwargs["se_mode"] = values["se_mode"]
        return models_lib.get(self.model, **kwargs)


class HyperSEInception(HyperSEResNet):
    """`HyperSEResNet` for the SE-Inception family (``"se_inception_v3"``,
    ``"se_inception_resnet_v2"``; inputs of at least 75x75). No ``se_mode`` (the
    paper puts the SE block on each Inception module's output).

    Example:
        >>> hypermodel = HyperSEInception(input_shape=(75, 75, 3), classes=5, ratios=(8, 16))
        >>> hypermodel.build(keras_tuner.HyperParameters()).get_layer("mixed0_se").ratio  # doctest: +SKIP
        8
    """

    family = "inception"
    unsupported = ("se_mode",)

    def __init__(
        self, model="se_inception_v3", *, input_shape=(299, 299, 3), classes=1000, **kwargs
    ):
        super().__init__(model, input_shape=input_shape, classes=classes, **kwargs)


class HyperRetrofit(_CompiledSEHyperModel):
    """Retrofitting SE blocks into an existing model, the ratio chosen by the tuner.

    ``build(hp)`` returns ``keras_se.add_squeeze_excite(base_model, where, ratio=hp...)``,
    compiled. Each trial gets its own copy of ``base_model`` with its weights (the
    retrofit copies every layer), so trials never share or change weights, and the base
    model stays as it was.

    Args:
        base_model: a functional ``keras.Model`` (e.g. a keras.applications ResNet50
            with your classifier), not modified.
        where, pattern, gate_init: as `keras_se.add_squeeze_excite`.
        ratios, squeeze, gate, learning_rate: as `HyperSEResNet` (no ``se_mode``).
        optimizer, loss, metrics, name, tunable: as `HyperSEResNet`.
        **se_kwargs: other `SqueezeExcite` arguments, fixed for every trial.

    Example:
        >>> base = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=5)
        >>> hypermodel = HyperRetrofit(base, where="residual", ratios=(8, 16), gate_init="identity")
        >>> model = hypermodel.build(keras_tuner.HyperParameters())  # doctest: +SKIP
    """

    unsupported = ("se_mode",)

    def __init__(
        self,
        base_model,
        where="residual",
        *,
        pattern=None,
        gate_init=None,
        ratios=ABLATION_RATIOS,
        squeeze=None,
        gate=None,
        learning_rate=None,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=("accuracy",),
        name=None,
        tunable=True,
        **se_kwargs,
    ):
        if not isinstance(base_model, keras.Model):
            raise TypeError(
                f"`base_model` must be a keras.Model. Received: base_model={base_model!r}"
            )
        super().__init__(
            ratios=ratios,
            squeeze=squeeze,
            gate=gate,
            se_mode=None,
            learning_rate=learning_rate,
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            name=name,
            tunable=tunable,
        )
        self.base_model = base_model
        self.where = where
        self.pattern = pattern
        self.gate_init = gate_init
        self.se_kwargs = se_kwargs

    def build_model(self, values, se_kwargs):
        return add_squeeze_excite(
            self.base_model,
            self.where,
            pattern=self.pattern,
            ratio=values["se_ratio"],
            gate_init=self.gate_init,
            **{**self.se_kwargs, **se_kwargs},
        )


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
        >>> type(oracle).__name__, oracle.max_trials, oracle.objective.name
        ('RandomSearchOracle', 3, 'val_accuracy')
        >>> type(make_oracle("hyperband", SearchSpace(ratios=(4, 16)), epochs=9)).__name__
        'HyperbandOracle'
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


def trial_run_dir(project_dir, trial_id):
    """The training run directory of one trial: ``<project>/trial_<id>/run``.

    Example:
        >>> trial_run_dir("runs/tune/tuner", "03")
        'runs/tune/tuner/trial_03/run'
    """
    return os.path.join(project_dir, f"trial_{trial_id}", "run")


def trial_model_path(project_dir, trial_id):
    """The trained model file of one trial: the run directory's own model file.

    The one place that knows where a trial's model lies (`SETuner.save_model`,
    `SETuner.load_model`, `search`'s best model).

    Example (an absolute path):
        >>> import os
        >>> os.path.relpath(trial_model_path("runs/tune/tuner", "03"))
        'runs/tune/tuner/trial_03/run/model.keras'
    """
    from keras_se.rundir import RunDir

    return RunDir(trial_run_dir(project_dir, trial_id)).model_path


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
        _write_hparams(self.project_dir, trial, metrics)
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


def _write_hparams(project_dir, trial, metrics):
    """TensorBoard HParams record of one trial (``<project>/hparams``)."""
    tf = require("tensorflow", feature="keras_se.tuning.search", extra="tune")
    hparams_api = require(
        "tensorboard.plugins.hparams.api", feature="keras_se.tuning.search", extra="tune"
    )

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


def _make_tuner(hypermodel, space, *, out, oracle, max_trials, epochs, seed, verbose):
    return SETuner(
        make_oracle(oracle, space, max_trials=max_trials, epochs=epochs, seed=seed),
        hypermodel=hypermodel,
        directory=out,
        project_name=PROJECT_NAME,
        overwrite=False,
        verbose=verbose,
    )


def _check_searchable_model(model, space):
    """A registry name, or a ``--model`` factory that takes ``se_ratio`` (ratios only)."""
    from keras_se import finetune

    kind, factory = finetune.model_source(model)
    if kind == "registry":
        check_choice("model", model, tuple(models_lib.names()))
    elif kind == "file":
        raise UsageError(
            "`model` must be built anew for each ratio: a registry name or a factory "
            f"package.module:function taking se_ratio, not a saved model file. Received: model={model!r}"
        )
    elif not finetune.factory_accepts_se_ratio(factory):
        raise UsageError(
            f"`model` factory must take an `se_ratio` argument for the search to set it. "
            f"Received: model={model!r}"
        )
    else:
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
    if not _is_distributed_worker():
        settings = {
            "oracle": oracle,
            "max_trials": max_trials,
            "space": space.to_dict(),
            "train": base_config.to_dict(),
        }
        fileio.write_json(os.path.join(out, SEARCH_FILE), settings)
    tuner = _make_tuner(
        SEHyperModel(base_config, space),
        space,
        out=out,
        oracle=oracle,
        max_trials=max_trials,
        epochs=base_config.epochs,
        seed=base_config.seed,
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
        _save_best(tuner, best, out, export=export, verbose=verbose)
    return results


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
    settings_path = os.path.join(out, SEARCH_FILE)
    oracle_path = os.path.join(out, PROJECT_NAME, "oracle.json")
    if not (os.path.isfile(settings_path) and os.path.isfile(oracle_path)):
        raise UsageError(
            f"`out` is not a search directory of keras_se.tuning.search (no {SEARCH_FILE} "
            f"and {PROJECT_NAME}/oracle.json). Received: out={out!r}"
        )
    with open(settings_path) as f:
        settings = json.load(f)
    space = SearchSpace.from_dict(settings["space"], source=settings_path)
    base_config = TrainConfig.from_dict(settings["train"])
    return _make_tuner(
        SEHyperModel(base_config, space),
        space,
        out=out,
        oracle=settings["oracle"],
        max_trials=settings.get("max_trials"),
        epochs=base_config.epochs,
        seed=base_config.seed,
        verbose=0,
    )


def collect_results(oracle, out):
    """One dict per trial of the search in ``out``, best ``val_accuracy`` first.

    Example (an oracle before its first trial has none):
        >>> collect_results(make_oracle("grid", SearchSpace(ratios=(8, 16))), "runs/tune")
        []
        >>> tuner = load_tuner("runs/tune")  # doctest: +SKIP
        >>> best = collect_results(tuner.oracle, "runs/tune")[0]  # doctest: +SKIP
        >>> best["hyperparameters"]  # doctest: +SKIP
        {'se_ratio': 16}
    """
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
                "run_dir": trial_run_dir(os.path.join(out, PROJECT_NAME), trial.trial_id),
                **_learned(trial_run_dir(os.path.join(out, PROJECT_NAME), trial.trial_id)),
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


def _learned(run_dir):
    """Per SE block: labels, class-specificity and mean gate of the run's last excitation analysis."""
    from keras_se.rundir import RunDir

    run = RunDir(run_dir)
    epochs = run.excitation_epochs()
    if not epochs:
        return {}
    with open(run.excitations_path(epochs[-1])) as f:
        blocks = json.load(f)["blocks"]
    return {
        "blocks": [f"SE_{b['stage']}_{b['index']}" for b in blocks],
        "specificity": [b["specificity"] for b in blocks],
        "mean_gate": [round(sum(b["mean"]) / len(b["mean"]), 6) for b in blocks],
    }


def write_results(results, out):
    """``results.json``, ``results.csv`` and the trade-off figure (PNG + SVG) in ``out``.

    Example (rows as `collect_results` returns them):
        >>> import os, tempfile
        >>> results = [
        ...     {"trial_id": "0", "hyperparameters": {"se_ratio": 16}, "best_val_accuracy": 0.9861,
        ...      "final_val_accuracy": 0.9833, "params": 11_260_354, "macs": 36_000_000,
        ...      "time_per_step_s": 0.112, "status": "COMPLETED"},
        ...     {"trial_id": "1", "hyperparameters": {"se_ratio": 4}, "best_val_accuracy": 0.9806,
        ...      "final_val_accuracy": 0.9806, "params": 11_516_226, "macs": 36_300_000,
        ...      "time_per_step_s": 0.118, "status": "COMPLETED"},
        ... ]
        >>> out = tempfile.mkdtemp()
        >>> write_results(results, out)
        >>> sorted(os.listdir(out))
        ['ratio_tradeoff.png', 'ratio_tradeoff.svg', 'results.csv', 'results.json']
    """
    fileio.write_json(os.path.join(out, "results.json"), results)
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
        "specificity",
        "mean_gate",
    ]
    with fileio.atomic_open(os.path.join(out, "results.csv"), newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in results:
            row = {k: r.get(k) for k in fields if k not in hp_names}
            row.update({k: r["hyperparameters"].get(k) for k in hp_names})
            for key in ("specificity", "mean_gate"):  # one value per SE block, in network order
                row[key] = " ".join("nan" if v is None else f"{v:.4f}" for v in r.get(key) or [])
            writer.writerow(row)
    if any(r["status"] == "COMPLETED" for r in results):
        from keras_se.visualize import plot_ratio_tradeoff, plot_specificity_by_ratio

        plot_ratio_tradeoff(results, os.path.join(out, "ratio_tradeoff"))
        if any(r.get("specificity") for r in results):
            plot_specificity_by_ratio(results, os.path.join(out, "specificity_by_ratio"))


def format_table(results):
    """The paper's reduction-ratio table for the terminal.

    Example (rows as `collect_results` returns them):
        >>> results = [
        ...     {"trial_id": "0", "hyperparameters": {"se_ratio": 16}, "best_val_accuracy": 0.9861,
        ...      "final_val_accuracy": 0.9833, "params": 11_260_354, "macs": 36_000_000,
        ...      "time_per_step_s": 0.112, "status": "COMPLETED"},
        ...     {"trial_id": "1", "hyperparameters": {"se_ratio": 4}, "best_val_accuracy": 0.9806,
        ...      "final_val_accuracy": 0.9806, "params": 11_516_226, "macs": 36_300_000,
        ...      "time_per_step_s": 0.118, "status": "COMPLETED"},
        ... ]
        >>> print(format_table(results))
         trial hyperparameters                           val_acc       params   GMACs  s/step  status
             0 se_ratio=16                                0.9861   11,260,354   0.036   0.112  COMPLETED
             1 se_ratio=4                                 0.9806   11,516,226   0.036   0.118  COMPLETED
    """
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


def _save_best(tuner, best, out, *, export, verbose):
    """``best_model.keras`` (and its preprocessing sidecar) and, with ``export``, a SavedModel."""
    import shutil

    from keras_se import data as data_lib

    source = trial_model_path(tuner.project_dir, best["trial_id"])
    target = os.path.join(out, "best_model.keras")
    with fileio.atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
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
