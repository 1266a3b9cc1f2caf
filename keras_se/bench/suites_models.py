"""The SE-cost figures: SE-ResNet-50 against ResNet-50, the SE layer, the input pipeline, memory.

The paper's Section 4 ("Model and computational complexity"): SE-ResNet-50 costs +1.8 %
CPU inference time and +10 % GPU training time over ResNet-50. Each function here returns
`keras_se.bench.harness.Figure` rows measured on the active Keras backend.
"""

from __future__ import annotations

import statistics

import keras
import numpy as np

from keras_se import models, speed
from keras_se.bench.harness import (
    Figure,
    block,
    compiled_forward,
    compiled_train_step,
    interleave,
    timed_figure,
)
from keras_se.bench.process import read_worker_result, run_worker
from keras_se.layers import SqueezeExcite


def trained_as(model, *, tails=True):
    """``model`` as ``keras-se train`` runs it: its fast twin (`keras_se.speed.accelerate`).

    Every keras_se row times what training runs; ``tails=False`` keeps each bottleneck's
    ``conv → BatchNormalization → SqueezeExcite`` unfused (the ``*_textbook`` rows).

    Example:
        >>> from keras_se import models, speed
        >>> model = models.SEResNet50(input_shape=(32, 32, 3), classes=3)
        >>> fast = trained_as(model)  # the same variables
        >>> {id(v) for v in fast.weights} == {id(v) for v in model.weights}
        True
    """
    return speed.accelerate(model, tails=tails)


def textbook_se_resnet50(*, size, classes):
    """The SE-ResNet-50 of the ``*_textbook`` rows: the fast twin with its SE tails as built.

    Each bottleneck keeps ``conv → BatchNormalization → SqueezeExcite`` (the other speed
    layers stay): what `keras_se.speed.accelerate`'s SE tails save. `bench_models`
    times it against ResNet-50 in the ``inference_compiled_textbook`` and
    ``train_step_textbook`` rows.

    Returns:
        ``(model, labels)``: the model and the (A, B) labels of its rows.
    """
    model = models.SEResNet50(input_shape=(size, size, 3), classes=classes)
    return trained_as(model, tails=False), ("SE-ResNet-50, textbook tails", "ResNet-50")


def bench_models(*, size, batch, repeats, slow_repeats=None, eager_repeats=None, classes=1000):
    """Figures 1-4: SE-ResNet-50 vs ResNet-50 (and vs keras.applications) on one backend.

    ``slow_repeats``: pairs of the training-step rows (default ``repeats // 2``, at least 3);
    ``eager_repeats``: of the eager row (default ``slow_repeats``).
    """
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, size=(batch,))
    se = trained_as(models.SEResNet50(input_shape=(size, size, 3), classes=classes))
    plain = trained_as(models.ResNet50(input_shape=(size, size, 3), classes=classes))
    textbook, textbook_pair = textbook_se_resnet50(size=size, classes=classes)
    figures = []
    compiled = f"compiled inference, batch {batch}, {size}x{size}"
    training = f"training step (SGD), batch {batch}, {size}x{size}"
    if slow_repeats is None:
        slow_repeats = max(3, repeats // 2)  # eager calls and training steps take longer
    if eager_repeats is None:
        eager_repeats = slow_repeats

    def compare(name, description, labels, fn_a, fn_b, repeats=repeats):
        figures.append(timed_figure(name, description, labels, fn_a, fn_b, repeats=repeats))

    fa, fb, ft = compiled_forward(se), compiled_forward(plain), compiled_forward(textbook)
    pair = ("SE-ResNet-50", "ResNet-50")
    compare("inference_compiled", compiled, pair, lambda: fa(x), lambda: fb(x))
    compare("inference_compiled_textbook", compiled, textbook_pair, lambda: ft(x), lambda: fb(x))

    ref = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=classes)
    fr = compiled_forward(ref)
    labels = ("keras_se ResNet-50", "keras.applications.ResNet50")
    compare("vs_keras_applications", compiled, labels, lambda: fb(x), lambda: fr(x))

    def eager(model):
        return lambda: block(model(x, training=False))

    eager_description = f"eager model(x), batch {batch}, {size}x{size}"
    compare("inference_eager", eager_description, pair, eager(se), eager(plain), eager_repeats)

    ta, tb, tt = (compiled_train_step(m) for m in (se, plain, textbook))
    compare("train_step", training, pair, lambda: ta(x, y), lambda: tb(x, y), slow_repeats)
    compare(
        "train_step_textbook",
        training,
        textbook_pair,
        lambda: tt(x, y),
        lambda: tb(x, y),
        slow_repeats,
    )
    return figures


def bench_se_layer(*, shape, repeats, ratio=16, min_sample=0.0):
    """Figure 5: `SqueezeExcite` vs the naive functional block and the memory floor.

    ``min_sample``: seconds each repetition times at least (`calls_per_sample`): the
    layer takes milliseconds, so each repetition times several calls of each side.
    """
    # A backend tensor, and outputs left as tensors: the figures time the layer, not the
    # transfer of 50 MB into and out of the framework on every call (on JAX that was most
    # of each call, and its page faults most of the noise).
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).random(shape).astype("float32"))
    channels = shape[-1]

    inputs = keras.Input(shape[1:])
    ours = keras.Model(inputs, SqueezeExcite(ratio)(inputs))
    z = keras.layers.GlobalAveragePooling2D()(inputs)
    z = keras.layers.Dense(channels // ratio, activation="relu")(z)
    z = keras.layers.Dense(channels, activation="sigmoid")(z)
    z = keras.layers.Reshape((1, 1, channels))(z)
    naive = keras.Model(inputs, keras.layers.Multiply()([inputs, z]))
    # The floor: one global mean and one channel-scale pass, nothing else.
    floor = keras.Model(inputs, _FloorSE()(inputs))

    f_ours, f_naive, f_floor = (
        compiled_forward(ours, to_numpy=False),
        compiled_forward(naive, to_numpy=False),
        compiled_forward(floor, to_numpy=False),
    )
    description = f"SE on {'x'.join(str(d) for d in shape)} (compiled)"
    return [
        timed_figure(
            name,
            description,
            ("SqueezeExcite", label),
            lambda: f_ours(x),
            fn,
            repeats=repeats,
            min_sample=min_sample,
        )
        for name, label, fn in (
            ("se_layer_vs_floor", "mean + scale floor", lambda: f_floor(x)),
            ("se_layer_vs_naive", "GAP-Dense-Dense-Multiply", lambda: f_naive(x)),
        )
    ]


class _FloorSE(keras.layers.Layer):
    """x * mean(x): the memory traffic any SE block needs (read twice, write once)."""

    def call(self, x):
        return x * keras.ops.mean(x, axis=(1, 2), keepdims=True)


def bench_input_pipeline(*, repeats, batch=64):
    """Figure 6: digits tf.data pipeline images/s vs SE-ResNet-18 training images/s."""
    from keras_se import data as data_lib

    info, sources = data_lib.describe_dataset("digits")
    model = models.SEResNet18(input_shape=info.image_shape, classes=info.num_classes)
    step = compiled_train_step(model)
    x, y = next(
        iter(data_lib.make_dataset(info, sources["train"], training=True, batch_size=batch))
    )
    x, y = np.asarray(x), np.asarray(y)

    def pipeline_epoch(epoch=[0]):  # noqa: B006 - a counter: a new epoch (seed) each call
        epoch[0] += 1
        n = 0
        for images, _ in data_lib.make_dataset(
            info, sources["train"], training=True, batch_size=batch, epoch=epoch[0]
        ):
            n += int(images.shape[0])
        return n

    images = pipeline_epoch()
    steps = 5

    def train_steps():
        for _ in range(steps):
            step(x, y)

    a, b = interleave(pipeline_epoch, train_steps, repeats=repeats, warmup=1)
    # Convert to images/s: pipeline images/s over model images/s.
    pipeline_rate = [images / t for t in a]
    model_rate = [steps * batch / t for t in b]
    return [
        Figure(
            "input_pipeline",
            f"digits pipeline vs SE-ResNet-18 training, batch {batch}",
            "tf.data images/s",
            "training images/s",
            pipeline_rate,
            model_rate,
            unit="images/s",
            backend=keras.backend.backend(),
        )
    ]


def bench_memory(*, size, batch, repeats):
    """Figure 7: peak resident memory of training steps, each model in a fresh process."""
    peaks = {"se_resnet50": [], "resnet50": []}
    for rep in range(repeats):
        order = ("se_resnet50", "resnet50") if rep % 2 == 0 else ("resnet50", "se_resnet50")
        for name in order:
            result = run_worker("memory", name, size, batch, timeout=900)
            info = read_worker_result(result.stdout)
            # The steps' memory: the RSS peak sampled during the first 3 steps (tracing included)
            # minus the RSS before them (runtime and weights).
            peaks[name].append(max(info["peak_mib"] - info["base_mib"], 1e-3))
    return [
        Figure(
            "train_peak_memory",
            f"memory of the first 3 training steps (peak RSS over the built model), batch {batch}, {size}x{size}",
            "SE-ResNet-50",
            "ResNet-50",
            peaks["se_resnet50"],
            peaks["resnet50"],
            unit="MiB",
            backend=keras.backend.backend(),
        )
    ]


def bench_device(*, size, batch, repeats, policy="mixed_bfloat16"):
    """The accelerator figures: mixed precision + XLA, SE-ResNet-50 vs ResNet-50.

    Inference (``predict_on_batch``) and training (``train_on_batch``) with
    ``jit_compile=True`` under ``policy``, on whatever device the backend uses (a GPU
    when one is visible; runs on JAX with CUDA and no TensorFlow). Times per batch; the
    markdown shows images/s.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        rng = np.random.default_rng(0)
        x = rng.random((batch, size, size, 3)).astype("float32")
        y = rng.integers(0, 1000, size=(batch,))
        compiled = []
        for model in (
            trained_as(models.SEResNet50(input_shape=(size, size, 3))),
            trained_as(models.ResNet50(input_shape=(size, size, 3))),
        ):
            model.compile(
                optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy",
                jit_compile=True,
            )
            compiled.append(model)
        se, plain = compiled
        label = f"{policy}, XLA, batch {batch}, {size}x{size}"
        pair = ("SE-ResNet-50", "ResNet-50")
        figures = [
            timed_figure(
                "device_inference",
                f"inference, {label}",
                pair,
                lambda: block(se.predict_on_batch(x)),
                lambda: block(plain.predict_on_batch(x)),
                repeats=repeats,
                warmup=3,
            ),
            timed_figure(
                "device_train_step",
                f"training step, {label}",
                pair,
                lambda: se.train_on_batch(x, y),
                lambda: plain.train_on_batch(x, y),
                repeats=repeats,
                warmup=3,
            ),
        ]
        for f in figures:
            f.description += f" ({batch / statistics.median(f.a):.0f} vs {batch / statistics.median(f.b):.0f} images/s)"
        return figures
    finally:
        keras.config.set_dtype_policy(previous)
