"""Writes tests/data/fused_era.keras, fused_era.weights.h5 and fused_era_io.npz.

Run once (TensorFlow backend) with keras_se as of commit e5f21c0, the last release whose
bottleneck builders put the fused BatchNorm+SE tail (``BatchNormSqueezeExcite``, the 1x1
conv called twice as a ``PointwiseConv2D``, a ``Squeeze`` pool) and keras_se's own
``Conv2D``/``BatchNormalization`` subclasses into every model graph. tests/test_speed.py
checks that such files still load: the ``.keras`` file as it was saved, and the weights
file into today's textbook graph of the same network (`keras_se.speed.load_fused_weights`).
Rerunning it now would write today's textbook layers, not the fused-era ones.

The network: a stem conv-BN-ReLU, then two SE bottleneck units (the second strided and
grouped, so the grouped ``Conv2D`` is in the file), global pooling and a 3-way classifier.
"""

import keras
import numpy as np

from keras_se import blocks


def build():
    inputs = keras.Input((16, 16, 3), name="image")
    x = blocks.conv_bn(inputs, 16, 3, name="conv1")
    x = blocks.residual_unit(x, 4, name="conv2_block1", se_ratio=4)
    x = blocks.residual_unit(x, 8, name="conv3_block1", strides=2, groups=2, se_ratio=4)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(3, name="predictions")(x)
    return keras.Model(inputs, outputs, name="fused_era")


def randomize(model, rng):
    """Every weight random (moving variances positive), so no BatchNorm is the identity."""
    for w in model.weights:
        value = rng.normal(size=tuple(w.shape)) * 0.3
        if w.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, size=tuple(w.shape))
        w.assign(value.astype("float32"))


def main(directory="tests/data"):
    keras.utils.set_random_seed(0)
    model = build()
    rng = np.random.default_rng(0)
    randomize(model, rng)
    images = rng.normal(size=(2, 16, 16, 3)).astype("float32")
    outputs = keras.ops.convert_to_numpy(model(images, training=False))
    model.save(f"{directory}/fused_era.keras")
    model.save_weights(f"{directory}/fused_era.weights.h5")
    np.savez(f"{directory}/fused_era_io.npz", inputs=images, outputs=outputs)


if __name__ == "__main__":
    main()
