"""`accelerate`: the fast twin of a textbook model, on the same variables.

keras_se's builders make one graph, the textbook one (Keras's own layers plus
`keras_se.SqueezeExcite`), which is what is saved, exported, analysed and fine-tuned.
Where speed matters (the trainer's compiled steps, the benchmarks) `accelerate` replays that
graph with ``keras.models.clone_model``, keeping every layer object except those it
replaces by a speed layer built on the replaced layers' variables
(`keras_se.speed.shared.SharedVariables`):

* ``Conv2D(1x1) → BatchNormalization → SqueezeExcite`` (the SE-ResNet/SE-ResNeXt
  bottleneck's tail, each output used once) → the conv as a `PointwiseConv2D`, also
  applied to the spatial mean of its input (a ``Squeeze`` layer ``{se}_pool``), and one
  `BatchNormSqueezeExcite` ``{se}`` on the conv's map and those means;
* with ``kernels=True``: every other ``BatchNormalization`` → `FusedBatchNormalization`,
  every grouped ``Conv2D`` → `GroupedConv2D`.

The twin computes the same function with the same variables: an optimizer step on it
trains the textbook model, whose layers also say what is frozen (``trainable``).
"""

from __future__ import annotations

import collections

import keras

from keras_se.layers import Squeeze, SqueezeExcite
from keras_se.speed.fast_layers import FusedBatchNormalization, GroupedConv2D, PointwiseConv2D
from keras_se.speed.tail import BatchNormSqueezeExcite

#: The base-layer keys of a config, which a speed layer sets itself (its name from the SE layer).
_BASE_KEYS = ("name", "trainable", "dtype")


def _histories(value):
    """The ``(layer, node, tensor)`` references of the Keras tensors in a serialized call."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            yield tuple(value["config"]["keras_history"])
            return
        for item in value.values():
            yield from _histories(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _histories(item)


def _graph(model):
    """(inputs of each layer's only call or None, how often each layer's outputs are used)."""
    config = model.get_config()
    inputs, uses = {}, collections.Counter()
    for entry in config["layers"]:
        calls = [list(_histories(node)) for node in entry["inbound_nodes"]]
        inputs[entry["name"]] = calls[0] if len(calls) == 1 else None
        for call in calls:
            uses.update(name for name, _, _ in call)
    uses.update(name for name, _, _ in _histories(config["output_layers"]))
    return inputs, uses


def _only_producer(model, inputs, name):
    """The layer whose output is the single input of ``name``'s single call, or None."""
    call = inputs.get(name)
    return model.get_layer(call[0][0]) if call and len(call) == 1 else None


def _tail_conv(layer):
    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and layer.activation is keras.activations.linear
        and layer.data_format == "channels_last"
    )


def _tail_bn(layer):
    return (
        type(layer) is keras.layers.BatchNormalization
        and layer.axis in (-1, 3)
        and layer.center
        and layer.scale
        and not layer.renorm
    )


def _tail_se(layer):
    return (
        type(layer) is SqueezeExcite
        and layer.squeeze == "avg"
        and layer.data_format == "channels_last"
        and len(layer.input.shape) == 4
    )


def bottleneck_tails(model):
    """The ``(conv, bn, se)`` chains of ``model`` that `accelerate` fuses, in graph order.

    A chain is a 1x1, stride-1 linear ``Conv2D`` whose output feeds only a
    ``BatchNormalization`` (no renorm) whose output feeds only a channels-last,
    average-squeeze `SqueezeExcite`, each called once.

    Example:
        >>> from keras_se import models
        >>> tails = bottleneck_tails(models.get("se_resnet50", input_shape=(64, 64, 3)))
        >>> len(tails), [layer.name for layer in tails[0]]
        (16, ['conv2_block1_3_conv', 'conv2_block1_3_bn', 'conv2_block1_se'])
    """
    inputs, uses = _graph(model)
    tails = []
    for se in model.layers:
        if not _tail_se(se):
            continue
        bn = _only_producer(model, inputs, se.name)
        if bn is None or not _tail_bn(bn) or uses[bn.name] != 1:
            continue
        conv = _only_producer(model, inputs, bn.name)
        if conv is not None and _tail_conv(conv) and uses[conv.name] == 1:
            tails.append((conv, bn, se))
    return tails


def _fused_config(bn, se):
    """`BatchNormSqueezeExcite` arguments for the pair: the SE layer's and the BN's statistics."""
    config = {k: v for k, v in se.get_config().items() if k not in _BASE_KEYS}
    bn_config = bn.get_config()
    config.update(
        epsilon=bn_config["epsilon"],
        momentum=bn_config["momentum"],
        synchronized=bn_config["synchronized"],
        name=se.name,
        dtype=se.dtype_policy,
    )
    return config


class _Rewrite:
    """The clone and call functions of one `accelerate` (``keras.models.clone_model``)."""

    def __init__(self, model, kernels, tails):
        self.kernels = kernels
        self.tails = {id(se): (conv, bn, se) for conv, bn, se in (bottleneck_tails(model) if tails else ())}
        self.tail_convs = {id(conv): se for conv, _, se in self.tails.values()}
        self.tail_bns = {id(bn) for _, bn, _ in self.tails.values()}
        self.pointwise = {}  # id(se) → the PointwiseConv2D standing for its chain's conv
        self.fused_se = {}  # id(BatchNormSqueezeExcite) → the SqueezeExcite it stands for
        self.conv_inputs = {}  # id(PointwiseConv2D output) → its input

    def clone(self, layer):
        if id(layer) in self.tails:
            _, bn, se = self.tails[id(layer)]
            fused = BatchNormSqueezeExcite.sharing(bn, se, **_fused_config(bn, se))
            self.fused_se[id(fused)] = se
            return fused
        if id(layer) in self.tail_convs:
            pointwise = PointwiseConv2D.sharing(layer)
            self.pointwise[id(self.tail_convs[id(layer)])] = pointwise
            return pointwise
        if not self.kernels or id(layer) in self.tail_bns:
            return layer
        if type(layer) is keras.layers.Conv2D and layer.groups > 1:
            return GroupedConv2D.sharing(layer)
        if type(layer) is keras.layers.BatchNormalization:
            return FusedBatchNormalization.sharing(layer)
        return layer

    def call(self, layer, *args, **kwargs):
        if id(layer) in self.tail_bns:  # folded into the chain's BatchNormSqueezeExcite
            return args[0]
        if id(layer) in self.fused_se:  # the chain's tail: BN(conv(x)) and SE as one layer
            features = args[0]
            pointwise = self.pointwise[id(self.fused_se[id(layer)])]
            pooled = Squeeze(name=f"{layer.name}_pool")(self.conv_inputs[id(features)])
            return layer(features, pointwise(pooled))
        outputs = layer(*args, **kwargs)
        if isinstance(layer, PointwiseConv2D):
            self.conv_inputs[id(outputs)] = args[0]
        return outputs


def accelerate(model, *, kernels=True, tails=True):
    """The fast twin of ``model``: the same function on the same variables, faster to train.

    Args:
        model: a built functional Keras model (keras_se's builders make one; any other
            functional model is rewritten where the patterns below appear, and returned
            unchanged in function where none does).
        kernels: replace ``BatchNormalization`` by `FusedBatchNormalization` and grouped
            ``Conv2D`` by `GroupedConv2D` (TensorFlow's own kernels; the same layers
            elsewhere).
        tails: fuse each ``Conv2D(1x1) → BatchNormalization → SqueezeExcite`` chain
            (`bottleneck_tails`) into a `PointwiseConv2D` and a `BatchNormSqueezeExcite`.

    Returns:
        A new functional model sharing ``model``'s variables. Train, evaluate or time
        it; save, export and inspect ``model``. Freezing is read from ``model``'s
        layers when the twin runs: ``BatchNormalization(trainable=False)`` keeps its
        statistics and the SE gate fused with it still trains.

    Raises:
        ValueError: ``model`` is not a functional model (a subclassed or Sequential one).

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet50", input_shape=(64, 64, 3), classes=10)
        >>> fast = accelerate(model)
        >>> len(fast.weights) == len(model.weights)
        True
        >>> x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
        >>> bool(np.allclose(fast(x), model(x), atol=1e-5))
        True
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "get_config") or isinstance(
        model, keras.Sequential
    ):
        raise ValueError(f"accelerate needs a functional Keras model. Received: model={model!r}")
    rewrite = _Rewrite(model, kernels, tails)
    return keras.models.clone_model(model, clone_function=rewrite.clone, call_function=rewrite.call)


def load_fused_weights(model, filepath):
    """Loads a ``.weights.h5`` file of the fused era into ``model``, the textbook graph.

    keras_se releases before the textbook graph built the fused tail into SE bottleneck
    models, so their weights files list `PointwiseConv2D`/`BatchNormSqueezeExcite`
    layers; ``model`` (the same network from today's builders) gets them through
    ``accelerate(model, kernels=False)``, whose layers are those of the fused era.

    Example:
        >>> import os, tempfile
        >>> from keras_se import models
        >>> model = models.get("se_resnet50", input_shape=(64, 64, 3), classes=10)
        >>> path = os.path.join(tempfile.mkdtemp(), "fused.weights.h5")
        >>> accelerate(model, kernels=False).save_weights(path)  # what the fused era wrote
        >>> load_fused_weights(model, path)
    """
    accelerate(model, kernels=False).load_weights(filepath)


