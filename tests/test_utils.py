"""model_stats against the paper's figures and TensorFlow's own profiler."""

from __future__ import annotations

import keras
import pytest

from keras_se import models
from keras_se.utils import layer_macs, model_stats
from tests.conftest import shapes_only


@pytest.mark.slow
def test_resnet50_macs_match_paper():
    with shapes_only():  # MACs and parameters come from shapes alone
        se_model = models.SEResNet50()
        se, plain = model_stats(se_model), model_stats(models.ResNet50())
        v15 = model_stats(models.SEResNet50(stride_in_1x1=False))
    assert se.params == 28_088_024 and plain.params == 25_557_032
    assert se.total_params == se_model.count_params()
    # Paper: ResNet-50 3.86 → SE-ResNet-50 3.87 GFLOPs (multiply-adds); timm's stride-in-3x3: 4.11.
    assert abs(plain.gmacs - 3.86) / 3.86 < 0.01
    assert abs(se.gmacs - 3.87) / 3.87 < 0.01
    assert abs(v15.gmacs - 4.11) / 4.11 < 0.01
    # The textbook SE overhead is exactly the FC matmuls: sum over blocks of 2*C*C/r.
    depths, channels = (3, 4, 6, 3), (256, 512, 1024, 2048)
    fc = sum(2 * n * c * c // 16 for n, c in zip(depths, channels))
    assert se.macs - plain.macs == fc


@pytest.mark.slow
def test_conv_macs_agree_with_tensorflow_profiler():
    """Every Conv2D op TensorFlow runs is counted, and counted as its profiler does."""
    import tensorflow as tf

    model = models.SEResNet50(input_shape=(64, 64, 3), classes=10)
    graph = (
        tf.function(lambda x: model(x, training=False))
        .get_concrete_function(tf.TensorSpec((1, 64, 64, 3), tf.float32))
        .graph
    )
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, cmd="scope", options=options)
    flops, stack = {}, [profile]
    while stack:
        node = stack.pop()
        flops[node.name] = node.float_ops
        stack.extend(node.children)
    ops = graph.get_operations()
    convs = [op.name for op in ops if op.type == "Conv2D"]
    matmuls = [op.name for op in ops if op.type == "MatMul"]
    # 53 convolutions; matmuls: 2 per SE gate, 1 classifier.
    assert (len(convs), len(matmuls)) == (53, 16 * 2 + 1)
    stats = model_stats(model)
    # The profiler counts a multiply-add as 2 FLOPs.
    assert sum(flops[name] for name in convs + matmuls) == 2 * stats.macs
    assert sum(flops[name] for name in convs) == 2 * stats.macs_by_layer["Conv2D"]
    assert stats.macs_by_layer["Dense"] == 2048 * 10
    assert stats.macs_by_layer["SqueezeExcite"] == sum(
        2 * n * c * c // 16 for n, c in zip((3, 4, 6, 3), (256, 512, 1024, 2048))
    )


@pytest.mark.slow
def test_grouped_and_depthwise_convolutions():
    model = models.SEResNeXt50(input_shape=(64, 64, 3), classes=10)
    conv = model.get_layer("conv3_block1_2_conv")  # 3x3, 256 -> 256 in 32 groups, stride 2
    h, w = conv.output.shape[1:3]
    assert layer_macs(conv) == h * w * 256 * 9 * (256 // 32)
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inputs)
    x = keras.layers.SeparableConv2D(5, 3, padding="same")(x)
    small = keras.Model(inputs, x)
    assert layer_macs(small.layers[1]) == 8 * 8 * 8 * 9
    assert layer_macs(small.layers[2]) == 8 * 8 * 8 * 9 + 8 * 8 * 5 * 8


def test_dynamic_input_has_no_macs():
    stats = model_stats(models.SEResNet18(include_top=False))
    assert stats.macs is None and stats.params > 0


def test_dense_only_model():
    inputs = keras.Input((10,))
    model = keras.Model(inputs, keras.layers.Dense(7)(inputs))
    stats = model_stats(model)
    assert stats.macs == 70 and stats.params == 77
