"""Tests for keras_se.speed.shared: speed layers built on other layers' variables."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se.speed import FusedBatchNormalization, GroupedConv2D
from keras_se.speed.shared import is_shared


def test_sharing_builds_on_the_source_variables_and_follows_its_freezing():
    source = keras.layers.BatchNormalization(momentum=0.5)
    x = np.arange(16, dtype="float32").reshape(2, 2, 2, 2)
    source.build(x.shape)
    fast = FusedBatchNormalization.sharing(source)
    fast(x, training=True)  # updates the moving statistics: the source's variables
    assert [id(v) for v in fast.weights] == [id(v) for v in source.weights]
    assert is_shared(fast) and not is_shared(FusedBatchNormalization())
    np.testing.assert_allclose(source.moving_mean.numpy(), 0.5 * x.mean(axis=(0, 1, 2)), rtol=1e-6)
    source.trainable = False  # frozen: the speed layer runs on the moving statistics
    before = source.moving_mean.numpy().copy()
    np.testing.assert_allclose(fast(x, training=True), source(x, training=False), rtol=1e-6)
    np.testing.assert_array_equal(source.moving_mean.numpy(), before)
    assert fast.trainable_weights == []  # the variables' flags are the source's


def test_sharing_refuses_unbuilt_sources_and_other_shapes():
    with pytest.raises(ValueError, match="'c' must be built before it is shared"):
        GroupedConv2D.sharing(keras.layers.Conv2D(4, 3, groups=2, name="c"))
    conv = keras.layers.Conv2D(4, 3, groups=2, name="c")
    conv.build((None, 5, 5, 4))
    fast = GroupedConv2D.sharing(conv)
    with pytest.raises(ValueError, match=r"cannot share variable 'kernel' of layer 'c'.*\(3, 3, 2, 4\)"):
        fast(np.ones((1, 5, 5, 8), "float32"))  # 8 channels: another kernel shape
