"""Writes tests/data/se_layers_v0.keras and se_layers_v0_io.npz (inputs, expected outputs).

Run once (TensorFlow backend) with keras_se as of commit 2fb46e2, before the SE gate
base class, so that tests/test_layers.py checks that ``.keras`` files saved by that
release still load and compute the same. Rerunning it now would write the current
format, not the old one.

The model covers both layers and both call forms of the fused layer: SqueezeExcite
(channels_last, hard_sigmoid gate), BatchNormSqueezeExcite on ``x`` and on
``[x, means]``, and SqueezeExcite(channels_first, max squeeze, fixed units).
"""

import keras
import numpy as np

from keras_se import BatchNormSqueezeExcite, SqueezeExcite
from keras_se.layers import Squeeze


def main(directory="tests/data"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 8), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = SqueezeExcite(4, gate="hard_sigmoid", name="se")(x)
    x = BatchNormSqueezeExcite(2, epsilon=1e-5, name="fused")(x)
    means = Squeeze(name="squeeze")(x)
    x = BatchNormSqueezeExcite(4, name="fused_means")([x, means])
    x = keras.layers.Permute((3, 1, 2), name="to_nchw")(x)
    x = SqueezeExcite(units=3, squeeze="max", data_format="channels_first", name="se_cf")(x)
    model = keras.Model(inputs, x, name="se_fixture")
    rng = np.random.default_rng(0)
    for w in model.weights:
        value = rng.normal(size=tuple(w.shape)) * 0.5
        if w.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, size=tuple(w.shape))
        w.assign(value.astype("float32"))
    images = rng.normal(size=(2, 6, 6, 8)).astype("float32")
    outputs = keras.ops.convert_to_numpy(model(images, training=False))
    model.save(f"{directory}/se_layers_v0.keras")
    np.savez(f"{directory}/se_layers_v0_io.npz", inputs=images, outputs=outputs)


if __name__ == "__main__":
    main()
