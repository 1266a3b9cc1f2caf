"""Reading and fetching reference state dicts: timm's files, their key layout, downloads.

`read_state_dict` is the one reader of ``.safetensors`` (NumPy only), ``.pth``/``.pt``/``.bin``
(PyTorch) files: every failure to read is one `UsageError` naming the file, a bug in a reader
keeps its traceback. `detect_layout` tells the legacy (Caffe-port) key layout from timm's,
`file_architecture` what a file needs of the builder, and `download` fetches a named file
from the Hugging Face hub (``pip install keras-se[hub]``) or a URL. `keras_se.weights` maps the
keys onto a model's layers.

Example:
    >>> detect_layout(["layer0.conv1.weight", "last_linear.weight"])
    'legacy'
"""

from __future__ import annotations

import os
import pickle

import keras

from keras_se_core.errors import UsageError

LAYOUTS = ("legacy", "timm")
STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class MissingDependencyError(ImportError):
    """An optional package (PyTorch, huggingface_hub) is needed and not installed.

    An ``ImportError`` whose message names the package and the ``pip install`` line.

    Example:
        >>> issubclass(MissingDependencyError, ImportError)
        True
        >>> download("timm/legacy_seresnet50.in1k")  # doctest: +SKIP
        Traceback (most recent call last):
        keras_se.weights.MissingDependencyError: ...
    """


def layout_architecture(layout, *, groups=1):
    """The builder options a layout needs: ``stride_in_1x1`` and ``stem_pool``.

    Legacy (Caffe) SE-ResNet strides in the first 1x1 conv, legacy SE-ResNeXt
    (``groups > 1``) in the 3x3; timm's non-legacy models always in the 3x3, with
    torchvision's padded stem pool.

    Example:
        >>> layout_architecture("legacy"), layout_architecture("legacy", groups=32)
        ({'stride_in_1x1': True, 'stem_pool': 'caffe'}, {'stride_in_1x1': False, 'stem_pool': 'caffe'})
        >>> layout_architecture("timm")
        {'stride_in_1x1': False, 'stem_pool': 'torch'}
    """
    if layout == "legacy":
        return {"stride_in_1x1": groups == 1, "stem_pool": "caffe"}
    if layout == "timm":
        return {"stride_in_1x1": False, "stem_pool": "torch"}
    raise UsageError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")


def _one_line(err):
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def _import_torch(what):
    try:
        import torch
    except ImportError as err:
        raise MissingDependencyError(
            f"{what} needs PyTorch: `pip install keras-se[torch]` (or convert the file to "
            ".safetensors, which keras_se reads without PyTorch)."
        ) from err
    return torch


def _check_state_dict_path(path):
    path = os.fspath(path)
    if not path.endswith(STATE_DICT_SUFFIXES):
        raise UsageError(
            f"A reference state dict must be one of {', '.join(STATE_DICT_SUFFIXES)}. "
            f"Received: weights={path!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such weights file. Received: weights={path!r}")
    return path


def _unreadable(path, err, what):
    return UsageError(
        f"Cannot read the weights file {os.path.abspath(path)} as {what} ({_one_line(err)}; "
        f"truncated, or not a {what} file?). Received: weights={path!r}"
    )


def _read_file(path, *, shapes_only=False):
    """The one reader of state dict files: ``{key: array}`` (or ``{key: shape}``).

    Every failure to read (a truncated or corrupt file, a bfloat16 tensor NumPy cannot
    hold, a pickle that is not a state dict) is a `UsageError` naming the file and what
    is wrong; only a missing optional package stays a `MissingDependencyError`.
    """
    path = _check_state_dict_path(path)
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError, safe_open
        from safetensors.numpy import load_file

        try:
            if shapes_only:  # the header only: no tensor data is read
                with safe_open(path, "np") as f:
                    return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
            state = load_file(path)
        # SafetensorError: corrupt header, truncated data; TypeError: a dtype NumPy lacks
        # (bfloat16 where ml_dtypes is not loaded); OSError: the file cannot be opened
        except (SafetensorError, TypeError, OSError) as err:
            raise _unreadable(path, err, "safetensors") from err
    else:
        torch = _import_torch(f"Reading {os.path.basename(path)!r}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        # RuntimeError: a truncated or corrupt zip archive; UnpicklingError: not a pickle, or
        # one that weights_only refuses; EOFError: an empty file; OSError: cannot be opened
        except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
            raise _unreadable(path, err, "PyTorch state dict") from err
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        if not isinstance(state, dict):
            raise UsageError(
                f"The file holds a {type(state).__name__}, not a state dict. Received: weights={path!r}"
            )
        state = {
            key: (value.float() if value.is_floating_point() else value).numpy()
            for key, value in state.items()
            if torch.is_tensor(value)
        }
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    if shapes_only:
        return {key: tuple(value.shape) for key, value in state.items()}
    return {
        key: value.astype("float32") if value.dtype.kind == "f" else value
        for key, value in state.items()
    }


def read_state_dict(path):
    """Reads a PyTorch state dict as ``{key: numpy array}``.

    ``.safetensors`` needs only the ``safetensors`` package (NumPy); ``.pth``/``.pt``/``.bin``
    need PyTorch and are loaded with ``weights_only=True``. A ``"state_dict"``/``"model"``
    wrapper and a ``"module."`` prefix (DataParallel) are removed. A file that cannot be
    read (truncated, corrupt) raises a `UsageError` (a ValueError) naming it.

    Args:
        path: a local file.

    Returns:
        A dict of NumPy arrays (floating tensors as float32).

    Example:
        >>> sd = read_state_dict("legacy_seresnet50.safetensors")  # doctest: +SKIP
        >>> sd["layer0.conv1.weight"].shape                        # doctest: +SKIP
        (64, 3, 7, 7)
    """
    return _read_file(path)


def _read_shapes(path):
    """Key → shape of a state dict file; safetensors headers only (no tensor data)."""
    return _read_file(path, shapes_only=True)


def detect_layout(keys):
    """``"legacy"`` (timm ``senet.py``: ``layer0.conv1``) or ``"timm"`` (``conv1``).

    Example:
        >>> detect_layout(["layer0.conv1.weight", "layer0.bn1.weight"])
        'legacy'
        >>> detect_layout(["conv1.weight", "fc.weight"])
        'timm'
    """
    keys = set(keys)
    if "layer0.conv1.weight" in keys:
        return "legacy"
    if "conv1.weight" in keys:
        return "timm"
    sample = ", ".join(sorted(keys)[:5]) or "no keys"
    raise UsageError(
        "Not a timm SE-ResNet/ResNeXt state dict: it has neither 'layer0.conv1.weight' "
        f"(legacy_se*) nor 'conv1.weight' (seresnet*/seresnext*); first keys: {sample}."
    )


def file_architecture(path):
    """Builder options (``stride_in_1x1``, ``stem_pool``) that the state dict at ``path`` needs.

    The layout is detected from the file's keys (and, for legacy files, the cardinality
    from the first 3x3 conv); only safetensors headers are read. A missing file, a Keras
    file or unknown keys give ``{}`` (the loader then says what is wrong); a file that
    cannot be read raises the reader's `UsageError`, which names it.

    Example:
        >>> file_architecture("se_resnext50.safetensors")  # doctest: +SKIP
        {'stride_in_1x1': False, 'stem_pool': 'caffe'}
    """
    path = os.fspath(path)
    if not (path.endswith(STATE_DICT_SUFFIXES) and os.path.isfile(path)):
        return {}
    shapes = _read_shapes(path)
    try:
        layout = detect_layout(shapes)
    except ValueError:
        return {}  # the loader raises the full message
    conv2 = shapes.get("layer1.0.conv2.weight")
    groups = conv2[0] // conv2[1] if conv2 and conv2[1] else 1
    return layout_architecture(layout, groups=groups)


# ----------------------------------------------------------------------------- hub
def _download_from_hub(repo_id, filename):
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:
        raise MissingDependencyError(
            "downloading from the Hugging Face hub needs `pip install keras-se[hub]`"
        ) from err
    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:  # huggingface_hub < 0.23, whose download errors are all OSErrors
        hub_errors = None
    # Failed downloads are OSErrors (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled,
    # requests' errors), except from huggingface_hub 1.0 httpx's HTTPError and XetDownloadError.
    others = tuple(getattr(hub_errors, name, OSError) for name in ("HTTPError", "XetDownloadError"))
    try:
        return hf_hub_download(repo_id=repo_id, filename=filename)
    except others as err:
        if isinstance(err, OSError):
            raise
        raise ConnectionError(_one_line(err)) from err


def _download_url(url):
    _import_torch("timm's .pth release file")  # check before a 100 MB download
    try:
        return keras.utils.get_file(os.path.basename(url), origin=url, cache_subdir="keras_se")
    except Exception as err:  # noqa: BLE001 - narrowed below
        # keras.utils.get_file turns HTTPError and URLError into a plain Exception; anything
        # else (a subclass) is not a download failure and keeps its traceback.
        if type(err) is not Exception:
            raise
        raise ConnectionError(_one_line(err)) from err


def download(hub_id, *, url=None, label=None):
    """Downloads reference weights (cached) and returns the local file path.

    Tries the Hugging Face hub copy (``hub_id``, ``model.safetensors``) and then
    ``url`` (timm's own ``.pth`` release file, read with PyTorch) where there is one.

    Args:
        hub_id: hub repository, e.g. ``"timm/legacy_seresnet50.in1k"``.
        url: optional fallback release file.
        label: what the user asked for, echoed in errors (default ``hub_id``).

    Raises:
        MissingDependencyError: ``huggingface_hub`` (or PyTorch) is not installed.
        ConnectionError: the download failed (no network access, or no such file).

    Example (needs network the first time, then reads the cache):
        >>> path = download("timm/legacy_seresnet50.in1k")  # doctest: +SKIP
        >>> os.path.basename(path)  # doctest: +SKIP
        'model.safetensors'
    """
    label = hub_id if label is None else label
    attempts = [("hub " + hub_id, lambda: _download_from_hub(hub_id, "model.safetensors"))]
    if url:
        attempts.append(("release file", lambda: _download_url(url)))
    failures, missing_only = [], True
    for where, fetch in attempts:
        try:
            return fetch()
        # ConnectionError/OSError: no network, no such repository or file (see the two fetchers)
        except (OSError, MissingDependencyError) as err:  # report every try
            missing_only = missing_only and isinstance(err, MissingDependencyError)
            failures.append(f"{where}: {_one_line(err)}")
    error = MissingDependencyError if missing_only else ConnectionError
    raise error(
        f"weights={label!r} are downloaded and need network access plus `pip install "
        f"keras-se[hub]` (legacy .pth release files also keras-se[torch]); offline, pass a "
        f"local .safetensors/.pth file instead. Tried: {'; '.join(failures)}"
    )
