"""``keras-se info``: versions, Keras backend, devices and what keras_se registers."""

from __future__ import annotations

import importlib
import platform


def _version(module):
    try:
        imported = importlib.import_module(module)
    except ImportError:  # an optional package that is absent (a broken one shows its traceback)
        return "not installed"
    return getattr(imported, "__version__", "unknown")


def collect_info(*, devices=True):
    """A dict of versions, the Keras backend, devices, and registered models/layers.

    What ``keras-se info`` prints (`format_info`).

    Args:
        devices: also list the backend's devices (imports TensorFlow on its backend).

    Returns:
        A dict: ``keras_se``, ``python``, ``keras``, ``backend``, ``image_data_format``, the
        versions of the optional packages (None when not installed), ``models`` (registry
        names), ``layers`` (registered keras_se layer classes) and ``devices``.

    Example:
        >>> info = collect_info(devices=False)
        >>> "se_resnet50" in info["models"], "keras_se>SqueezeExcite" in info["layers"]
        (True, True)
    """
    import keras

    import keras_se
    from keras_se import models

    out = {
        "keras_se": keras_se.__version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "image_data_format": keras.config.image_data_format(),
        "tensorflow": _version("tensorflow"),
        "jax": _version("jax"),
        "keras_tuner": _version("keras_tuner"),
        "tensorflow_datasets": _version("tensorflow_datasets"),
        "models": models.names(),
        "layers": sorted(
            name for name in keras.saving.get_custom_objects() if name.startswith("keras_se>")
        ),
    }
    if devices:
        out["devices"] = _devices(out["backend"])
    return out


def _devices(backend):
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    if backend == "torch":
        import torch

        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices()]


def format_info(info):
    """The `collect_info` dict as aligned ``key: value`` lines (lists joined with commas).

    Args:
        info: a dict such as `collect_info` returns.

    Returns:
        A string, one line per key.

    Example:
        >>> print(format_info({"backend": "jax", "models": ["se_resnet18", "se_resnet50"]}))
                     backend: jax
                      models: se_resnet18, se_resnet50
    """
    lines = []
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "(none)"
        lines.append(f"{key:>20}: {value}")
    return "\n".join(lines)
