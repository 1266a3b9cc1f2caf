"""Timing side by side: `Figure`, interleaved repetitions, and a compiled step per backend.

The paper (Hu et al., 2018, Section 4 "Model and computational complexity") reports that
SE-ResNet-50 costs 3.87 vs 3.86 GFLOPs, +1.8 % CPU inference time and +10 % GPU training
time over ResNet-50. Every comparison of `keras_se.bench` is measured in one process, A and B
interleaved (A, B, A, B, ...) after warm-up, and reported as medians with min–max over
the repetitions; only ratios from one run are compared against goals (these machines are
noisy), absolute times are printed but never asserted.

Backend-agnostic: the model comparisons use a compiled forward/training step of the
active Keras backend (``tf.function`` on TensorFlow, ``jax.jit`` on JAX).
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import math
import statistics
import time

import keras
import numpy as np

from keras_se_core.errors import UsageError

#: goal of each figure: ratio A/B must be <= (or >= for "min") the value.
GOALS = {
    "inference_compiled": ("<=", 1.02),
    "train_step": ("<=", 1.05),
    "vs_keras_applications": ("<=", 1.00),
    "inference_eager": ("<=", 1.10),
    "se_layer_vs_floor": ("<=", 1.10),
    "se_layer_vs_naive": ("<=", 1.00),
    "input_pipeline": (">=", 5.0),
    "train_peak_memory": ("<=", 1.10),
    "device_inference": ("<=", 1.02),
    "device_train_step": ("<=", 1.10),  # the paper's GPU training figure (190 -> 209 ms)
    # keras_se against what users would pick instead (timm on PyTorch, its faster layout)
    "peer_inference": ("<=", 0.95),
    "peer_train_step": ("<=", 0.95),
    # the training loop (keras_se.bench.suites_training)
    "loop_vs_fit": ("<=", 1.02),
    "read_volume_2": ("<=", 1.05),
    "read_volume_4": ("<=", 1.05),
    "excitation_log_overhead": ("<=", 1.05),
    # the bfloat16 export (`bench_bf16`): float32 ÷ bfloat16 time = bfloat16 ÷ float32 images/s
    "bf16_export_speedup_b64": (">=", 1.5),
    # uint8 -> preprocessing -> probabilities through the SavedModel vs the bare compiled forward
    "serving_overhead": ("<=", 1.03),
}


@dataclasses.dataclass
class Figure:
    """One A/B comparison: times (or sizes) of A and B and the ratio A/B."""

    name: str
    description: str
    a_label: str
    b_label: str
    a: list
    b: list
    unit: str = "s"
    backend: str = ""
    #: calls timed together per repetition (`calls_per_sample`); the times are per call
    calls: int = 1

    @property
    def ratios(self):
        return [x / y for x, y in zip(self.a, self.b)]

    @property
    def ratio(self):
        return (
            statistics.median(self.ratios)
            if len(self.a) == len(self.b)
            else (statistics.median(self.a) / statistics.median(self.b))
        )

    def goal(self):
        return GOALS.get(self.name)

    def passed(self):
        goal = self.goal()
        if goal is None:
            return None
        op, value = goal
        return self.ratio <= value if op == "<=" else self.ratio >= value

    def as_dict(self):
        goal = self.goal()
        return {
            "name": self.name,
            "backend": self.backend,
            "description": self.description,
            "a": self.a_label,
            "b": self.b_label,
            "unit": self.unit,
            "a_median": statistics.median(self.a),
            "a_min": min(self.a),
            "a_max": max(self.a),
            "b_median": statistics.median(self.b),
            "b_min": min(self.b),
            "b_max": max(self.b),
            "ratio": self.ratio,
            "ratio_min": min(self.ratios) if len(self.a) == len(self.b) else None,
            "ratio_max": max(self.ratios) if len(self.a) == len(self.b) else None,
            "repetitions": len(self.a),
            "calls": self.calls,
            "goal": None if goal is None else f"{goal[0]} {goal[1]}",
            "passed": self.passed(),
        }


def calls_per_sample(fn_a, fn_b, *, min_sample):
    """How many calls of the faster of ``fn_a``/``fn_b`` last ``min_sample`` seconds (at least 1).

    Calls each function once (after warm-up) to find out. A millisecond call timed alone
    is at the mercy of one thread wake-up or one page fault; `interleave` with this many
    calls per repetition times a sample long enough to average those out (the SE-layer
    figures on JAX: per-repetition ratios 0.64-1.57 one at a time).
    """
    fastest = float("inf")
    for fn in (fn_a, fn_b):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return max(1, math.ceil(min_sample / max(fastest, 1e-9)))


def interleave(fn_a, fn_b, *, repeats, warmup=2, inner=1):
    """Times ``fn_a`` and ``fn_b`` alternately; returns two lists of seconds per call.

    Each repetition times ``inner`` calls of each side, alternating call by call (A B,
    then B A in the next repetition, so neither always runs first), and records each
    side's mean call time. Alternating single calls rather than blocks of ``inner``
    calls keeps both sides inside the same few milliseconds of the machine's state,
    which on a shared VM changes within a fraction of a second. Python's garbage
    collector is off while a repetition is timed and runs between repetitions, so a
    collection of the framework's many small objects never lands inside one side's time.
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    enabled = gc.isenabled()
    clock = time.perf_counter
    try:
        for rep in range(repeats):
            first, second = (fn_a, fn_b) if rep % 2 == 0 else (fn_b, fn_a)
            spent = [0.0, 0.0]
            gc.collect()
            gc.disable()
            for _ in range(inner):
                start = clock()
                first()
                middle = clock()
                second()
                spent[0] += middle - start
                spent[1] += clock() - middle
            if enabled:
                gc.enable()
            a, b = spent if rep % 2 == 0 else spent[::-1]
            times_a.append(a / inner)
            times_b.append(b / inner)
    finally:
        if enabled:
            gc.enable()
    return times_a, times_b


# --------------------------------------------------------------------------- backend glue
def block(value):
    """Waits for an asynchronous result (JAX dispatch) and returns it."""
    if hasattr(value, "block_until_ready"):
        value.block_until_ready()
    elif isinstance(value, (list, tuple)):
        for v in value:
            block(v)
    else:
        keras.ops.convert_to_numpy(value) if keras.backend.backend() == "jax" else None
    return value


def _unsupported(backend):
    return UsageError(
        f"keras-se bench supports the tensorflow and jax backends. Received: backend={backend!r}"
    )


def compiled_forward(model, *, to_numpy=True):
    """A compiled inference function ``x -> model(x, training=False)``.

    ``to_numpy=False`` returns the backend's tensor once it is computed instead of a NumPy
    copy: for a figure of a layer whose output is as large as its input (the SE layer),
    where copying tens of megabytes back would be most of what is timed.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), jit_compile=False)
        # eager TensorFlow returns a computed tensor; .numpy() only adds the copy
        return (lambda x: fn(x).numpy()) if to_numpy else fn
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def fn(x):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return out

        if not to_numpy:
            return lambda x: fn(x).block_until_ready()
        return lambda x: np.asarray(fn(x))
    raise _unsupported(backend)


def compiled_train_step(model, *, learning_rate=0.01):
    """A compiled SGD step (forward, backward, update) on ``(x, y)``.

    TensorFlow: a ``tf.function`` (no XLA: slower on CPU). JAX: Keras's ``jax.jit`` train
    step (``jit_compile=True``; with ``False`` Keras runs the JAX step op by op, eagerly,
    which is what the JAX training rows measured before: 2.5x TensorFlow's time and +-20 %).
    """
    backend = keras.backend.backend()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=backend == "jax",
    )
    if backend == "tensorflow":
        import tensorflow as tf

        optimizer = model.optimizer
        loss_fn = keras.losses.SparseCategoricalCrossentropy()

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        return lambda x, y: float(step(x, y))
    if backend == "jax":
        model.make_train_function()
        return lambda x, y: float(model.train_on_batch(x, y))
    raise _unsupported(backend)


# --------------------------------------------------------------------------- figures
def timed_figure(name, description, labels, fn_a, fn_b, *, repeats, warmup=2, min_sample=0.0):
    """Times ``fn_a`` against ``fn_b`` with `interleave`; the `Figure` of the active backend.

    With ``min_sample`` each repetition times `calls_per_sample` calls of each side.
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    calls = calls_per_sample(fn_a, fn_b, min_sample=min_sample) if min_sample else 1
    # with samples of several calls, one untimed sample of each side first (the allocator's
    # and caches' steady state: a fresh JAX child's first samples ran up to 20 % slower)
    a, b = interleave(fn_a, fn_b, repeats=repeats, warmup=calls if min_sample else 0, inner=calls)
    return Figure(name, description, *labels, a, b, backend=keras.backend.backend(), calls=calls)


def pool_figures(runs):
    """One `Figure` per name from several processes' figures: their repetitions pooled.

    Args:
        runs: lists of `Figure`, one list per process, same names in each.

    Returns:
        The figures of the first run, each with the repetitions (A/B pairs) of every run,
        so its median is taken over all pairs. ``calls`` is the median of the runs'.
    """
    pooled, calls = {}, {}
    for figures in runs:
        for f in figures:
            if f.name not in pooled:
                pooled[f.name] = dataclasses.replace(f, a=list(f.a), b=list(f.b))
            else:
                pooled[f.name].a += f.a
                pooled[f.name].b += f.b
            calls.setdefault(f.name, []).append(f.calls)
    for name, f in pooled.items():
        f.calls = round(statistics.median(calls[name]))
    return list(pooled.values())


def interleave_parties(parties, *, repeats, warmup=2, gap=0.05):
    """Times several step callables (each returns its own seconds) in rotating order.

    Repetition ``r`` runs the parties in the ``r``-th of their permutations (cycling), so
    with two parties the order is A B, B A, A B, ... and with three every party is first,
    middle and last equally often. ``gap`` seconds of idle time separate two steps, so the
    previous process's thread pools (OpenMP and Eigen spin a while before sleeping) have
    gone quiet when the next one starts. Returns one list of seconds per party.
    """
    orders = list(itertools.permutations(range(len(parties))))
    for _ in range(warmup):
        for party in parties:
            party()
    times = [[] for _ in parties]
    for rep in range(repeats):
        for index in orders[rep % len(orders)]:
            time.sleep(gap)
            times[index].append(parties[index]())
    return times
