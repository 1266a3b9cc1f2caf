"""The keras-tuner hypermodels of the reduction-ratio study (Hu et al., 2018, Section 6.1, Table 10).

`HyperSEResNet`, `HyperSEInception` and `HyperRetrofit` are ``keras_tuner.HyperModel`` s in
the shape of ``keras_tuner.applications.HyperResNet``: ``build(hp)`` returns a compiled
model for the hyperparameters of a `SearchSpace`, for any tuner, any data and any Keras
backend (they need keras-tuner, not TensorFlow). `trial_model_kwargs` is the one mapping
from a trial's values to a model builder's arguments, shared with ``keras-se tune``.

Example:
    >>> HyperSEResNet("se_resnet20_cifar", input_shape=(16, 16, 3), ratios=(4, 16)).space.size()
    2
"""

from __future__ import annotations

import dataclasses
import json

import keras
import keras_tuner

from keras_se import models as models_lib
from keras_se.retrofit import add_squeeze_excite
from keras_se_core.choices import ABLATION_RATIOS, GATES, SE_MODES, SQUEEZES
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_choice, is_number

#: Kept for callers of earlier versions; the facts live in keras_se_core.choices.
DEFAULT_RATIOS = ABLATION_RATIOS
#: Space dimensions that are `SqueezeExcite` arguments (``se_kwargs`` of a builder).
SE_LAYER_DIMENSIONS = ("squeeze", "gate")


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


# --------------------------------------------------------------------------- trial -> builder
def se_layer_kwargs(values):
    """The `SqueezeExcite` arguments among one trial's values (``squeeze``, ``gate``).

    Example:
        >>> se_layer_kwargs({"se_ratio": 8, "gate": "hard_sigmoid"})
        {'gate': 'hard_sigmoid'}
    """
    return {key: values[key] for key in SE_LAYER_DIMENSIONS if key in values}


def trial_model_kwargs(values, model_kwargs=None):
    """A registry builder's keyword arguments for one trial: the one trial → builder mapping.

    The trial's ``squeeze`` and ``gate`` go into ``se_kwargs`` (over the ones given),
    its ``se_mode`` is the builder's; ``se_ratio`` and ``learning_rate`` are left to the
    caller (a builder argument for the hypermodels, `TrainConfig` fields for
    ``keras-se tune``).

    Args:
        values: ``{hyperparameter: value}`` of the trial (``hp.values``).
        model_kwargs: the fixed builder arguments every trial starts from (not modified).

    Returns:
        A new dict of builder arguments.

    Example:
        >>> trial_model_kwargs({"se_ratio": 8, "squeeze": "max", "se_mode": "post"},
        ...                    {"se_kwargs": {"gate": "hard_sigmoid"}})
        {'se_kwargs': {'gate': 'hard_sigmoid', 'squeeze': 'max'}, 'se_mode': 'post'}
    """
    kwargs = dict(model_kwargs or {})
    se_kwargs = se_layer_kwargs(values)
    if se_kwargs:
        kwargs["se_kwargs"] = {**(kwargs.get("se_kwargs") or {}), **se_kwargs}
    if "se_mode" in values:
        kwargs["se_mode"] = values["se_mode"]
    return kwargs


# --------------------------------------------------------------------------- hypermodels
def _build_compiled_metrics(model):
    """Creates the compiled loss's and metrics' variables now, from one all-zero prediction
    and integer label (the default loss's labels; one output), and resets them.

    Keras's TensorFlow backend creates them inside the first traced train step when there is
    no distribution strategy, and a `tf.function` that creates variables is traced twice: a
    CIFAR SE-ResNet-20 trial's first `fit` took 4.7 s with them unbuilt, 2.8 s built (2 idle
    cores). Public methods only: `compute_loss`, `compute_metrics`, `reset_metrics`.
    """
    y_pred = keras.ops.zeros((1, *model.output_shape[1:]))
    y = keras.ops.zeros((1,), "int32")
    model.compute_loss(y=y, y_pred=y_pred)
    model.compute_metrics(None, y, y_pred, None)
    model.reset_metrics()


class _CompiledSEHyperModel(keras_tuner.HyperModel):
    """What the public hypermodels share: the space, and compiling what they build."""

    #: Space dimensions a subclass cannot use (e.g. ``se_mode`` outside SE-ResNets).
    unsupported = ()

    def __init__(self, space, compile_args, *, name, tunable):
        """``space``: a `SearchSpace`; ``compile_args``: ``{optimizer, loss, metrics}``."""
        super().__init__(name=name, tunable=tunable)
        for key in self.unsupported:
            if getattr(space, key) is not None:
                raise UsageError(
                    f"`{key}` cannot be searched with {type(self).__name__}. "
                    f"Received: {key}={getattr(space, key)!r}"
                )
        self.space = space
        self.optimizer = compile_args["optimizer"]
        self.loss = compile_args["loss"]
        self.metrics = list(compile_args["metrics"])

    def build(self, hp):
        values = self.space.declare(hp)
        model = self.build_model(values)
        optimizer = keras.optimizers.get(self.optimizer)
        if "learning_rate" in values:
            optimizer.learning_rate = values["learning_rate"]
        model.compile(optimizer=optimizer, loss=self.loss, metrics=self.metrics)
        # Built now, as `Trainer` does: an optimizer that creates its slot variables inside
        # the first traced train step makes `fit` trace that step twice (on a CPU, 5 of a
        # CIFAR SE-ResNet-20 trial's 10 s before its first step).
        model.optimizer.build(model.trainable_variables)
        if self.loss == "sparse_categorical_crossentropy" and len(model.outputs) == 1:
            _build_compiled_metrics(model)
        return model

    def build_model(self, values):
        """The uncompiled model for one trial's ``{hyperparameter: value}``."""
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
            SearchSpace(
                ratios, squeeze=squeeze, gate=gate, se_mode=se_mode, learning_rate=learning_rate
            ),
            dict(optimizer=optimizer, loss=loss, metrics=metrics),
            name=name,
            tunable=tunable,
        )
        models_lib.registry.check_name(model, argument="model", among=self.model_names())
        self.model = model
        self.input_shape = tuple(input_shape)
        self.classes = classes
        self.model_kwargs = dict(model_kwargs or {})

    @classmethod
    def model_names(cls):
        """The registry names this hypermodel builds: the SE models (the registry's
        `keras_se.models.names` with ``se=True``) of its family.

        Example:
            >>> HyperSEInception.model_names()
            ('se_inception_resnet_v2', 'se_inception_v3')
        """
        inception = cls.family == "inception"
        return tuple(n for n in models_lib.names(se=True) if ("inception" in n) == inception)

    def build_model(self, values):
        kwargs = trial_model_kwargs(values, self.model_kwargs)
        kwargs.update(
            input_shape=self.input_shape, classes=self.classes, se_ratio=values["se_ratio"]
        )
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
        space = SearchSpace(ratios, squeeze=squeeze, gate=gate, learning_rate=learning_rate)
        compile_args = dict(optimizer=optimizer, loss=loss, metrics=metrics)
        super().__init__(space, compile_args, name=name, tunable=tunable)
        self.base_model = base_model
        self.where = where
        self.pattern = pattern
        self.gate_init = gate_init
        self.se_kwargs = se_kwargs

    def build_model(self, values):
        return add_squeeze_excite(
            self.base_model,
            self.where,
            pattern=self.pattern,
            ratio=values["se_ratio"],
            gate_init=self.gate_init,
            **{**self.se_kwargs, **se_layer_kwargs(values)},
        )
