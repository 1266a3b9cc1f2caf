"""Reference ImageNet weights (the authors' models, ported to PyTorch): files and key mapping.

Hu et al. (2018) released their trained SE-ResNet/SE-ResNeXt models (Table 2, "released
retrained models") in Caffe; Cadene's pretrainedmodels ported them to PyTorch and timm keeps
them as ``legacy_seresnet*``/``legacy_seresnext*``. timm's own ``seresnet50``/``seresnext*``
are retrained with the stride in the 3x3 conv and torchvision's padded stem pool. keras_se
builds the same graphs (``stride_in_1x1``, ``stem_pool``), so every tensor maps by name:

===============================  ==============================  =========================
timm key (legacy / timm)         keras_se layer                  tensor transform
===============================  ==============================  =========================
``layer0.conv1`` / ``conv1``     ``conv1_conv``                  OIHW → HWIO
``layer0.bn1`` / ``bn1``         ``conv1_bn``                    weight, bias, running_*
``layer0.convK`` / ``bnK``       ``conv1_K_conv`` / ``_bn``      SENet-154's 3-conv stem
``layerS.i.convK`` / ``bnK``     ``conv{S+1}_block{i+1}_K_*``    as above (grouped too)
``layerS.0.downsample.0`` / .1   ``conv{S+1}_block1_0_*``        as above
``…se_module`` / ``…se`` fc1/2   ``conv{S+1}_block{i+1}_se``     (o, i, 1, 1) → (i, o)
``last_linear`` / ``fc``         ``predictions``                 (o, i) → (i, o)
===============================  ==============================  =========================

The key table is generated from the model's own layers (`reference_state_dict`), the
layout is detected from the keys, and a load either sets every weight or raises before
changing any. Safetensors files are read with NumPy only; ``.pth``/``.bin`` need PyTorch
(``pip install keras-se[torch]``); downloads go through ``huggingface_hub``
(``pip install keras-se[hub]``) and need network access.

This module maps keys and reads files; it imports only `keras_se.layers` (and Keras,
NumPy). The named sources (``"timm/legacy_seresnet50.in1k"``: which model, which layout,
which preprocessing) sit beside each architecture in ``keras_se/models/`` and are
resolved by `keras_se.models.pretrained`, which builds models and calls this module.

Example:
    >>> from keras_se.models.pretrained import load_reference_model
    >>> model = load_reference_model("timm/legacy_seresnet50.in1k")  # doctest: +SKIP
    >>> model.preprocessing.interpolation                            # doctest: +SKIP
    'bilinear'
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re

import keras
import numpy as np

from keras_se.layers import SqueezeExcite
from keras_se_core.choices import BN_EPSILON
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


# ----------------------------------------------------------------------------- files
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


# ----------------------------------------------------------------------------- mapping
# conv1_conv (7x7 stem) or conv1_{1,2,3}_conv (SENet-154's three 3x3 convs).
_STEM = re.compile(r"^conv1(?:_(?P<part>[1-3]))?_(?P<kind>conv|bn)$")
_UNIT = re.compile(r"^conv(?P<stage>[2-5])_block(?P<index>\d+)_(?P<part>[0-3])_(?P<kind>conv|bn)$")
_SE = re.compile(r"^conv(?P<stage>[2-5])_block(?P<index>\d+)_se$")
_CLASSIFIER = {"legacy": "last_linear", "timm": "fc"}


def _torch_prefix(layer_name, layout):
    """timm's module path for a keras_se layer name, or None when it has no twin."""
    legacy = layout == "legacy"
    if match := _STEM.match(layer_name):
        part = match["part"] or "1"
        return ("layer0." if legacy else "") + match["kind"] + part
    if match := _UNIT.match(layer_name):
        unit = f"layer{int(match['stage']) - 1}.{int(match['index']) - 1}."
        if match["part"] == "0":  # the projection shortcut: Sequential(conv, bn)
            return unit + ("downsample.0" if match["kind"] == "conv" else "downsample.1")
        return unit + match["kind"] + match["part"]
    if match := _SE.match(layer_name):
        unit = f"layer{int(match['stage']) - 1}.{int(match['index']) - 1}."
        return unit + ("se_module" if legacy else "se")
    if layer_name == "predictions":
        return _CLASSIFIER[layout]
    return None


def _conv_to_keras(w):  # (O, I/g, kh, kw) -> (kh, kw, I/g, O)
    return np.transpose(w, (2, 3, 1, 0))


def _conv_to_torch(k):
    return np.transpose(k, (3, 2, 0, 1))


def _fc1x1_to_keras(w):  # 1x1 conv (O, I, 1, 1) -> matmul kernel (I, O)
    return w.reshape(w.shape[0], w.shape[1]).T


def _fc1x1_to_torch(k):
    return k.T[:, :, None, None]


def _identity(x):
    return x


@dataclasses.dataclass(frozen=True)
class _Tensor:
    key: str
    variable: object  # keras.Variable
    to_keras: object
    to_torch: object
    layer: str = ""  # the keras_se layer the variable belongs to

    def torch_shape(self):
        return self.to_torch(np.zeros(self.variable.shape, "float32")).shape


def _batchnorm_tensors(layer, prefix):
    slots = (
        ("weight", layer.gamma),
        ("bias", layer.beta),
        ("running_mean", layer.moving_mean),
        ("running_var", layer.moving_variance),
    )
    return [_Tensor(f"{prefix}.{k}", v, _identity, _identity) for k, v in slots]


def _se_tensors(layer, prefix):
    out = [_Tensor(f"{prefix}.fc1.weight", layer.reduce_kernel, _fc1x1_to_keras, _fc1x1_to_torch)]
    if layer.use_bias:
        out.append(_Tensor(f"{prefix}.fc1.bias", layer.reduce_bias, _identity, _identity))
    out.append(
        _Tensor(f"{prefix}.fc2.weight", layer.expand_kernel, _fc1x1_to_keras, _fc1x1_to_torch)
    )
    if layer.use_bias:
        out.append(_Tensor(f"{prefix}.fc2.bias", layer.expand_bias, _identity, _identity))
    return out


def _layer_tensors(layer, prefix):
    """(timm key, Keras variable, transforms) for each weight of one layer."""
    if isinstance(layer, keras.layers.Conv2D):
        out = [_Tensor(f"{prefix}.weight", layer.kernel, _conv_to_keras, _conv_to_torch)]
        if layer.use_bias:
            out.append(_Tensor(f"{prefix}.bias", layer.bias, _identity, _identity))
        return out
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batchnorm_tensors(layer, prefix)
    if isinstance(layer, SqueezeExcite):
        return _se_tensors(layer, prefix)
    if isinstance(layer, keras.layers.Dense):
        out = [_Tensor(f"{prefix}.weight", layer.kernel, np.transpose, np.transpose)]
        if layer.use_bias:
            out.append(_Tensor(f"{prefix}.bias", layer.bias, _identity, _identity))
        return out
    raise UsageError(f"No reference mapping for layer {layer.name!r} ({type(layer).__name__}).")


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def model_layout(model):
    """The layout a keras_se ResNet matches: ``"timm"`` with the padded stem pool, else legacy.

    Example:
        >>> from keras_se import models
        >>> model_layout(models.get("se_resnet18", input_shape=(64, 64, 3), classes=3))
        'legacy'
        >>> model_layout(models.get("se_resnet18", input_shape=(64, 64, 3), classes=3,
        ...                         **layout_architecture("timm")))
        'timm'
    """
    return "timm" if _layer(model, "pool1_pad") is not None else "legacy"


def _check_architecture(model, layout):
    """Raises a ValueError when ``model`` does not compute what ``layout``'s weights expect."""
    conv1 = _layer(model, "conv1_conv")
    deep_stem = _layer(model, "conv1_3_conv") is not None
    if conv1 is None and not deep_stem:
        raise UsageError(
            f"Reference weights fit keras_se ResNet/ResNeXt models only; model {model.name!r} "
            "has no 'conv1_conv' layer."
        )
    if deep_stem and layout != "legacy":
        raise UsageError(
            "The 3-conv stem (SENet-154) exists in the legacy layout only (timm legacy_senet154)."
        )
    if not deep_stem and tuple(conv1.kernel_size) != (7, 7):
        raise UsageError(
            "Reference ImageNet weights need the ImageNet stem (7x7 conv); the model has the "
            "CIFAR stem: build it with stem='imagenet' (or an input of at least 64x64)."
        )
    first = _layer(model, "conv3_block1_1_conv")
    bottleneck = _layer(model, "conv3_block1_3_conv") is not None
    groups = _layer(model, "conv3_block1_2_conv").groups if bottleneck else 1
    expected = layout_architecture(layout, groups=groups)
    actual = {"stem_pool": "torch" if model_layout(model) == "timm" else "caffe"}
    if bottleneck:
        actual["stride_in_1x1"] = tuple(first.strides) == (2, 2)
    for option, value in actual.items():
        if value != expected[option]:
            raise UsageError(
                f"{layout!r}-layout weights need a model built with {option}="
                f"{expected[option]!r}; this one has {option}={value!r}. Build it with "
                f"{option}={expected[option]!r} (the builders do when given the weights)."
            )
    se_layers = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    if se_layers and not bottleneck and layout == "timm":
        raise UsageError(
            "timm's non-legacy basic-block SE-ResNets (seresnet18/34) have no ReLU before their "
            "SE block and 8-unit SE layers; keras_se builds the legacy (Caffe) ones: use "
            "legacy_seresnet18/34 weights."
        )
    for layer in se_layers:
        config = layer.get_config()
        part = "3_bn" if bottleneck else "2_relu"
        source = _layer(model, f"{layer.name[: -len('_se')]}_{part}")
        if source is None or layer.feature_input is not source.output:
            raise UsageError(
                f"Reference weights need se_mode='standard' (SE after the last BN of the "
                f"residual branch); layer {layer.name!r} is elsewhere."
            )
        if (config["squeeze"], config["activation"], config["gate"]) != ("avg", "relu", "sigmoid"):
            raise UsageError(
                "Reference weights need the paper's SE block (squeeze='avg', activation='relu', "
                f"gate='sigmoid'). Received for {layer.name!r}: squeeze={config['squeeze']!r}, "
                f"activation={config['activation']!r}, gate={config['gate']!r}"
            )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and not np.isclose(
            layer.epsilon, BN_EPSILON, rtol=0, atol=1e-9
        ):
            raise UsageError(
                f"Reference weights need BatchNorm epsilon={BN_EPSILON} (PyTorch); layer "
                f"{layer.name!r} has epsilon={layer.epsilon}."
            )


def _model_tensors(model, layout):
    """Every weight of ``model`` as a `_Tensor` under its timm key (architecture checked)."""
    _check_architecture(model, layout)
    tensors, unmapped = [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = _torch_prefix(layer.name, layout)
        if prefix is None:
            unmapped.append(layer.name)
            continue
        tensors.extend(
            dataclasses.replace(t, layer=layer.name) for t in _layer_tensors(layer, prefix)
        )
    if unmapped:
        raise UsageError(
            f"Layers without a reference twin: {', '.join(unmapped[:8])}"
            f"{' ...' if len(unmapped) > 8 else ''}. Reference weights fit the plain keras_se "
            "ResNet/ResNeXt graph only."
        )
    return tensors


def _listing(keys, limit=8):
    keys = sorted(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclasses.dataclass(frozen=True)
class ReferenceLoad:
    """What `assign_reference_weights` did.

    Attributes:
        loaded: names of the model's layers whose weights were set, in network order.
        skipped: layers left as they were (``("predictions",)`` when the classifier's
            class count differs and ``skip_mismatched_head`` was set), else ``()``.
        source_classes: the file's classifier classes, or None without a classifier.
        layout: ``"legacy"`` or ``"timm"``.

    Example:
        >>> report = assign_reference_weights(model, "w.safetensors")  # doctest: +SKIP
        >>> report.skipped, report.layout                              # doctest: +SKIP
        ((), 'legacy')
    """

    loaded: tuple
    skipped: tuple
    source_classes: int | None
    layout: str


def assign_reference_weights(model, path, *, source=None, hint="", skip_mismatched_head=False):
    """`load_reference_weights`, returning a `ReferenceLoad` report instead of the model.

    With ``skip_mismatched_head``, a classifier whose class count differs from the
    model's ``predictions`` layer is left out (the layer keeps its fresh weights) and
    every other weight must still fit, all or nothing.

    Example:
        >>> from keras_se import models
        >>> model = models.SEResNet50(classes=5)
        >>> assign_reference_weights(model, "in1k.safetensors", skip_mismatched_head=True).skipped  # doctest: +SKIP
        ('predictions',)
    """
    source = path if source is None else source
    state = read_state_dict(path)
    layout = detect_layout(state)
    tensors = _model_tensors(model, layout)
    classifier = _CLASSIFIER[layout]
    file_weight = state.get(f"{classifier}.weight")
    source_classes = int(file_weight.shape[0]) if file_weight is not None else None

    head = _layer(model, "predictions")
    ignored = {k for k in state if k.endswith(".num_batches_tracked")}
    if head is None:
        ignored |= {k for k in state if k.split(".")[0] == classifier}
    skipped = ()
    if (
        skip_mismatched_head
        and head is not None
        and file_weight is not None
        and tuple(np.transpose(file_weight).shape) != tuple(head.kernel.shape)
    ):
        ignored |= {k for k in state if k.split(".")[0] == classifier}
        tensors = [t for t in tensors if t.layer != head.name]
        skipped = (head.name,)
    expected = {t.key for t in tensors}
    missing = expected - set(state)
    unused = set(state) - expected - ignored
    values, mismatched, first = [], [], None
    for t in tensors:
        if t.key not in state:
            first = first or f"{t.layer} (no {t.key} in the file)"
            continue
        try:
            value = t.to_keras(state[t.key])
        except ValueError:  # wrong rank for the transpose/reshape
            value = None
        if value is None or tuple(value.shape) != tuple(t.variable.shape):
            found = tuple(state[t.key].shape)
            mismatched.append(f"{t.key} {found} vs {t.torch_shape()}")
            first = first or (
                f"{t.layer} ({t.key}: the model expects {t.torch_shape()}, the file has {found})"
            )
        values.append((t.variable, value))
    if missing or unused or mismatched:
        problems = [
            f"first mismatched layer: {first}" if first else "",
            f"missing keys: {_listing(missing)}" if missing else "",
            f"unused keys: {_listing(unused)}" if unused else "",
            f"shape mismatch (file vs model): {_listing(mismatched)}" if mismatched else "",
        ]
        top = (
            " (the classifier: use classes=1000 or include_top=False)"
            if any(m.startswith(classifier + ".") for m in mismatched)
            else ""
        )
        raise UsageError(
            f"The {layout!r}-layout state dict does not fit model {model.name!r}{hint}: "
            f"{'; '.join(p for p in problems if p)}{top}. Nothing was loaded. Received: weights={source!r}"
        )
    for variable, value in values:  # all checks passed: no partial load possible
        variable.assign(np.asarray(value, dtype=variable.dtype))
    loaded = tuple(dict.fromkeys(t.layer for t in tensors))
    return ReferenceLoad(loaded, skipped, source_classes, layout)


def load_reference_weights(model, path, *, source=None, hint="", skip_mismatched_head=False):
    """Loads a timm/Caffe-port state dict file into a keras_se ResNet/ResNeXt, all or nothing.

    Every model weight must find its key (with the right shape) and every key of the
    file must be used; otherwise a ValueError names the first mismatched layer, lists
    the missing, unused and mismatched keys and no weight is changed. The classifier
    keys are skipped when the model has no top (``include_top=False``), or, with
    ``skip_mismatched_head``, when their class count differs from the model's;
    BatchNorm ``num_batches_tracked`` counters are ignored. The model's BatchNorm
    epsilon (1e-5), stride placement and stem pool are checked against the layout.
    Named sources (downloads) and the preprocessing that goes with them:
    `keras_se.models.pretrained.load_reference_weights`; every kind of weights with a
    report: `keras_se.models.load_weights`.

    Args:
        model: a keras_se ResNet/ResNeXt (``keras_se.models``).
        path: a ``.safetensors``/``.pth``/``.bin`` state dict in timm's key layout
            (legacy or not, detected).
        source: what the user named (a named source), echoed in errors; default ``path``.
        hint: text added after the model name in errors (``" (weights for se_resnet50)"``).
        skip_mismatched_head: leave a classifier of another class count fresh instead
            of refusing the file.

    Returns:
        ``model``.

    Example:
        >>> from keras_se import models
        >>> model = models.SEResNet50()
        >>> load_reference_weights(model, "se_resnet50.safetensors")  # doctest: +SKIP
    """
    assign_reference_weights(
        model, path, source=source, hint=hint, skip_mismatched_head=skip_mismatched_head
    )
    return model


def reference_state_dict(model, *, layout=None):
    """The model's weights as a timm state dict ``{key: numpy array}`` (PyTorch layout).

    Args:
        model: a keras_se ResNet/ResNeXt.
        layout: ``"legacy"`` or ``"timm"``; default from the model's stem pool.

    Returns:
        A dict in timm's key layout, BatchNorm ``num_batches_tracked`` included (0).

    Example (an ImageNet stem needs an input of at least 64x64):
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(64, 64, 3), classes=3)
        >>> state = reference_state_dict(model)
        >>> state["layer0.conv1.weight"].shape, state["last_linear.weight"].shape
        ((64, 3, 7, 7), (3, 512))
    """
    layout = layout or model_layout(model)
    out = {}
    for t in _model_tensors(model, layout):
        out[t.key] = np.ascontiguousarray(t.to_torch(keras.ops.convert_to_numpy(t.variable)))
        if t.key.endswith(".running_var"):
            out[t.key[: -len("running_var")] + "num_batches_tracked"] = np.zeros((), "int64")
    return out


def save_reference_weights(model, path, *, layout=None):
    """Writes the model's weights as a timm-layout ``.safetensors`` file.

    The file loads into the timm model (``model.load_state_dict(safetensors.torch.load_file(path))``)
    and back with `load_reference_weights`.

    Args:
        model: a keras_se ResNet/ResNeXt.
        path: output ``.safetensors`` path.
        layout: ``"legacy"`` or ``"timm"``; default from the model's stem pool.

    Returns:
        ``path``.

    Example:
        >>> from keras_se import models
        >>> save_reference_weights(models.SEResNet18(), "se_resnet18.safetensors")  # doctest: +SKIP
        'se_resnet18.safetensors'
    """
    from safetensors.numpy import save_file

    path = os.fspath(path)
    if not path.endswith(".safetensors"):
        raise UsageError(f"`path` must end with .safetensors. Received: path={path!r}")
    save_file(reference_state_dict(model, layout=layout), path, metadata={"format": "pt"})
    return path
