"""Model registry: snake-case names → builders (timm-style), for the CLI, tuner and tests.

Example:
    >>> from keras_se import models
    >>> "se_resnet50" in models.names()
    True
    >>> model = models.get("se_resnet18", input_shape=(32, 32, 3), classes=10)
"""

from __future__ import annotations

import difflib

from keras_se_core.errors import UsageError

_REGISTRY = {}


def register(name, builder):
    """Registers ``builder`` under ``name``; a name can be registered only once.

    Registering the same builder again is a no-op; another builder under a taken name
    is refused.

    Example:
        >>> register("se_resnet18", builder("se_resnet18")) is builder("se_resnet18")
        True
        >>> register("se_resnet18", lambda **kwargs: None)
        Traceback (most recent call last):
        ValueError: Model name already registered: name='se_resnet18'
        >>> def my_net(*, input_shape=(32, 32, 3), classes=10):  # doctest: +SKIP
        ...     ...
        >>> register("my_net", my_net)  # doctest: +SKIP
    """
    if name in _REGISTRY and _REGISTRY[name] is not builder:
        raise ValueError(f"Model name already registered: name={name!r}")
    _REGISTRY[name] = builder
    return builder


def is_se(name):
    """Whether the registered model ``name`` has SE blocks by default.

    A builder says so with its ``se`` attribute (``senet154`` has no ``se_`` prefix);
    otherwise the ``se_`` prefix decides.
    """
    return getattr(builder(name), "se", str(name).startswith("se_"))


def names(*, se=None):
    """Sorted registered names; ``se=True``/``False`` keeps only SE/plain models.

    Example:
        >>> names()[:3]
        ['inception_resnet_v2', 'inception_v3', 'resnet101']
        >>> "senet154" in names(se=True), "resnet50" in names(se=False)
        (True, True)
    """
    out = sorted(_REGISTRY)
    if se is not None:
        out = [n for n in out if is_se(n) == se]
    return out


def builder(name):
    """The builder function registered under ``name``.

    Example:
        >>> builder("se_resnet50").__name__
        'SEResNet50'
        >>> builder("se_resnet5")
        Traceback (most recent call last):
        keras_se_core.errors.UsageError: Unknown model name. Did you mean: ...
    """
    return _REGISTRY[check_name(name)]


def check_name(name, *, argument="name", among=None):
    """``name`` if it is a registered model name (of ``among``, when given); the one check.

    Every caller that takes a registry name (`builder`, ``keras-se train --model``,
    the tuner's hypermodels) checks it here, so the message is the same everywhere.

    Args:
        name: the value to check.
        argument: the argument to name in the error (``"model"`` for ``--model``).
        among: the registered names this caller accepts (e.g. ``names(se=True)``);
            default: all of them.

    Returns:
        ``name``.

    Raises:
        UsageError: an unknown name (with the close matches), or a registered name
            outside ``among``.

    Example:
        >>> check_name("se_resnet18", argument="model")
        'se_resnet18'
        >>> check_name("se_resnet5O", argument="model")
        Traceback (most recent call last):
        keras_se_core.errors.UsageError: Unknown model name. Did you mean: se_resnet50, ...
        >>> check_name("resnet18", argument="model", among=names(se=True))
        Traceback (most recent call last):
        keras_se_core.errors.UsageError: `model` must be one of (...). Received: model='resnet18'
    """
    known = names() if among is None else tuple(among)
    if name in known:
        return name
    if name in _REGISTRY:  # registered, but not a model this caller can use
        raise UsageError(
            f"`{argument}` must be one of {tuple(known)}. Received: {argument}={name!r}"
        )
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UsageError(
        f"Unknown model name.{hint} Known models: {', '.join(known)}. Received: {argument}={name!r}"
    )


def get(name, **kwargs):
    """Builds the registered model ``name`` with keyword arguments for its builder.

    Example:
        >>> model = get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> model.name, model.output_shape
        ('se_resnet18', (None, 3))
    """
    return builder(name)(**kwargs)
