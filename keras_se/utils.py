"""Model statistics (parameters, multiply-accumulates) and small shared helpers.

``model_stats`` counts multiply-accumulates (MACs) layer by layer from each
layer's kernel shape and its output shape in the built model: convolutions
(grouped, depthwise, separable, transposed), dense layers and the two FC layers of
every SE layer (`keras_se.layers.SEGate`), recursing into nested models; a layer is
counted for the output shape of its call in the model. This is the paper's FLOPs
convention (Table 2 reports multiply-adds of convolutions and FC layers; BN,
ReLU, pooling and additions are not counted). The counter needs no backend
graph, so it works on every Keras backend; the tests cross-check it against
``tf.compat.v1.profiler`` on every Conv2D op of a traced TensorFlow graph and
against the paper's 3.86/3.87 GMACs for ResNet-50/SE-ResNet-50.
"""

from __future__ import annotations

import dataclasses
import math

import keras


@dataclasses.dataclass(frozen=True)
class ModelStats:
    """What `model_stats` returns.

    Attributes:
        params: trainable parameters (the PyTorch convention of the reference
            tables: BatchNorm moving statistics are buffers, not parameters).
        non_trainable_params: BatchNorm moving mean/variance and frozen weights.
        total_params: ``params + non_trainable_params`` (``model.count_params()``).
        macs: multiply-accumulates for one image at the model's input size, or
            None when the input size is not fixed.
        macs_by_layer: MACs per layer class (``Conv2D``, ``Dense``, ``SqueezeExcite``...).
    """

    params: int
    non_trainable_params: int
    total_params: int
    macs: int | None
    macs_by_layer: dict

    @property
    def gmacs(self):
        return None if self.macs is None else self.macs / 1e9

    def as_dict(self):
        out = dataclasses.asdict(self)
        out["gmacs"] = self.gmacs
        return out


def count_weights(weights):
    return int(sum(math.prod(w.shape) for w in weights))


def _per_sample(shape):
    dims = tuple(shape)[1:]
    return None if any(d is None for d in dims) else math.prod(dims)


def layer_macs(layer):
    """MACs of one call of ``layer`` on one sample, from its kernel and output shapes.

    Returns 0 for layers without multiply-accumulate kernels (BN, activations,
    pooling, additions), and None when the output size is not fixed.
    """
    from keras_se.layers import SEGate

    if isinstance(layer, keras.Model):
        total = 0
        for sub in layer.layers:
            macs = layer_macs(sub)
            if macs is None:
                return None
            total += macs
        return total
    if isinstance(layer, SEGate):
        return 2 * layer.channels * layer.bottleneck_units
    if isinstance(layer, keras.layers.SeparableConv2D | keras.layers.SeparableConv1D):
        out = _per_sample(layer.output.shape)
        if out is None:
            return None
        depth = layer.depthwise_kernel.shape  # (k..., cin, multiplier)
        point = layer.pointwise_kernel.shape  # (1..., cin*multiplier, cout)
        spatial = out // point[-1]
        return spatial * math.prod(depth) + out * point[-2]
    kernel = getattr(layer, "kernel", None)
    if kernel is None or not hasattr(layer, "output"):
        return 0
    out = _per_sample(layer.output.shape)
    if out is None:
        return None
    if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.DepthwiseConv1D):
        return out * math.prod(layer.kernel.shape[:-2])
    if isinstance(
        layer,
        keras.layers.Conv2DTranspose | keras.layers.Conv1DTranspose | keras.layers.Conv3DTranspose,
    ):
        inp = _per_sample(layer.input.shape)
        return None if inp is None else inp * math.prod(layer.kernel.shape[:-1])
    if isinstance(
        layer, keras.layers.Dense | keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D
    ):
        # Dense kernel (in, out); conv kernel (k..., in/groups, out): the reduction length.
        return out * math.prod(kernel.shape[:-1])
    return 0


def count_macs(model):
    """Multiply-accumulates of one forward pass for one sample.

    Returns ``(total, by_layer_class)``; ``(None, {})`` when a layer's output size is
    not fixed (e.g. ``input_shape=(None, None, 3)``).
    """
    by_class = {}
    for layer in model.layers:
        macs = layer_macs(layer)
        if macs is None:
            return None, {}
        if macs:
            key = type(layer).__name__
            by_class[key] = by_class.get(key, 0) + macs
    return sum(by_class.values()), by_class


def model_stats(model, *, macs=True):
    """Parameters and multiply-accumulates of a Keras model.

    Args:
        model: a built Keras model.
        macs: also count MACs; None when the input size is not fixed.

    Returns:
        A `ModelStats`.

    Example:
        >>> from keras_se.models import SEResNet50, ResNet50
        >>> from keras_se.utils import model_stats
        >>> se, plain = model_stats(SEResNet50()), model_stats(ResNet50())
        >>> se.params, plain.params                      # the timm/torchvision counts
        (28088024, 25557032)
        >>> round(se.gmacs, 3), round(plain.gmacs, 3)    # the paper: 3.87 vs 3.86
        (3.86, 3.858)
    """
    trainable = count_weights(model.trainable_weights)
    non_trainable = count_weights(model.non_trainable_weights)
    total_macs, by_layer = None, {}
    if macs:
        total_macs, by_layer = count_macs(model)
    return ModelStats(
        params=trainable,
        non_trainable_params=non_trainable,
        total_params=trainable + non_trainable,
        macs=total_macs,
        macs_by_layer=by_layer,
    )
