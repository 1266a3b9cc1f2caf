"""keras_se.analysis: streaming excitation statistics, η² (the blocks: test_se_blocks)."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, se_blocks
from keras_se import analysis as an


def _linear_se_model(channels=3, name="my_gate"):
    """s = z: an SE layer with identity kernels, zero biases and linear activations."""
    inputs = keras.Input((2, 2, channels))
    se = SqueezeExcite(units=channels, activation="linear", gate="linear", name=name)
    model = keras.Model(inputs, se(inputs))
    se.set_weights([np.eye(channels), np.eye(channels), np.zeros(channels), np.zeros(channels)])
    return model


def test_hand_computed_means_and_specificity():
    # Constant images: the squeeze (and with this SE layer the excitation) is the pixel value.
    #            ch0  ch1  ch2      class
    values = [
        (1.0, 1.0, 5.0),  # 0
        (5.0, 1.0, 5.0),  # 1
        (3.0, 2.0, 5.0),  # 0
        (7.0, 2.0, 5.0),  # 1
    ]
    labels = np.array([0, 1, 0, 1])
    images = np.array([np.full((2, 2, 3), v) for v in values], "float32")
    # By hand. ch0: class means 2 and 6, mean 4; between = 2*4 + 2*4 = 16, total =
    # 9 + 1 + 1 + 9 = 20 -> eta2 = 0.8. ch1: class means 1.5 and 1.5 -> eta2 = 0 (total 1).
    # ch2: constant -> left out. Block specificity = (0.8 + 0) / 2 = 0.4;
    # class spread = sqrt(mean_j between_j / N) = sqrt((16/4 + 0 + 0) / 3).
    result = an.analyze_excitations(
        _linear_se_model(), (images, labels), batch_size=3, class_names=["a", "b"], verbose=0
    )
    (block,) = result.blocks
    assert (block.name, block.stage, block.index, block.depth, block.channels) == (
        "my_gate",
        1,
        1,
        1,
        3,
    )
    np.testing.assert_allclose(block.class_means, [[2, 1.5, 5], [6, 1.5, 5]])
    np.testing.assert_allclose(block.mean, [4, 1.5, 5])
    np.testing.assert_allclose(block.std, [math.sqrt(5), 0.5, 0], atol=1e-12)
    np.testing.assert_allclose(block.channel_specificity[:2], [0.8, 0.0], atol=1e-12)
    assert np.isnan(block.channel_specificity[2])
    assert block.specificity == pytest.approx(0.4)
    assert block.class_spread == pytest.approx(math.sqrt(4 / 3))
    assert result.num_images == 4 and result.class_counts.tolist() == [2, 2]

    data = json.loads(json.dumps(result.to_dict()))  # strict JSON: NaN became null
    assert data["class_names"] == ["a", "b"] and "eta^2" in data["specificity_definition"]
    row = data["blocks"][0]
    assert {k: row[k] for k in ("name", "stage", "index", "depth", "channels")} == {
        "name": "my_gate",
        "stage": 1,
        "index": 1,
        "depth": 1,
        "channels": 3,
    }
    assert row["specificity"] == pytest.approx(0.4)
    assert row["class_means"] == [[2, 1.5, 5], [6, 1.5, 5]]
    assert row["channel_specificity"][2] is None
    again = an.ExcitationAnalysis.from_dict(data)
    assert again.blocks[0].specificity == pytest.approx(0.4)


def _numpy_eta2(s, labels, num_classes):
    """Two-pass reference on the full (N, C) array."""
    mu = s.mean(axis=0)
    means = np.full((num_classes, s.shape[1]), np.nan)
    between = np.zeros(s.shape[1])
    for c in range(num_classes):
        rows = s[labels == c]
        if len(rows):
            means[c] = rows.mean(axis=0)
            between += len(rows) * (means[c] - mu) ** 2
    total = ((s - mu) ** 2).sum(axis=0)
    return means, mu, between / total


def test_streaming_statistics_match_numpy_on_sigmoid_gates():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    inputs = keras.Input((4, 4, 6))
    se = SqueezeExcite(ratio=2, name="gate")
    model = keras.Model(inputs, se(inputs))
    w1, w2, b1, b2 = (rng.normal(size=w.shape).astype("float32") for w in se.get_weights())
    se.set_weights([w1, w2, b1, b2])
    # Class 3 never appears, so its row is NaN and it counts zero images.
    labels = rng.choice([0, 1, 2], size=30)
    images = (rng.normal(size=(30, 4, 4, 6)) + labels[:, None, None, None] * 0.3).astype("float32")

    z = images.mean(axis=(1, 2))
    s = 1 / (1 + np.exp(-(np.maximum(z @ w1 + b1, 0) @ w2 + b2)))  # the paper's gate in NumPy
    means, mu, eta2 = _numpy_eta2(s[:25], labels[:25], 4)

    names = ["zero", "one", "two", "three"]
    from_arrays = an.analyze_excitations(
        model, (images, labels), batch_size=7, class_names=names, max_images=25, verbose=0
    )
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(7)
    from_dataset = an.analyze_excitations(
        model, dataset, class_names=names, max_images=25, verbose=0
    )
    for result in (from_arrays, from_dataset):
        block = result.blocks[0]
        assert result.num_images == 25
        assert block.class_counts.tolist() == [np.sum(labels[:25] == c) for c in range(4)]
        np.testing.assert_allclose(block.class_means, means, atol=1e-6)
        np.testing.assert_allclose(block.mean, mu, atol=1e-6)
        np.testing.assert_allclose(block.channel_specificity, eta2, atol=1e-5)
        assert block.specificity == pytest.approx(eta2.mean(), abs=1e-5)


def test_bad_inputs_raise_one_clear_error():
    model = _linear_se_model()
    images = np.ones((4, 2, 2, 3), "float32")
    with pytest.raises(ValueError, match=r"outside the class range \[0, 2\).*label=2"):
        an.analyze_excitations(model, (images, np.array([0, 1, 2, 0])), class_names=["a", "b"])
    with pytest.raises(ValueError, match="unknown SE block.*blocks='nope'"):
        an.analyze_excitations(model, (images, np.zeros(4, int)), blocks=["nope"], verbose=0)
    with pytest.raises(ValueError, match=r"\(images, labels\) batches"):
        an.analyze_excitations(model, [images], verbose=0)
    with pytest.raises(ValueError, match="max_images"):
        an.analyze_excitations(model, (images, np.zeros(4, int)), max_images=0)


def test_the_blocks_and_probes_are_part_of_this_module():
    # keras_se.se_blocks holds them; keras_se.analysis stays the one import for the analysis.
    for name in ("SEBlock", "find_se_blocks", "select_blocks", "excitation_model", "walkthrough"):
        assert getattr(an, name) is getattr(se_blocks, name) and name in an.__all__
    assert all(hasattr(an, name) for name in an.__all__)
