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
    >>> models.preprocessing.of(model).interpolation                # doctest: +SKIP
    'bilinear'
"""

from __future__ import annotations

import dataclasses
import os
import re

import keras
import numpy as np

from keras_se.layers import SqueezeExcite
from keras_se.state_dicts import (  # noqa: F401 - re-exported: keras_se.weights's interface
    LAYOUTS,
    STATE_DICT_SUFFIXES,
    MissingDependencyError,
    detect_layout,
    download,
    file_architecture,
    layout_architecture,
    read_state_dict,
)
from keras_se_core.choices import BN_EPSILON
from keras_se_core.errors import UsageError

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
    _check_se_layers(model, layout, bottleneck=bottleneck)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and not np.isclose(
            layer.epsilon, BN_EPSILON, rtol=0, atol=1e-9
        ):
            raise UsageError(
                f"Reference weights need BatchNorm epsilon={BN_EPSILON} (PyTorch); layer "
                f"{layer.name!r} has epsilon={layer.epsilon}."
            )


def _check_se_layers(model, layout, *, bottleneck):
    """The SE layers sit where the reference has them and are the paper's block."""
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
    head_keys = {k for k in state if k.split(".")[0] == classifier}
    skipped = ()
    if head is None:
        ignored |= head_keys
    elif (
        skip_mismatched_head
        and file_weight is not None
        and tuple(np.transpose(file_weight).shape) != tuple(head.kernel.shape)
    ):
        ignored |= head_keys
        tensors = [t for t in tensors if t.layer != head.name]
        skipped = (head.name,)
    values, problems, mismatched = _values_that_fit(state, tensors, ignored)
    if problems:
        top = (
            " (the classifier: use classes=1000 or include_top=False)"
            if any(key.startswith(classifier + ".") for key in mismatched)
            else ""
        )
        raise UsageError(
            f"The {layout!r}-layout state dict does not fit model {model.name!r}{hint}: "
            f"{problems}{top}. Nothing was loaded. Received: weights={source!r}"
        )
    for variable, value in values:  # all checks passed: no partial load possible
        variable.assign(np.asarray(value, dtype=variable.dtype))
    loaded = tuple(dict.fromkeys(t.layer for t in tensors))
    return ReferenceLoad(loaded, skipped, source_classes, layout)


def _values_that_fit(state, tensors, ignored):
    """``([(variable, value)], problems, mismatched keys)``: the problems (one string, empty
    when every tensor finds its key and shape and every key but ``ignored`` is used)."""
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
    problems = [
        f"first mismatched layer: {first}" if first else "",
        f"missing keys: {_listing(missing)}" if missing else "",
        f"unused keys: {_listing(unused)}" if unused else "",
        f"shape mismatch (file vs model): {_listing(mismatched)}" if mismatched else "",
    ]
    return values, "; ".join(p for p in problems if p), mismatched


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
