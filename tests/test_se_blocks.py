"""keras_se.se_blocks: SE blocks found by type and named, their gates, one block on one image."""

from __future__ import annotations

import doctest
import pathlib

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite, add_squeeze_excite, models
from keras_se import analysis as an
from keras_se import se_blocks as sb
from keras_se.models.resnet import build_resnet

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow  # 2 s or more on 2 cores
def test_blocks_found_by_type_in_registry_and_retrofitted_models():
    model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
    blocks = sb.find_se_blocks(model)
    assert [(b.stage, b.index, b.depth) for b in blocks] == [
        (s, i, 2 * (s - 2) + i) for s in (2, 3, 4, 5) for i in (1, 2)
    ]
    assert [b.channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    # The paper's selection: last block of each stage, then the final (up to 3) blocks.
    assert [b.label for b in sb.default_blocks(blocks)] == [
        "SE_2_2",
        "SE_3_2",
        "SE_4_2",
        "SE_5_1",
        "SE_5_2",
    ]
    assert [b.name for b in sb.select_blocks(blocks, ["SE_3_1", "conv2_block1_se", 8])] == [
        "conv2_block1_se",
        "conv3_block1_se",
        "conv5_block2_se",
    ]

    # A plain functional net retrofitted with SE blocks: names carry no stage, so stages
    # are the runs of blocks at one resolution (8x8: two blocks, 4x4: one).
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    for k in range(2):
        y = keras.layers.Conv2D(8, 3, padding="same", name=f"a{k}")(x)
        x = keras.layers.Add(name=f"add{k}")([x, y])
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="down")(x)
    y = keras.layers.Conv2D(16, 3, padding="same", name="b0")(x)
    x = keras.layers.Add(name="add2")([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    plain = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="no SqueezeExcite layers"):
        sb.find_se_blocks(plain)
    retrofitted = add_squeeze_excite(plain, ratio=4)
    blocks = sb.find_se_blocks(retrofitted)
    assert [(b.stage, b.index, b.channels) for b in blocks] == [(1, 1, 8), (1, 2, 8), (2, 1, 16)]
    images = np.random.default_rng(1).normal(size=(6, 8, 8, 3)).astype("float32")
    result = an.analyze_excitations(retrofitted, (images, np.arange(6) % 2), verbose=0)
    assert [b.name for b in result.blocks] == [b.name for b in blocks]
    assert all(0 <= b.specificity <= 1 for b in result.blocks)


@pytest.mark.slow  # 2 s or more on 2 cores
@pytest.mark.parametrize("name, channels", [("se_resnet18", 256), ("se_resnet50", 1024)])
def test_walkthrough_records_u_z_s_and_scaled_maps(name, channels):
    model = models.get(name, input_shape=(16, 16, 3), classes=3)
    layer = model.get_layer("conv4_block1_se")
    image = np.random.default_rng(2).normal(size=(16, 16, 3)).astype("float32")
    walk = sb.walkthrough(model, image, block="SE_4_1")
    assert walk.block.name == "conv4_block1_se" and walk.features.shape == (4, 4, channels)
    # U is the map the model feeds the SE layer (a SqueezeExcite scales its input).
    assert isinstance(layer, SqueezeExcite)
    u = keras.ops.convert_to_numpy(keras.Model(model.inputs, layer.input)(image[None]))[0]
    np.testing.assert_allclose(walk.features, u, rtol=1e-5, atol=1e-5)
    z = walk.features.mean(axis=(0, 1))
    w1, w2, b1, b2 = layer.get_weights()[:4]
    s = 1 / (1 + np.exp(-(np.maximum(z @ w1 + b1, 0) @ w2 + b2)))
    np.testing.assert_allclose(walk.squeeze, z, atol=1e-6)
    np.testing.assert_allclose(walk.excitation, s, atol=1e-5)
    # X~ is what the model computes; it must equal s * U.
    np.testing.assert_allclose(walk.scaled, walk.features * s, atol=1e-5)
    last = 2 if name == "se_resnet18" else 4  # the default: the last block of stage 3
    assert sb.walkthrough(model, image).block.name == f"conv3_block{last}_se"


@pytest.mark.slow  # 2 s or more on 2 cores
def test_any_se_gate_is_read_the_same_way_as_a_squeeze_excite():
    # keras_se.speed's twin replaces conv-BN-SE tails by one BatchNorm+SE layer (an SEGate
    # whose U is BN(x) computed inside): the blocks, gates and walkthrough must not change.
    speed = pytest.importorskip("keras_se.speed")
    textbook = build_resnet(stackwise_num_blocks=(1, 1, 1, 1), input_shape=(32, 32, 3), classes=3)
    for layer in textbook.layers:  # BatchNorms that are not the identity: a wrong U shows
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))
    fast = speed.accelerate(textbook)
    blocks = sb.find_se_blocks(fast)
    assert any(not isinstance(b.layer, SqueezeExcite) for b in blocks)
    expected_blocks = sb.find_se_blocks(textbook)
    assert [(b.name, b.stage, b.index, b.channels) for b in blocks] == [
        (b.name, b.stage, b.index, b.channels) for b in expected_blocks
    ]
    images = np.random.default_rng(4).normal(size=(3, 32, 32, 3)).astype("float32")
    expected = sb.excitation_model(textbook).predict_on_batch(images)
    got = sb.excitation_model(fast).predict_on_batch(images)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    want, walk = sb.walkthrough(textbook, images[0]), sb.walkthrough(fast, images[0])
    for part in ("features", "squeeze", "excitation", "scaled"):
        np.testing.assert_allclose(getattr(walk, part), getattr(want, part), rtol=1e-4, atol=1e-4)


def test_bad_models_and_images_raise_one_clear_error():
    with pytest.raises(TypeError, match="keras.Model"):
        sb.find_se_blocks("se_resnet18")
    model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
    with pytest.raises(ValueError, match=r"one image .*shape \(2, 16, 16, 3\)"):
        sb.walkthrough(model, np.zeros((2, 16, 16, 3), "float32"))
    with pytest.raises(ValueError, match="unknown SE block.*blocks='SE_9_9'"):
        sb.walkthrough(model, np.zeros((16, 16, 3), "float32"), block="SE_9_9")


@pytest.mark.slow
def test_docstring_examples_run(tmp_path, monkeypatch):
    """The module's ``>>>`` examples run and print what they show (as tests/test_docs.py does)."""
    sybil = pytest.importorskip("sybil", reason="needs the docs extra: pip install -e '.[docs]'")
    from sybil.parsers.rest import DocTestParser

    monkeypatch.chdir(tmp_path)
    parser = DocTestParser(optionflags=doctest.ELLIPSIS)
    document = sybil.Sybil(parsers=[parser]).parse(ROOT / "keras_se" / "se_blocks.py")
    examples = list(document)
    for example in examples:
        example.evaluate()
    assert len(examples) > 10
