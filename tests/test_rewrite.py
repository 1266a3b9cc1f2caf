"""Tests for keras_se.speed.rewrite: `accelerate` against the textbook graph (outputs, statistics,
gradients, freezing, saving) and `load_fused_weights` on files of the fused era."""

from __future__ import annotations

import functools
import os

import keras
import numpy as np
import pytest

from keras_se import SqueezeExcite


# --------------------------------------------------------------------------- accelerate
@functools.cache
def _generator():
    """tests/data/make_fused_era.py, the script that wrote the fused-era files."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "data", "make_fused_era.py")
    spec = importlib.util.spec_from_file_location("make_fused_era", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fused_era_network():
    """The fused-era files' network, built by today's builders (the textbook graph)."""
    return _generator().build()


def _randomize(model, seed=0):
    _generator().randomize(model, np.random.default_rng(seed))


def test_accelerate_shares_variables_and_computes_the_textbook_function():
    """Two SE bottlenecks (one grouped): both tails fused, the BN and grouped conv swapped,
    every variable the textbook one; inference, training outputs, moving statistics and
    gradients equal the textbook graph's."""
    from keras_se.speed import accelerate, bottleneck_tails

    model = _fused_era_network()
    _randomize(model)
    fast = accelerate(model)
    kinds = [type(layer).__name__ for layer in fast.layers]
    assert kinds.count("BatchNormSqueezeExcite") == 2 == len(bottleneck_tails(model))
    assert "GroupedConv2D" in kinds and "FusedBatchNormalization" in kinds
    assert not {"BatchNormSqueezeExcite", "GroupedConv2D"} & {
        type(layer).__name__ for layer in model.layers
    }
    assert [id(v) for v in sorted(fast.weights, key=lambda v: v.path)] == [
        id(v) for v in sorted(model.weights, key=lambda v: v.path)
    ]
    x = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(fast(x), model(x), rtol=1e-5, atol=1e-5)

    def train_call(net):
        before = [v.numpy() for v in model.non_trainable_weights]
        with _tape() as tape:
            y = net(x, training=True)
            loss = keras.ops.sum(y * np.arange(3, dtype="float32"))
        grads = tape.gradient(loss, model.trainable_weights)
        after = [v.numpy() for v in model.non_trainable_weights]
        for v, value in zip(model.non_trainable_weights, before):
            v.assign(value)
        return keras.ops.convert_to_numpy(y), after, [np.asarray(g) for g in grads]

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradients through GradientTape: TensorFlow")
    y_fast, stats_fast, grads_fast = train_call(fast)
    y_book, stats_book, grads_book = train_call(model)
    np.testing.assert_allclose(y_fast, y_book, rtol=1e-4, atol=1e-4)
    for a, b in zip(stats_fast, stats_book):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads_fast, grads_book):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)


def _tape():
    import tensorflow as tf

    return tf.GradientTape()


def test_accelerate_reads_freezing_from_the_textbook_layers():
    """A frozen BatchNorm (fine-tuning's --freeze-bn) keeps gamma, beta and its statistics
    through a training step of the fast twin, also where it is fused with an SE gate, whose
    weights still move; frozen, the twin's training output is its inference output."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a GradientTape step: TensorFlow")
    from keras_se import finetune
    from keras_se.speed import accelerate

    model = _fused_era_network()
    _randomize(model, seed=3)
    finetune.freeze_batchnorm(model)
    fast = accelerate(model)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    ses = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    frozen = [v.numpy() for layer in bns for v in layer.weights]
    gates = [v.numpy() for layer in ses for v in layer.weights]
    assert not any(v.trainable for layer in bns for v in layer.weights)
    assert {id(v) for v in fast.trainable_variables} == {id(v) for v in model.trainable_variables}
    x = np.random.default_rng(2).normal(size=(4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(fast(x, training=True), fast(x), rtol=1e-5, atol=1e-5)
    optimizer = keras.optimizers.SGD(0.5)
    with _tape() as tape:
        loss = keras.ops.sum(fast(x, training=True) ** 2)
    variables = fast.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    for before, v in zip(frozen, [v for layer in bns for v in layer.weights]):
        np.testing.assert_array_equal(before, v.numpy())
    assert all(
        not np.allclose(before, v.numpy())
        for before, v in zip(gates, [v for layer in ses for v in layer.weights])
    )


def test_accelerate_leaves_the_textbook_model_savable(tmp_path):
    """Saving after `accelerate` writes the textbook layers (no speed layer) and reloads."""
    from keras_se.speed import accelerate

    model = _fused_era_network()
    accelerate(model)
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    x = np.ones((1, 16, 16, 3), "float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="functional Keras model"):
        accelerate(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_files_of_the_fused_era_load():
    """tests/data/fused_era.* (written by e5f21c0, make_fused_era.py): the .keras file loads
    as saved, its weights file loads into today's textbook graph; both compute the recorded
    outputs."""
    from keras_se.speed import load_fused_weights

    data = os.path.join(os.path.dirname(__file__), "data")
    recorded = np.load(os.path.join(data, "fused_era_io.npz"))
    saved = keras.models.load_model(os.path.join(data, "fused_era.keras"), safe_mode=True)
    assert "BatchNormSqueezeExcite" in {type(layer).__name__ for layer in saved.layers}
    np.testing.assert_allclose(
        saved(recorded["inputs"]), recorded["outputs"], rtol=1e-5, atol=1e-5
    )
    model = _fused_era_network()
    load_fused_weights(model, os.path.join(data, "fused_era.weights.h5"))
    np.testing.assert_allclose(
        model(recorded["inputs"]), recorded["outputs"], rtol=1e-5, atol=1e-5
    )


def test_accelerate_freezes_the_gate_alone_where_it_is_fused():
    """SE layers frozen, BatchNorms training: in the fused tails the gate's weights are not
    trainable while the BatchNorm part still updates its statistics and affine."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("a GradientTape step: TensorFlow")
    from keras_se.speed import accelerate, bottleneck_tails

    model = _fused_era_network()
    _randomize(model, seed=4)
    for layer in model.layers:
        if isinstance(layer, SqueezeExcite):
            layer.trainable = False
    fast = accelerate(model)
    _, bn, se = bottleneck_tails(model)[0]
    trainable = {id(v) for v in fast.trainable_variables}
    assert not {id(v) for v in se.weights} & trainable
    assert {id(bn.gamma), id(bn.beta)} <= trainable
    gate, stats = [v.numpy() for v in se.weights], bn.moving_mean.numpy()
    x = np.random.default_rng(5).normal(size=(4, 16, 16, 3)).astype("float32")
    with _tape() as tape:
        loss = keras.ops.sum(fast(x, training=True) ** 2)
    variables = fast.trainable_variables
    keras.optimizers.SGD(0.5).apply_gradients(zip(tape.gradient(loss, variables), variables))
    for before, v in zip(gate, se.weights):
        np.testing.assert_array_equal(before, v.numpy())
    assert not np.allclose(stats, bn.moving_mean.numpy())
