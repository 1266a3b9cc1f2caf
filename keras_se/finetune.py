"""Fine-tuning and bringing your own model: what ``keras-se train`` trains, and what it freezes.

``--model`` names one of three sources (`model_source`):

* a registry name (``se_resnet50``; `keras_se.models.names`),
* a ``.keras`` file: a saved model, continued or fine-tuned (a new classifier when the
  dataset has another class count),
* a factory ``package.module:function`` returning a Keras model for
  ``function(input_shape=..., classes=...)`` (and ``se_ratio=`` when ``--se-ratio`` is
  set); ``keras.applications.ResNet50`` is the factory ``keras.applications:ResNet50``
  called with ``weights=None`` (its ImageNet weights need network: give a file with
  ``--weights``).

Then, in this order: ``--weights`` loads pretrained weights (`keras_se.models.load_weights`:
the backbone loads, the classifier starts fresh when the class counts differ), and
``--retrofit`` inserts SE blocks with identity-initialised gates
(`keras_se.add_squeeze_excite`): a pretrained plain network becomes an SE network that
computes the same function at step 0 (Hu et al., 2018, Sec. 3: SE blocks drop into
existing architectures).

Freezing follows the Keras transfer-learning guide: a layer with ``trainable=False``
trains no weight and a BatchNorm with ``trainable=False`` runs in inference mode.
`freeze_backbone` leaves only the classifier trainable (``--freeze-epochs``);
`freeze_batchnorm` fixes every BatchNorm's statistics and affine parameters
(``--freeze-bn``) while convolutions and SE gates train (also in the trainer's fast twin
of the model, `keras_se.speed.accelerate`, which reads the freezing from these layers).

Example:
    >>> from keras_se import finetune, models
    >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=5)
    >>> n_all = len(model.trainable_weights)
    >>> finetune.freeze_batchnorm(model) > 0
    True
    >>> len(model.trainable_weights) < n_all
    True
"""

from __future__ import annotations

import importlib
import inspect
import os
import zipfile

import keras

from keras_se import layers as se_layers
from keras_se import models
from keras_se_core.choices import DEFAULT_RATIO
from keras_se_core.errors import UsageError

#: The classifier layer of every keras_se builder (and of keras.applications models).
HEAD = "predictions"
#: ``--model keras.applications.X`` is this factory module.
APPLICATIONS = "keras.applications"


# --------------------------------------------------------------------------- --model
def model_source(spec):
    """``("registry" | "file" | "factory", value)`` for a ``--model`` value; checked.

    Raises:
        UsageError: an unknown registry name (close matches named), a ``.keras`` path that
            does not exist or is not a Keras model file, or a factory that cannot be
            imported or is not callable.

    Example:
        >>> model_source("se_resnet18")
        ('registry', 'se_resnet18')
        >>> model_source("keras.applications.ResNet50")[0]
        'factory'
    """
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"`model` must be a non-empty string. Received: model={spec!r}")
    if spec.endswith(".keras") or os.path.exists(spec):
        if not os.path.isfile(spec):
            raise UsageError(f"`model` names a file that does not exist. Received: model={spec!r}")
        if not zipfile.is_zipfile(spec):
            raise UsageError(
                f"`model` is not a Keras model file (.keras archive). Received: model={spec!r}"
            )
        return "file", spec
    if ":" in spec or spec.startswith(APPLICATIONS + "."):
        if ":" in spec:
            module_name, _, attr = spec.partition(":")
        else:  # keras.applications.ResNet50
            module_name, _, attr = spec.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UsageError(
                f"`model` factory module {module_name!r} cannot be imported ({err}). "
                f"Received: model={spec!r}"
            ) from err
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise UsageError(
                f"`model` factory {attr!r} is not a callable of {module_name}. Received: model={spec!r}"
            )
        return "factory", factory
    return "registry", models.registry.check_name(spec, argument="model")


def _call_factory(factory, spec, *, input_shape, classes, se_ratio):
    kwargs = dict(input_shape=input_shape, classes=classes)
    if getattr(factory, "__module__", "").startswith(APPLICATIONS) or spec.startswith(APPLICATIONS):
        kwargs["weights"] = None  # ImageNet weights need network: --weights FILE instead
    if se_ratio is not None:
        kwargs["se_ratio"] = se_ratio
    try:
        model = factory(**kwargs)
    # The factory is the user's own code and may raise anything: a deliberately broad catch,
    # re-raised as one line naming the factory, with the cause chained (`raise ... from err`).
    except Exception as err:  # noqa: BLE001
        raise UsageError(
            f"`model` factory {spec} raised {type(err).__name__}: {' '.join(str(err).split())[:300]} "
            f"(called with {', '.join(f'{k}={v!r}' for k, v in kwargs.items())}). Received: model={spec!r}"
        ) from err
    if not isinstance(model, keras.Model):
        raise UsageError(
            f"`model` factory {spec} returned {type(model).__name__}, not a keras.Model. "
            f"Received: model={spec!r}"
        )
    return model


def classifier(model):
    """The classifier layer: ``predictions`` if there is one, else the last layer with weights.

    Example:
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> classifier(model).name
        'predictions'
    """
    try:
        return model.get_layer(HEAD)
    except ValueError:
        return next((layer for layer in reversed(model.layers) if layer.weights), None)


def _classes_of(model):
    shape = model.outputs[0].shape if getattr(model, "outputs", None) else None
    return None if shape is None else shape[-1]


def with_new_classifier(model, classes):
    """``model`` with its last ``Dense`` replaced by a fresh one of ``classes`` units.

    Same name, activation and dtype policy; every other layer (and weight) is shared.

    Example:
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> new = with_new_classifier(model, 5)
        >>> new.output.shape, new.layers[-1].name, new.layers[1] is model.layers[1]
        ((None, 5), 'predictions', True)
    """
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise UsageError(
            f"`model` {model.name!r} has {_classes_of(model)} outputs, the dataset {classes} classes, "
            f"and its last layer is a {type(head).__name__}, not a Dense classifier that could "
            f"start fresh. Received: classes={classes}"
        )
    config = head.get_config()
    config.update(units=classes)
    new_head = keras.layers.Dense.from_config(config)
    outputs = new_head(head.input)
    return keras.Model(model.inputs, outputs, name=model.name)


def load_model_file(path, *, classes):
    """A saved ``.keras`` model; a fresh classifier when its class count differs (one line).

    Example:
        >>> import os, tempfile
        >>> from keras_se import models
        >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> models.get("se_resnet18", input_shape=(32, 32, 3), classes=3).save(path)
        >>> model = load_model_file(path, classes=10)  # doctest: +ELLIPSIS
        model has 3 classes, dataset has 10: the classifier starts fresh (model='...')
        >>> model.output.shape
        (None, 10)
    """
    try:
        model = keras.models.load_model(path, safe_mode=True)
    except (ValueError, TypeError, OSError, KeyError) as err:
        raise UsageError(
            f"`model` could not be loaded as a Keras model ({' '.join(str(err).split())[:300]}). "
            f"Received: model={path!r}"
        ) from err
    found = _classes_of(model)
    if found != classes:
        model = with_new_classifier(model, classes)
        print(
            f"model has {found} classes, dataset has {classes}: the classifier starts fresh "
            f"(model={path!r})"
        )
    return model


def build(config, info, *, verbose=1):
    """The model ``config`` trains on the dataset ``info``: source, weights, retrofit.

    Returns:
        ``(model, preprocessing)``: the model and the `Preprocessing` of its weights
        (None when the weights carry none, or no weights were given).

    Example:
        >>> from keras_se.data import describe_dataset
        >>> from keras_se.training import TrainConfig
        >>> info, _ = describe_dataset("digits", image_size=32)
        >>> model, preprocessing = build(TrainConfig(model="se_resnet18"), info)
        >>> model.output.shape, preprocessing
        ((None, 10), None)
    """
    kind, value = model_source(config.model)
    shape, classes = tuple(info.image_shape), info.num_classes
    if kind == "registry":
        kwargs = dict(config.model_kwargs, input_shape=shape, classes=classes)
        if config.se_ratio is not None:
            kwargs["se_ratio"] = config.se_ratio
        model = models.get(value, **kwargs)
    elif kind == "file":
        model = load_model_file(value, classes=classes)
    else:
        model = _call_factory(
            value, config.model, input_shape=shape, classes=classes, se_ratio=config.se_ratio
        )
    preprocessing = None
    if config.weights:
        try:
            loaded = models.load_weights(model, config.weights)
        except ValueError as err:
            raise UsageError(" ".join(str(err).split())) from err
        preprocessing = loaded.preprocessing
        if verbose:
            print(
                f"Loaded {len(loaded.loaded)} layers from {loaded.source}"
                + (f"; {loaded.message}" if loaded.message else "")
            )
    if config.retrofit:
        model = retrofit(model, ratio=config.se_ratio)
    return model, preprocessing


def se_layers_of(model):
    """The SE layers (every `keras_se.layers.SEGate`) of ``model``, nested too.

    Example (SE-ResNet-18: one SE block per residual block, 2 + 2 + 2 + 2):
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> len(se_layers_of(model))
        8
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, se_layers.SEGate):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(se_layers_of(layer))
    return found


def retrofit(model, *, ratio=None):
    """``add_squeeze_excite(model, "residual", gate_init="identity")`` with one-line errors.

    Example (the gates start at 0.9999: the retrofitted model computes nearly the same):
        >>> import numpy as np
        >>> from keras_se import models
        >>> plain = models.get("resnet18", input_shape=(32, 32, 3), classes=3)
        >>> se = retrofit(plain)
        >>> len(se_layers_of(plain)), len(se_layers_of(se))
        (0, 8)
        >>> x = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype("float32")
        >>> np.allclose(plain(x), se(x), atol=1e-3)
        True
    """
    from keras_se.retrofit import add_squeeze_excite

    if se_layers_of(model):
        raise UsageError(
            f"`retrofit` adds SE blocks, and {model.name!r} already has "
            f"{len(se_layers_of(model))}; train it without --retrofit. Received: retrofit=True"
        )
    try:
        return add_squeeze_excite(
            model, "residual", gate_init="identity", ratio=DEFAULT_RATIO if ratio is None else ratio
        )
    except (TypeError, ValueError) as err:
        raise UsageError(
            f"`retrofit` cannot add SE blocks to {model.name!r}: {' '.join(str(err).split())[:300]}"
        ) from err


# --------------------------------------------------------------------------- freezing
def batchnorm_layers(model):
    """Every BatchNorm layer of ``model`` (nested models included), by layer type.

    Example (SE-ResNet-18: the stem's, two per basic block and three projections'):
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> len(batchnorm_layers(model))
        20
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batchnorm_layers(layer))
    return found


def freeze_batchnorm(model):
    """Fixes every BatchNorm's statistics and affine parameters; returns how many.

    Each gets ``trainable=False``: inference mode, gamma and beta frozen. The SE gates
    after them still train.

    Example:
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> freeze_batchnorm(model)
        20
        >>> all(not layer.trainable for layer in batchnorm_layers(model))
        True
    """
    found = batchnorm_layers(model)
    for layer in found:
        layer.trainable = False
    return len(found)


def freeze_backbone(model, *, trainable):
    """``trainable=False``: only the classifier trains (every other layer frozen, its
    BatchNorm layers in inference mode); ``True`` makes every layer trainable again.

    Example:
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> freeze_backbone(model, trainable=False)
        >>> [w.path for w in model.trainable_weights]
        ['predictions/kernel', 'predictions/bias']
        >>> freeze_backbone(model, trainable=True)
        >>> len(model.trainable_weights) > 2
        True
    """
    head = classifier(model)
    for layer in model.layers:
        if layer is not head:
            layer.trainable = trainable


def check_needs(config, model):
    """Refuses settings the model cannot honour (one line each).

    Example:
        >>> import keras
        >>> from keras_se.training import TrainConfig
        >>> mlp = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="mlp")
        >>> check_needs(TrainConfig(freeze_bn=True), mlp)
        Traceback (most recent call last):
        keras_se_core.errors.UsageError: `freeze_bn` freezes BatchNorm layers and 'mlp' has none. Received: freeze_bn=True
    """
    if config.freeze_bn and not batchnorm_layers(model):
        raise UsageError(
            f"`freeze_bn` freezes BatchNorm layers and {model.name!r} has none. Received: freeze_bn=True"
        )
    if config.log_excitations and not se_layers_of(model):
        raise UsageError(
            f"`log_excitations` analyses SE layers and {model.name!r} has none (add them with "
            f"--retrofit). Received: log_excitations={config.log_excitations}"
        )


def factory_accepts_se_ratio(factory):
    """Whether a ``--model`` factory takes ``se_ratio`` (needed by ``keras-se tune``).

    Example:
        >>> import keras
        >>> from keras_se import models
        >>> factory_accepts_se_ratio(models.builder("se_resnet18"))
        True
        >>> factory_accepts_se_ratio(keras.applications.ResNet50)
        False
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "se_ratio" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
