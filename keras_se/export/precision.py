"""The precision an exported graph computes in (``export_model(precision=...)``).

``"float32"`` serves a graph that computes in float32, whatever dtype policy the model was
trained under; ``"bfloat16"`` rebuilds the model under Keras's ``mixed_bfloat16`` policy with
the same weights (float32 variables, bfloat16 convolutions and matmuls; the classifier stays
float32), for CPUs with bfloat16 instructions (AVX512_BF16, AMX) and accelerators.
"""

from __future__ import annotations

import keras

from keras_se_core.validation import check_choice

#: What ``export_model(precision=...)`` accepts: the graph's compute dtype.
PRECISIONS = ("float32", "bfloat16")
#: The Keras dtype policy each precision rebuilds the model under.
_PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def _head_layers(model):
    """The classifier layers kept in float32: the last layer and, when it has no weights
    (a ``Softmax``/``Activation``), the last layer before it that has."""
    head = [model.layers[-1]]
    if not head[0].weights:
        weighted = [layer for layer in model.layers[:-1] if layer.weights]
        head += weighted[-1:]
    return head


def with_precision(model, precision):
    """``model`` computing in ``precision``: itself when it does, else a rebuild with its weights.

    ``"bfloat16"``: every layer under ``mixed_bfloat16`` (float32 variables, bfloat16
    compute) except the classifier (`_head_layers`: its matmul and softmax in float32).
    ``"float32"``: every layer under ``float32`` (a mixed-precision model served in full
    precision). The rebuild is ``keras.models.clone_model`` with each layer's config given
    the policy, then ``set_weights`` with the model's weights (BatchNorm statistics included).

    Args:
        model: a Keras classifier.
        precision: one of `PRECISIONS`.

    Returns:
        A ``keras.Model`` with the same weights and architecture.

    Example:
        >>> from keras_se import models
        >>> net = models.get("se_resnet18", input_shape=(32, 32, 3), classes=3)
        >>> bf16 = with_precision(net, "bfloat16")
        >>> bf16.layers[1].compute_dtype, bf16.layers[-1].compute_dtype
        ('bfloat16', 'float32')
    """
    check_choice("precision", precision, PRECISIONS)
    head = {id(layer) for layer in _head_layers(model)}
    policy = _PRECISION_POLICIES[precision]

    def wanted(layer):
        return "float32" if id(layer) in head else policy

    if all(layer.dtype_policy.name == wanted(layer) for layer in all_layers(model)):
        return model

    def clone(layer):
        config = layer.get_config()
        config["dtype"] = wanted(layer)
        return layer.__class__.from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=clone, recursive=True)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def all_layers(model):
    """The layers of ``model``, those of nested models included, without input layers."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer
