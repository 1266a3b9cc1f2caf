"""Importing an optional dependency, or saying which pip extra installs it.

``pip install keras-se`` installs what the layer, the model builders, retrofitting,
`keras_se.utils.model_stats` and the weight files need (Keras, NumPy, safetensors);
training, tuning, serving and figures need the extras listed in ``setup.cfg``
(``[train]``, ``[tune]``, ``[serve]``, ``[analysis]``, ``[all]``).

Example:
    >>> require("json", feature="reading results", extra="train").__name__
    'json'
"""

from __future__ import annotations

import importlib

from keras_se_core.errors import MissingExtraError


def require(module, *, feature, extra):
    """Imports ``module``; `MissingExtraError` naming ``extra`` when it is not installed.

    Only a missing ``module`` (or a missing parent package of it) is turned into
    `MissingExtraError`; any other ImportError inside an installed package keeps its
    traceback (a broken install is not a missing extra).

    Args:
        module: the dotted module name, e.g. ``"keras_tuner"``.
        feature: what needs it, for the message (e.g. ``"keras_se.tuning"``).
        extra: the pip extra that installs it (e.g. ``"tune"``).

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        parts = module.split(".")
        parents = {".".join(parts[: i + 1]) for i in range(len(parts))}
        if err.name not in parents:
            raise
        raise MissingExtraError(feature, extra, err.name) from err
