"""Reference ImageNet weights (the authors' models, ported to PyTorch) in keras_se models.

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
``layerS.i.convK`` / ``bnK``     ``conv{S+1}_block{i+1}_K_*``    as above (grouped too)
``layerS.0.downsample.0`` / .1   ``conv{S+1}_block1_0_*``        as above
``…se_module`` / ``…se`` fc1/2   ``conv{S+1}_block{i+1}_se``     (o, i, 1, 1) → (i, o)
``last_linear`` / ``fc``         ``predictions``                 (o, i) → (i, o)
===============================  ==============================  =========================

The key table is generated from the model's own layers (`reference_state_dict`), the
layout is detected from the keys, and a load either sets every weight or raises before
changing any. Safetensors files are read with NumPy only; ``.pth``/``.bin`` need PyTorch
(``pip install keras-se[torch]``); named sources download through ``huggingface_hub``
(``pip install keras-se[hub]``) and need network access.

Example:
    >>> from keras_se.weights import load_reference_model
    >>> model = load_reference_model("timm/legacy_seresnet50.in1k")  # doctest: +SKIP
    >>> model.preprocessing.interpolation                            # doctest: +SKIP
    'bilinear'
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras
import numpy as np

from keras_se.data import Preprocessing
from keras_se.layers import BatchNormSqueezeExcite, SqueezeExcite

LAYOUTS = ("legacy", "timm")
STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
#: PyTorch's (and the Caffe ports') BatchNorm epsilon; keras_se.blocks uses the same.
TORCH_BN_EPSILON = 1e-5


class MissingDependencyError(ImportError):
    """An optional package (PyTorch, huggingface_hub) is needed and not installed."""


# ----------------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class ReferenceSource:
    """A named set of reference weights and what a model needs to use them.

    Attributes:
        name: timm's name, ``"legacy_seresnet50.in1k"``; ``"timm/" + name`` is the hub id.
        model: keras_se model name (a registry name, or the name given to `architecture`).
        layout: ``"legacy"`` (timm ``senet.py``) or ``"timm"`` (timm ``resnet.py``).
        preprocessing: the evaluation preprocessing the weights were made for.
        architecture: `build_resnet` arguments for models the registry does not have.
        url: timm's own PyTorch release file, tried when the hub has no copy.
    """

    name: str
    model: str
    layout: str
    preprocessing: Preprocessing
    architecture: dict | None = None
    url: str | None = None

    @property
    def hub_id(self):
        return f"timm/{self.name}"

    def build_options(self):
        """``stride_in_1x1``/``stem_pool`` (plus `architecture`) for the model builder."""
        # Cardinality decides the legacy stride placement (SE-ResNeXt: in the 3x3 conv).
        groups = (self.architecture or {}).get("groups", 32 if "resnext" in self.model else 1)
        return dict(self.architecture or {}, **layout_architecture(self.layout, groups=groups))


_RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download/"


def _pre(size=224, interpolation="bicubic", crop_pct=0.875):
    return Preprocessing(image_size=(size, size), interpolation=interpolation, crop_pct=crop_pct)


def _resnext(depths, groups, base_width, name):
    return dict(
        stackwise_num_blocks=depths, block="bottleneck", groups=groups, base_width=base_width,
        name=name,
    )  # fmt: skip


#: timm's default evaluation preprocessing for ImageNet-1k models (all legacy weights).
DEFAULT_PREPROCESSING = _pre(interpolation="bilinear")

#: Named sources: timm's pretrained tags whose architecture keras_se builds exactly.
#: Preprocessing as in timm's pretrained configs (checked by the opt-in torch test).
SOURCES = {
    s.name: s
    for s in (
        ReferenceSource("legacy_seresnet18.in1k", "se_resnet18", "legacy", _pre(),
                        url=_RELEASES + "v0.1-weights/seresnet18-4bb0ce65.pth"),
        ReferenceSource("legacy_seresnet34.in1k", "se_resnet34", "legacy", DEFAULT_PREPROCESSING,
                        url=_RELEASES + "v0.1-weights/seresnet34-a4004e63.pth"),
        ReferenceSource("legacy_seresnet50.in1k", "se_resnet50", "legacy", DEFAULT_PREPROCESSING,
                        url=_RELEASES + "v0.1-cadene/se_resnet50-ce0d4300.pth"),
        ReferenceSource("legacy_seresnet101.in1k", "se_resnet101", "legacy", DEFAULT_PREPROCESSING,
                        url=_RELEASES + "v0.1-cadene/se_resnet101-7e38fcc6.pth"),
        ReferenceSource("legacy_seresnet152.in1k", "se_resnet152", "legacy", DEFAULT_PREPROCESSING,
                        url=_RELEASES + "v0.1-cadene/se_resnet152-d17c99b7.pth"),
        ReferenceSource("legacy_seresnext26_32x4d.in1k", "se_resnext26_32x4d", "legacy", _pre(),
                        architecture=_resnext((2, 2, 2, 2), 32, 4, "se_resnext26_32x4d"),
                        url=_RELEASES + "v0.1-weights/seresnext26_32x4d-65ebdb501.pth"),
        ReferenceSource("legacy_seresnext50_32x4d.in1k", "se_resnext50_32x4d", "legacy",
                        DEFAULT_PREPROCESSING,
                        url=_RELEASES + "v0.1-weights/legacy_se_resnext50_32x4d-f3651bad.pth"),
        ReferenceSource("legacy_seresnext101_32x4d.in1k", "se_resnext101_32x4d", "legacy",
                        DEFAULT_PREPROCESSING,
                        url=_RELEASES + "v0.1-weights/legacy_se_resnext101_32x4d-37725eac.pth"),
        ReferenceSource("seresnet50.a1_in1k", "se_resnet50", "timm", _pre(crop_pct=0.95)),
        ReferenceSource("seresnet50.a2_in1k", "se_resnet50", "timm", _pre(crop_pct=0.95)),
        ReferenceSource("seresnet50.a3_in1k", "se_resnet50", "timm", _pre(160, crop_pct=0.95)),
        ReferenceSource("seresnet50.ra2_in1k", "se_resnet50", "timm", _pre()),
        ReferenceSource("seresnext50_32x4d.racm_in1k", "se_resnext50_32x4d", "timm", _pre()),
        ReferenceSource("seresnext50_32x4d.gluon_in1k", "se_resnext50_32x4d", "timm", _pre()),
        ReferenceSource("seresnext101_32x4d.gluon_in1k", "se_resnext101_32x4d", "timm", _pre()),
        ReferenceSource("seresnext101_32x8d.ah_in1k", "se_resnext101_32x8d", "timm",
                        _pre(crop_pct=0.95),
                        architecture=_resnext((3, 4, 23, 3), 32, 8, "se_resnext101_32x8d")),
        ReferenceSource("seresnext101_64x4d.gluon_in1k", "se_resnext101_64x4d", "timm", _pre(),
                        architecture=_resnext((3, 4, 23, 3), 64, 4, "se_resnext101_64x4d")),
    )
}  # fmt: skip


def _source_name(value):
    """The `SOURCES` key for ``value`` (``timm/`` prefix and the tag optional), or None."""
    if not isinstance(value, str):
        return None
    name = value[len("timm/") :] if value.startswith("timm/") else value
    if name in SOURCES:
        return name
    tagged = [key for key in SOURCES if key.split(".")[0] == name]
    return tagged[0] if tagged else None  # the first tag is timm's default


def is_named_source(value):
    """True for a known named source such as ``"timm/legacy_seresnet50.in1k"``."""
    return _source_name(value) is not None


def get_source(name):
    """The `ReferenceSource` for ``name``; a ValueError listing the known ones otherwise."""
    key = _source_name(name)
    if key is None:
        raise ValueError(
            f"Unknown reference weights source. Known: {', '.join('timm/' + k for k in SOURCES)}. "
            f"Received: source={name!r}"
        )
    return SOURCES[key]


def layout_architecture(layout, *, groups=1):
    """The builder options a layout needs: ``stride_in_1x1`` and ``stem_pool``.

    Legacy (Caffe) SE-ResNet strides in the first 1x1 conv, legacy SE-ResNeXt
    (``groups > 1``) in the 3x3; timm's non-legacy models always in the 3x3, with
    torchvision's padded stem pool.
    """
    if layout == "legacy":
        return {"stride_in_1x1": groups == 1, "stem_pool": "caffe"}
    if layout == "timm":
        return {"stride_in_1x1": False, "stem_pool": "torch"}
    raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")


def reference_preprocessing(source):
    """The `Preprocessing` a named source was trained for (timm's default for files)."""
    return get_source(source).preprocessing if is_named_source(source) else DEFAULT_PREPROCESSING


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


def read_state_dict(path):
    """Reads a PyTorch state dict as ``{key: numpy array}``.

    ``.safetensors`` needs only the ``safetensors`` package (NumPy); ``.pth``/``.pt``/``.bin``
    need PyTorch and are loaded with ``weights_only=True``. A ``"state_dict"``/``"model"``
    wrapper and a ``"module."`` prefix (DataParallel) are removed.

    Args:
        path: a local file.

    Returns:
        A dict of NumPy arrays (floating tensors as float32).

    Example:
        >>> sd = read_state_dict("legacy_seresnet50.safetensors")  # doctest: +SKIP
        >>> sd["layer0.conv1.weight"].shape                        # doctest: +SKIP
        (64, 3, 7, 7)
    """
    path = os.fspath(path)
    if not path.endswith(STATE_DICT_SUFFIXES):
        raise ValueError(
            f"A reference state dict must be one of {', '.join(STATE_DICT_SUFFIXES)}. "
            f"Received: source={path!r}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such weights file. Received: source={path!r}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:
            state = load_file(path)
        except Exception as err:  # corrupt header, bfloat16 (no NumPy dtype), ...
            raise ValueError(
                f"Cannot read the safetensors file ({_one_line(err)}). Received: source={path!r}"
            ) from err
    else:
        torch = _import_torch(f"Reading {os.path.basename(path)!r}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        if not isinstance(state, dict):
            raise ValueError(
                f"The file holds a {type(state).__name__}, not a state dict. Received: source={path!r}"
            )
        state = {
            key: (value.float() if value.is_floating_point() else value).numpy()
            for key, value in state.items()
            if torch.is_tensor(value)
        }
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return {
        key: value.astype("float32") if value.dtype.kind == "f" else value
        for key, value in state.items()
    }


def _read_shapes(path):
    """Key → shape of a state dict file; safetensors headers only (no tensor data)."""
    if os.fspath(path).endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(os.fspath(path), "np") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    return {key: value.shape for key, value in read_state_dict(path).items()}


def detect_layout(keys):
    """``"legacy"`` (timm ``senet.py``: ``layer0.conv1``) or ``"timm"`` (``conv1``)."""
    keys = set(keys)
    if "layer0.conv1.weight" in keys:
        return "legacy"
    if "conv1.weight" in keys:
        return "timm"
    sample = ", ".join(sorted(keys)[:5]) or "no keys"
    raise ValueError(
        "Not a timm SE-ResNet/ResNeXt state dict: it has neither 'layer0.conv1.weight' "
        f"(legacy_se*) nor 'conv1.weight' (seresnet*/seresnext*); first keys: {sample}."
    )


def source_architecture(source):
    """Builder options (``stride_in_1x1``, ``stem_pool``) that weights ``source`` needs.

    Named sources know theirs; for a state dict file the layout is detected from its
    keys (and, for legacy files, the cardinality from the first 3x3 conv). Anything
    else (a missing file, a Keras file) gives ``{}``.

    Example:
        >>> source_architecture("timm/seresnet50.ra2_in1k")
        {'stride_in_1x1': False, 'stem_pool': 'torch'}
    """
    if is_named_source(source):
        options = get_source(source).build_options()
        return {key: options[key] for key in ("stride_in_1x1", "stem_pool")}
    path = os.fspath(source)
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
    return hf_hub_download(repo_id=repo_id, filename=filename)


def _download_url(url):
    _import_torch("timm's .pth release file")  # check before a 100 MB download
    return keras.utils.get_file(os.path.basename(url), origin=url, cache_subdir="keras_se")


def fetch_source(source):
    """Downloads a named source (cached) and returns the local file path.

    Tries the Hugging Face hub copy (``timm/<name>``, ``model.safetensors``) and then
    timm's own release file (``.pth``, read with PyTorch) where there is one.

    Raises:
        MissingDependencyError: ``huggingface_hub`` (or PyTorch) is not installed.
        ConnectionError: the download failed (no network access, or no such file).
    """
    src = get_source(source)
    attempts = [("hub " + src.hub_id, lambda: _download_from_hub(src.hub_id, "model.safetensors"))]
    if src.url:
        attempts.append(("release file", lambda: _download_url(src.url)))
    failures, missing_only = [], True
    for where, download in attempts:
        try:
            return download()
        except Exception as err:  # network, missing repo/file or package: report every try
            missing_only = missing_only and isinstance(err, MissingDependencyError)
            failures.append(f"{where}: {_one_line(err)}")
    error = MissingDependencyError if missing_only else ConnectionError
    raise error(
        f"weights={source!r} are downloaded and need network access plus `pip install "
        f"keras-se[hub]` (legacy .pth release files also keras-se[torch]); offline, pass a "
        f"local .safetensors/.pth file instead. Tried: {'; '.join(failures)}"
    )


# ----------------------------------------------------------------------------- mapping
_STEM = re.compile(r"^conv1_(?P<kind>conv|bn)$")
_UNIT = re.compile(r"^conv(?P<stage>[2-5])_block(?P<index>\d+)_(?P<part>[0-3])_(?P<kind>conv|bn)$")
_SE = re.compile(r"^conv(?P<stage>[2-5])_block(?P<index>\d+)_se$")
_CLASSIFIER = {"legacy": "last_linear", "timm": "fc"}


def _torch_prefix(layer_name, layout):
    """timm's module path for a keras_se layer name, or None when it has no twin."""
    legacy = layout == "legacy"
    if match := _STEM.match(layer_name):
        return ("layer0." if legacy else "") + ("conv1" if match["kind"] == "conv" else "bn1")
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
    """(timm key, Keras variable, transforms) for each weight of one layer.

    A `BatchNormSqueezeExcite` (the fused bottleneck tail) holds two reference modules,
    the branch's last BN and its SE block: its ``prefix`` is their pair.
    """
    if isinstance(layer, keras.layers.Conv2D):
        out = [_Tensor(f"{prefix}.weight", layer.kernel, _conv_to_keras, _conv_to_torch)]
        if layer.use_bias:
            out.append(_Tensor(f"{prefix}.bias", layer.bias, _identity, _identity))
        return out
    if isinstance(layer, BatchNormSqueezeExcite):
        bn_prefix, se_prefix = prefix
        return _batchnorm_tensors(layer, bn_prefix) + _se_tensors(layer, se_prefix)
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batchnorm_tensors(layer, prefix)
    if isinstance(layer, SqueezeExcite):
        return _se_tensors(layer, prefix)
    if isinstance(layer, keras.layers.Dense):
        out = [_Tensor(f"{prefix}.weight", layer.kernel, np.transpose, np.transpose)]
        if layer.use_bias:
            out.append(_Tensor(f"{prefix}.bias", layer.bias, _identity, _identity))
        return out
    raise ValueError(f"No reference mapping for layer {layer.name!r} ({type(layer).__name__}).")


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def model_layout(model):
    """The layout a keras_se ResNet matches: ``"timm"`` with the padded stem pool, else legacy."""
    return "timm" if _layer(model, "pool1_pad") is not None else "legacy"


def _check_architecture(model, layout):
    """Raises a ValueError when ``model`` does not compute what ``layout``'s weights expect."""
    conv1 = _layer(model, "conv1_conv")
    if conv1 is None:
        raise ValueError(
            f"Reference weights fit keras_se ResNet/ResNeXt models only; model {model.name!r} "
            "has no 'conv1_conv' layer."
        )
    if tuple(conv1.kernel_size) != (7, 7):
        raise ValueError(
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
            raise ValueError(
                f"{layout!r}-layout weights need a model built with {option}="
                f"{expected[option]!r}; this one has {option}={value!r}. Build it with "
                f"{option}={expected[option]!r} (the builders do when given the weights)."
            )
    se_layers = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    if se_layers and not bottleneck and layout == "timm":
        raise ValueError(
            "timm's non-legacy basic-block SE-ResNets (seresnet18/34) have no ReLU before their "
            "SE block and 8-unit SE layers; keras_se builds the legacy (Caffe) ones: use "
            "legacy_seresnet18/34 weights."
        )
    for layer in se_layers:
        config = layer.get_config()
        fused = isinstance(layer, BatchNormSqueezeExcite)
        part = "3_conv" if fused else ("3_bn" if bottleneck else "2_relu")
        source = _layer(model, f"{layer.name[: -len('_se')]}_{part}")
        if source is None or layer.feature_input is not source.output:
            raise ValueError(
                f"Reference weights need se_mode='standard' (SE after the last BN of the "
                f"residual branch); layer {layer.name!r} is elsewhere."
            )
        if (config["squeeze"], config["activation"], config["gate"]) != ("avg", "relu", "sigmoid"):
            raise ValueError(
                "Reference weights need the paper's SE block (squeeze='avg', activation='relu', "
                f"gate='sigmoid'). Received for {layer.name!r}: squeeze={config['squeeze']!r}, "
                f"activation={config['activation']!r}, gate={config['gate']!r}"
            )
    for layer in model.layers:
        if isinstance(
            layer, keras.layers.BatchNormalization | BatchNormSqueezeExcite
        ) and not np.isclose(layer.epsilon, TORCH_BN_EPSILON, rtol=0, atol=1e-9):
            raise ValueError(
                f"Reference weights need BatchNorm epsilon={TORCH_BN_EPSILON} (PyTorch); layer "
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
        if isinstance(layer, BatchNormSqueezeExcite):
            prefix = (_torch_prefix(f"{layer.name[: -len('_se')]}_3_bn", layout), prefix)
        tensors.extend(_layer_tensors(layer, prefix))
    if unmapped:
        raise ValueError(
            f"Layers without a reference twin: {', '.join(unmapped[:8])}"
            f"{' ...' if len(unmapped) > 8 else ''}. Reference weights fit the plain keras_se "
            "ResNet/ResNeXt graph only."
        )
    return tensors


def _listing(keys, limit=8):
    keys = sorted(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_reference_weights(model, source, *, preprocessing=None):
    """Loads timm/Caffe-port weights into a keras_se ResNet/ResNeXt, all or nothing.

    Every model weight must find its key (with the right shape) and every key of the
    file must be used; otherwise a ValueError lists the missing, unused and mismatched
    keys and no weight is changed. The classifier keys are skipped when the model has
    no top (``include_top=False``); BatchNorm ``num_batches_tracked`` counters are ignored.
    The model's BatchNorm epsilon (1e-5), stride placement and stem pool are checked
    against the layout.

    Args:
        model: a keras_se ResNet/ResNeXt (``keras_se.models``).
        source: a ``.safetensors``/``.pth``/``.bin`` state dict in timm's key layout
            (legacy or not, detected), or a named source such as
            ``"timm/legacy_seresnet50.in1k"`` (downloaded, see `fetch_source`).
        preprocessing: the `Preprocessing` to attach; default: the named source's,
            or timm's default ImageNet preprocessing for a file.

    Returns:
        ``model``, with ``model.preprocessing`` set.

    Example:
        >>> from keras_se import models
        >>> model = models.SEResNet50()
        >>> load_reference_weights(model, "se_resnet50.safetensors")  # doctest: +SKIP
    """
    path = fetch_source(source) if is_named_source(source) else os.fspath(source)
    state = read_state_dict(path)
    layout = detect_layout(state)
    tensors = _model_tensors(model, layout)
    hint = f" (weights for {get_source(source).model})" if is_named_source(source) else ""

    expected = {t.key for t in tensors}
    ignored = {k for k in state if k.endswith(".num_batches_tracked")}
    if _layer(model, "predictions") is None:
        ignored |= {k for k in state if k.split(".")[0] == _CLASSIFIER[layout]}
    missing = expected - set(state)
    unused = set(state) - expected - ignored
    values, mismatched = [], []
    for t in tensors:
        if t.key not in state:
            continue
        try:
            value = t.to_keras(state[t.key])
        except ValueError:  # wrong rank for the transpose/reshape
            value = None
        if value is None or tuple(value.shape) != tuple(t.variable.shape):
            mismatched.append(f"{t.key} {tuple(state[t.key].shape)} vs {t.torch_shape()}")
        values.append((t.variable, value))
    if missing or unused or mismatched:
        problems = [
            f"missing keys: {_listing(missing)}" if missing else "",
            f"unused keys: {_listing(unused)}" if unused else "",
            f"shape mismatch (file vs model): {_listing(mismatched)}" if mismatched else "",
        ]
        top = (
            " (the classifier: use classes=1000 or include_top=False)"
            if any(m.startswith(_CLASSIFIER[layout] + ".") for m in mismatched)
            else ""
        )
        raise ValueError(
            f"The {layout!r}-layout state dict does not fit model {model.name!r}{hint}: "
            f"{'; '.join(p for p in problems if p)}{top}. Nothing was loaded. Received: source={source!r}"
        )
    for variable, value in values:  # all checks passed: no partial load possible
        variable.assign(np.asarray(value, dtype=variable.dtype))
    model.preprocessing = preprocessing or reference_preprocessing(source)
    return model


def reference_state_dict(model, *, layout=None):
    """The model's weights as a timm state dict ``{key: numpy array}`` (PyTorch layout).

    Args:
        model: a keras_se ResNet/ResNeXt.
        layout: ``"legacy"`` or ``"timm"``; default from the model's stem pool.

    Returns:
        A dict in timm's key layout, BatchNorm ``num_batches_tracked`` included (0).
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
        raise ValueError(f"`path` must end with .safetensors. Received: path={path!r}")
    save_file(reference_state_dict(model, layout=layout), path, metadata={"format": "pt"})
    return path


def load_reference_model(source, *, model=None, **kwargs):
    """Builds the keras_se model for ``source`` and loads the reference weights into it.

    Args:
        source: a named source (``"timm/legacy_seresnet50.in1k"``; downloaded) or a
            state dict file (then ``model`` is required).
        model: keras_se model name (registry); named sources know theirs.
        **kwargs: builder arguments (``include_top``, ``input_shape``, ``pooling``...);
            ``stride_in_1x1``/``stem_pool`` are set to what the weights need.

    Returns:
        The model, with ``model.preprocessing`` set (see `keras_se.data.Preprocessing`).

    Example:
        >>> model = load_reference_model("timm/seresnet50.ra2_in1k")  # doctest: +SKIP
        >>> model.preprocessing.crop_pct                             # doctest: +SKIP
        0.875
    """
    from keras_se import models
    from keras_se.models.resnet import build_resnet

    if is_named_source(source):
        src = get_source(source)
        path = fetch_source(source)  # first: no model is built when the download fails
        options = src.build_options()
        if model is None and src.architecture is not None:
            built = build_resnet(**options, **kwargs)
        else:
            options = {k: options[k] for k in ("stride_in_1x1", "stem_pool")}
            built = models.get(model or src.model, **options, **kwargs)
    else:
        if model is None:
            raise ValueError(
                "A weights file needs the keras_se model name (e.g. model='se_resnet50'). "
                f"Received: source={source!r}, model=None"
            )
        path = os.fspath(source)
        options = source_architecture(path)
        if not options:  # not a readable timm state dict: the reader says why
            detect_layout(read_state_dict(path))
        built = models.get(model, **options, **kwargs)
    return load_reference_weights(built, path, preprocessing=reference_preprocessing(source))
