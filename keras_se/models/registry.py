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
    """Registers ``builder`` under ``name``; a name can be registered only once."""
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
    """Sorted registered names; ``se=True``/``False`` keeps only SE/plain models."""
    out = sorted(_REGISTRY)
    if se is not None:
        out = [n for n in out if is_se(n) == se]
    return out


def builder(name):
    """The builder function registered under ``name``."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UsageError(
            f"Unknown model name.{hint} Known models: {', '.join(names())}. Received: name={name!r}"
        )
    return _REGISTRY[name]


def get(name, **kwargs):
    """Builds the registered model ``name`` with keyword arguments for its builder."""
    return builder(name)(**kwargs)
