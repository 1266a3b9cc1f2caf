"""SENet-154 and the wide SE-ResNeXts (keras_se/models/resnet.py rows): sizes and structure.

The parameter counts are timm's (``legacy_senet154``, ``legacy_seresnext26_32x4d``,
``seresnext101_32x8d``, ``seresnext101_64x4d``; torchvision's for the plain ResNeXt-101s)
and are also derived here in closed form from timm's model code (``timm/models/senet.py``:
``SEBottleneck`` has ``planes * 2`` then ``planes * 4`` channels, the stem is three 3x3
convs, the projections after the first stage are 3x3), independently of the builders.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, models
from keras_se.models.resnet import ARCHITECTURES, build_resnet
from keras_se.utils import count_weights
from tests.conftest import shapes_only


def bn(c):
    return 2 * c


def se(c, r=16):
    units = c // r
    return 2 * c * units + units + c


def bottleneck_net_params(depths, groups, base_width, *, senet=False, se_on=True, classes=1000):
    """Trainable parameters of a (SE-)ResNeXt or SENet-154, from timm's model code."""
    if senet:
        total = 9 * 3 * 64 + bn(64) + 9 * 64 * 64 + bn(64) + 9 * 64 * 128 + bn(128)
        cin = 128
    else:
        total, cin = 49 * 3 * 64 + bn(64), 64
    for stage, n in enumerate(depths):
        planes = 64 * 2**stage
        out = 4 * planes
        width = planes * base_width // 64 * groups
        first = 2 * planes if senet else width
        for i in range(n):
            total += cin * first + bn(first) + 9 * first * width // groups + bn(width)
            total += width * out + bn(out) + (se(out) if se_on else 0)
            if i == 0:
                kernel = 9 if senet and stage > 0 else 1
                total += kernel * cin * out + bn(out)
            cin = out
    return total + cin * classes + classes


TIMM_PARAMS = {
    "senet154": (115_088_984, dict(depths=(3, 8, 36, 3), groups=64, base_width=4, senet=True)),
    "se_resnext26_32x4d": (16_790_280, dict(depths=(2, 2, 2, 2), groups=32, base_width=4)),
    "se_resnext101_32x8d": (93_569_048, dict(depths=(3, 4, 23, 3), groups=32, base_width=8)),
    "se_resnext101_64x4d": (88_232_984, dict(depths=(3, 4, 23, 3), groups=64, base_width=4)),
    "resnext101_32x8d": (
        88_791_336, dict(depths=(3, 4, 23, 3), groups=32, base_width=8, se_on=False)
    ),
    "resnext101_64x4d": (
        83_455_272, dict(depths=(3, 4, 23, 3), groups=64, base_width=4, se_on=False)
    ),
}  # fmt: skip


def test_closed_forms_are_timms_counts():
    for name, (count, arch) in TIMM_PARAMS.items():
        assert bottleneck_net_params(**arch) == count, name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_parameter_counts(name):
    with shapes_only():
        model = models.get(name)
    assert count_weights(model.trainable_weights) == TIMM_PARAMS[name][0]


def tiny_senet(**kwargs):
    arch = {**ARCHITECTURES["senet154"], "stackwise_num_blocks": (1, 1, 1, 1)}
    return build_resnet(**arch, input_shape=(64, 64, 3), classes=3, **kwargs)


@pytest.mark.slow
def test_senet154_structure():
    model = tiny_senet()
    # The 3-conv stem: 3x3/2 64, 3x3 64, 3x3 128, then the max pool.
    convs = [model.get_layer(f"conv1_{k}_conv") for k in (1, 2, 3)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [
        (64, (3, 3), (2, 2)), (64, (3, 3), (1, 1)), (128, (3, 3), (1, 1))
    ]  # fmt: skip
    assert model.get_layer("pool1_pool").input is model.get_layer("conv1_3_relu").output
    # SEBottleneck: 1x1 to planes * 2, grouped 3x3 (64 groups) to planes * 4, stride there.
    c1, c2 = model.get_layer("conv3_block1_1_conv"), model.get_layer("conv3_block1_2_conv")
    assert (c1.filters, c1.strides, c2.filters, c2.groups, c2.strides) == (
        256, (1, 1), 512, 64, (2, 2)
    )  # fmt: skip
    # Projections: 1x1 in the first stage, 3x3/2 with padding 1 after it.
    assert model.get_layer("conv2_block1_0_conv").kernel_size == (1, 1)
    down = model.get_layer("conv3_block1_0_conv")
    assert (down.kernel_size, down.strides, down.padding) == ((3, 3), (2, 2), "valid")
    assert model.get_layer("conv3_block1_0_pad").padding == ((1, 1), (1, 1))
    # Dropout 0.2 between the pooling and the classifier; SE on every unit.
    drop = model.get_layer("top_dropout")
    assert drop.rate == 0.2 and drop.input is model.get_layer("avg_pool").output
    assert model.get_layer("predictions").input is drop.output
    assert sum(isinstance(x, SqueezeExcite) for x in model.layers) == 4
    headless = tiny_senet(include_top=False, pooling="avg")
    assert not any(isinstance(x, keras.layers.Dropout) for x in headless.layers)


@pytest.mark.slow
def test_senet154_dropout_acts_in_training_only():
    model = tiny_senet(classifier_activation=None)
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    a, b = (keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(keras.ops.convert_to_numpy(model(x, training=True)), a)


def test_new_builders_and_sources():
    from keras_se.models import pretrained

    assert models.SENet154.registry_name == "senet154" and models.SENet154.se
    assert "se_ratio=None" in models.SENet154.__doc__  # no published plain twin
    assert models.SEResNeXt26.registry_name == "se_resnext26_32x4d"
    assert models.ResNeXt101_64x4d.registry_name == "resnext101_64x4d"
    src = pretrained.get_source("timm/legacy_senet154")
    assert (src.model, src.layout, src.preprocessing.crop_pct) == ("senet154", "legacy", 0.875)
    assert src.build_options() == {"stride_in_1x1": False, "stem_pool": "caffe"}
    for name in ("se_resnext101_32x8d", "se_resnext101_64x4d", "se_resnext26_32x4d"):
        assert any(s.model == name for s in pretrained.SOURCES.values()), name
