"""What SE costs, measured side by side: the harness behind ``keras-se bench``.

The paper (Hu et al., 2018, Section 4 "Model and computational complexity") reports that
SE-ResNet-50 costs 3.87 vs 3.86 GFLOPs, +1.8 % CPU inference time and +10 % GPU training
time over ResNet-50. Every comparison here is measured in one process, A and B
interleaved (A, B, A, B, ...) after warm-up, and reported as medians with min–max over
the repetitions; only ratios from one run are compared against goals (these machines are
noisy), absolute times are printed but never asserted.

Backend-agnostic: the model comparisons use a compiled forward/training step of the
active Keras backend (``tf.function`` on TensorFlow, ``jax.jit`` on JAX); `run_benchmarks`
can repeat the layer and model figures under the JAX backend in a subprocess.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np

from keras_se import models
from keras_se.layers import SqueezeExcite
from keras_se_core.errors import UsageError
from keras_se_core.fileio import write_json, write_text

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
    # the training loop (keras_se.bench_training)
    "loop_vs_fit": ("<=", 1.02),
    "read_volume_2": ("<=", 1.05),
    "read_volume_4": ("<=", 1.05),
    "excitation_log_overhead": ("<=", 1.05),
    # the bfloat16 export (`bench_bf16`): float32 ÷ bfloat16 time = bfloat16 ÷ float32 images/s
    "bf16_export_speedup_b64": (">=", 1.5),
    # uint8 -> preprocessing -> probabilities through the SavedModel vs the bare compiled forward
    "serving_overhead": ("<=", 1.03),
}

#: The figure groups ``run_benchmarks(only=...)`` (``keras-se bench --only``) selects from.
GROUPS = ("layer", "models", "pipeline", "memory", "training", "jax", "peer", "bf16")
#: The groups a plain ``keras-se bench`` runs (the peer comparison is opt-in: ``--peer timm``;
#: the bfloat16 export and peak figures too: ``--only bf16``).
DEFAULT_GROUPS = ("layer", "models", "pipeline", "memory", "training", "jax")


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
def _block(value):
    """Waits for an asynchronous result (JAX dispatch) and returns it."""
    if hasattr(value, "block_until_ready"):
        value.block_until_ready()
    elif isinstance(value, (list, tuple)):
        for v in value:
            _block(v)
    else:
        keras.ops.convert_to_numpy(value) if keras.backend.backend() == "jax" else None
    return value


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
    raise UsageError(
        f"keras-se bench supports the tensorflow and jax backends. Received: backend={backend!r}"
    )


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
    raise UsageError(
        f"keras-se bench supports the tensorflow and jax backends. Received: backend={backend!r}"
    )


# --------------------------------------------------------------------------- figures
def _figure(name, description, labels, fn_a, fn_b, *, repeats, warmup=2, min_sample=0.0):
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


def bench_models(*, size, batch, repeats, slow_repeats=None, eager_repeats=None, classes=1000):
    """Figures 1-4: SE-ResNet-50 vs ResNet-50 (and vs keras.applications) on one backend.

    ``slow_repeats``: pairs of the training-step rows (default ``repeats // 2``, at least 3);
    ``eager_repeats``: of the eager row (default ``slow_repeats``).
    """
    rng = np.random.default_rng(0)
    x = rng.random((batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, size=(batch,))
    se = models.SEResNet50(input_shape=(size, size, 3), classes=classes)
    plain = models.ResNet50(input_shape=(size, size, 3), classes=classes)
    # The textbook graph (conv → BatchNormalization → SqueezeExcite in each bottleneck):
    # what keras_se's fused tail (the default, `blocks.fused_bottleneck_tail`) saves.
    textbook = models.SEResNet50(input_shape=(size, size, 3), classes=classes, se_fused=False)
    figures = []
    compiled = f"compiled inference, batch {batch}, {size}x{size}"
    training = f"training step (SGD), batch {batch}, {size}x{size}"
    if slow_repeats is None:
        slow_repeats = max(3, repeats // 2)  # eager calls and training steps take longer
    if eager_repeats is None:
        eager_repeats = slow_repeats

    def compare(name, description, labels, fn_a, fn_b, repeats=repeats):
        figures.append(_figure(name, description, labels, fn_a, fn_b, repeats=repeats))

    fa, fb, ft = compiled_forward(se), compiled_forward(plain), compiled_forward(textbook)
    pair = ("SE-ResNet-50", "ResNet-50")
    compare("inference_compiled", compiled, pair, lambda: fa(x), lambda: fb(x))
    textbook_pair = ("SE-ResNet-50, se_fused=False", "ResNet-50")
    compare("inference_compiled_textbook", compiled, textbook_pair, lambda: ft(x), lambda: fb(x))

    ref = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=classes)
    fr = compiled_forward(ref)
    labels = ("keras_se ResNet-50", "keras.applications.ResNet50")
    compare("vs_keras_applications", compiled, labels, lambda: fb(x), lambda: fr(x))

    def eager(model):
        return lambda: _block(model(x, training=False))

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
        _figure(
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


#: Prefix of the one result line a `keras_se._bench_worker` command prints.
WORKER_RESULT_PREFIX = "JSON"


def read_worker_result(stdout):
    """The result a worker printed (its ``JSON...`` line), from the child's stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(WORKER_RESULT_PREFIX):
            return json.loads(line[len(WORKER_RESULT_PREFIX) :])
    raise ValueError(
        f"No {WORKER_RESULT_PREFIX} result line in the worker's output: {stdout[-500:]!r}"
    )


def _run_worker(*args, env=None, timeout, check=True):
    """Runs ``python -m keras_se._bench_worker ARGS`` (a fresh process); its CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "keras_se._bench_worker", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=check,
    )


def bench_memory(*, size, batch, repeats):
    """Figure 7: peak resident memory of training steps, each model in a fresh process."""
    peaks = {"se_resnet50": [], "resnet50": []}
    for rep in range(repeats):
        order = ("se_resnet50", "resnet50") if rep % 2 == 0 else ("resnet50", "se_resnet50")
        for name in order:
            result = _run_worker("memory", name, size, batch, timeout=900)
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
            models.SEResNet50(input_shape=(size, size, 3)),
            models.ResNet50(input_shape=(size, size, 3)),
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
            _figure(
                "device_inference",
                f"inference, {label}",
                pair,
                lambda: _block(se.predict_on_batch(x)),
                lambda: _block(plain.predict_on_batch(x)),
                repeats=repeats,
                warmup=3,
            ),
            _figure(
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


# --------------------------------------------------------------------------- peer: timm on PyTorch
#: Peers ``keras-se bench --peer`` knows.
PEERS = ("timm",)
#: keras_se registry name -> the timm model with the same architecture (the Caffe port
#: whose keys `keras_se.weights.load_reference_weights` maps).
PEER_MODELS = {
    "se_resnet50": "legacy_seresnet50",
    "se_resnext50_32x4d": "legacy_seresnext50_32x4d",
}
PEER_INSTALL = "pip install torch timm"
#: PyTorch memory layouts timed for the peer (NCHW is PyTorch's default).
TORCH_LAYOUTS = ("nchw", "channels_last")
#: max |logit diff| / max |logit| allowed between keras_se and timm (float32, same weights).
PEER_TOLERANCE = 1e-3


#: What the peer Python imports to run ``python -m keras_se._bench_worker serve torch``.
PEER_MODULES = ("torch", "timm", "safetensors.torch", "keras_se._bench_worker")
#: What it needs installed for them (keras_se brings keras, numpy and safetensors).
PEER_PYTHON_INSTALL = "pip install keras-se torch timm"
#: Imports each module named on the command line; prints ``module: Error: message`` for the
#: first that fails (exit 1). Run as the worker runs: same cwd, ``KERAS_BACKEND=torch``.
_PEER_PROBE = (
    "import importlib, sys\n"
    "for name in sys.argv[1:]:\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "    except Exception as err:\n"
    "        print(f'{name}: {type(err).__name__}: {err}'.splitlines()[0])\n"
    "        sys.exit(1)\n"
)


def _probe_peer_python(python):
    """None when ``python`` imports every `PEER_MODULES`, else why not (one line)."""
    try:
        probe = subprocess.run(
            [python, "-c", _PEER_PROBE, *PEER_MODULES],
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, KERAS_BACKEND="torch"),
        )
    except OSError as err:
        return f"cannot run it ({err.strerror or err})"
    if probe.returncode == 0:
        return None
    lines = (probe.stdout.strip() or probe.stderr.strip() or f"exit {probe.returncode}").splitlines()
    return lines[-1]


def find_peer_python(python=None):
    """The Python that runs the PyTorch side: ``python``, else this one, else ``$KERAS_SE_PEER_PYTHON``.

    The side runs as ``python -m keras_se._bench_worker serve torch``: besides torch and
    timm its Python needs keras_se itself (`PEER_MODULES`). Checked here, before any
    figure is timed.

    Raises:
        UsageError: an explicit ``python`` that cannot import them (the message names
            what failed and what to install into that interpreter), or none of the
            default candidates imports them.
    """
    if python:
        reason = _probe_peer_python(python)
        if reason is None:
            return python
        if reason.startswith("cannot run it"):
            raise UsageError(
                f"--peer timm needs a Python with PyTorch and timm ({PEER_INSTALL}); "
                f"--peer-python {reason}. Received: peer_python={python!r}"
            )
        raise UsageError(
            f"--peer-python cannot run the timm side of --peer timm ({reason}): that interpreter "
            f"needs keras_se, torch and timm: {python} -m {PEER_PYTHON_INSTALL}. "
            f"Received: peer_python={python!r}"
        )
    for candidate in filter(None, [sys.executable, os.environ.get("KERAS_SE_PEER_PYTHON")]):
        if _probe_peer_python(candidate) is None:
            return candidate
    raise UsageError(
        f"--peer timm needs PyTorch and timm: {PEER_INSTALL} (or pip install 'keras-se[torch]' timm), "
        "or name a Python that has them and keras_se with --peer-python or $KERAS_SE_PEER_PYTHON. "
        f"Received: peer_python={sys.executable!r}"
    )


class LiveWorker:
    """A child process (``python -m keras_se._bench_worker serve SIDE``) answering one request per line.

    Requests and replies are JSON objects; a reply is the child's ``JSON...`` line (other
    output is skipped), ``{"error": ...}`` raises here. The child's stderr goes to a
    temporary file whose tail is shown when it dies.
    """

    def __init__(self, python, side, *, threads, device="cpu", env=None):
        self.side = side
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [python, "-m", "keras_se._bench_worker", "serve", side, "--threads", str(threads)]
            + ["--device", device],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            bufsize=1,
        )

    def ask(self, op, **request):
        try:
            self.process.stdin.write(json.dumps(dict(request, op=op)) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the child died: read why below
        for line in self.process.stdout:
            if line.startswith(WORKER_RESULT_PREFIX):
                reply = json.loads(line[len(WORKER_RESULT_PREFIX) :])
                if "error" in reply:
                    raise RuntimeError(f"the {self.side} worker failed on {op!r}: {reply['error']}")
                return reply
        self.stderr.seek(0)
        tail = self.stderr.read()[-2000:]
        raise RuntimeError(
            f"the {self.side} worker exited ({self.process.wait()}) during {op!r}: {tail}"
        )

    def timed(self, key):
        """A callable: one timed step of prepared ``key``; the child's seconds."""
        return lambda: self.ask("time", key=key)["seconds"]

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def interleave_parties(parties, *, repeats, warmup=2, gap=0.05):
    """Times several step callables (each returns its own seconds) in rotating order.

    Repetition ``r`` runs the parties in the ``r``-th of their permutations (cycling), so
    with two parties the order is A B, B A, A B, ... and with three every party is first,
    middle and last equally often. ``gap`` seconds of idle time separate two steps, so the
    previous process's thread pools (OpenMP and Eigen spin a while before sleeping) have
    gone quiet when the next one starts. Returns one list of seconds per party.
    """
    import itertools

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


def _peer_figures(model, precision, train, times, *, batch, size, threads, timm_name):
    """The rows of one configuration: keras_se vs each timm layout, and vs the faster one."""
    mode = "train_step" if train else "inference"
    keras_times, layout_times = times[0], dict(zip(TORCH_LAYOUTS, times[1:]))
    what = "training step (SGD momentum)" if train else "compiled inference"
    description = (
        f"{model}, {what}, {precision}, batch {batch}, {size}x{size}, {threads} threads "
        f"(keras_se TensorFlow vs timm {timm_name} PyTorch)"
    )
    suffix = "" if precision == "float32" else f"_{precision}"
    label = f"keras_se {'tf.function' if not train else 'tf.function step'}"
    figures = [
        Figure(
            f"peer_{mode}{suffix}_{layout}",
            description,
            label,
            f"timm {layout}",
            keras_times,
            layout_times[layout],
            backend="tensorflow",
        )
        for layout in TORCH_LAYOUTS
    ]
    best = min(TORCH_LAYOUTS, key=lambda layout: statistics.median(layout_times[layout]))
    figures.append(
        Figure(
            f"peer_{mode}{suffix}",
            description,
            label,
            f"timm, best layout ({best})",
            keras_times,
            layout_times[best],
            backend="tensorflow",
        )
    )
    return figures


def _logit_check(keras_worker, torch_worker, keys, tmp, *, precision):
    """max |logit diff| / max |logit| of keras_se against each timm layout (same weights, same input)."""
    paths = {}
    for worker, key in [(keras_worker, "keras")] + [(torch_worker, k) for k in keys]:
        paths[key] = os.path.join(tmp, f"logits_{key}.npy")
        worker.ask("logits", key=key, path=paths[key])
    ours = np.load(paths["keras"]).astype("float64")
    result = {}
    for key in keys:
        theirs = np.load(paths[key]).astype("float64")
        result[key] = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))
    if precision == "float32" and max(result.values()) > PEER_TOLERANCE:
        raise RuntimeError(
            f"keras_se and timm disagree with the same weights: max |logit diff| / max |logit| = "
            f"{result} > {PEER_TOLERANCE}; the timings would compare different functions."
        )
    return result


def bench_peer(
    *,
    python,
    models=tuple(PEER_MODELS),
    size,
    batch,
    repeats,
    train_repeats,
    threads=None,
    precisions=("float32", "bfloat16"),
    learning_rate=0.01,
    log=print,
):
    """keras_se (TensorFlow) against timm (PyTorch, both memory layouts), two live processes.

    One worker process per framework, both kept alive; the parent asks them in turn
    (`interleave_parties`) for one timed step each, so the two frameworks never compete
    for the cores and see the same machine state. Both use ``threads`` intra-op (and
    inter-op) threads. The weights are timm's random initialisation with seed 0 (BatchNorm
    statistics and affine parameters randomised too), written once by the PyTorch side and
    loaded into keras_se with `keras_se.models.pretrained.load_reference_model`; before any
    timing the float32 logits must agree within `PEER_TOLERANCE` (relative).

    Returns:
        ``{"figures": [Figure, ...], "versions": {...}, "threads": n, "logit_diff": {...}}``.
    """
    threads = threads or os.cpu_count()
    figures, diffs = [], {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveWorker(sys.executable, "keras", threads=threads, env=_tensorflow_env()) as ours,
        LiveWorker(
            python, "torch", threads=threads, env=dict(os.environ, KERAS_BACKEND="torch")
        ) as theirs,
    ):
        rng = np.random.default_rng(0)
        inputs, labels = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(inputs, rng.standard_normal((batch, size, size, 3)).astype("float32"))
        np.save(labels, rng.integers(0, 1000, size=(batch,)).astype("int64"))
        versions = theirs.ask("versions")
        versions.update(ours.ask("versions"))
        for model in models:
            timm_name = PEER_MODELS[model]
            weights = os.path.join(tmp, f"{timm_name}.safetensors")
            theirs.ask("write_weights", timm_name=timm_name, path=weights, seed=0)
            for precision in precisions:
                for train in (False, True):
                    what = "training step" if train else "inference"
                    log(f"  {model} vs timm {timm_name}, {precision}, {what} ...")
                    common = dict(
                        weights=weights,
                        inputs=inputs,
                        labels=labels,
                        precision=precision,
                        train=train,
                        learning_rate=learning_rate,
                    )
                    ours.ask("prepare", key="keras", model=model, **common)
                    for layout in TORCH_LAYOUTS:
                        theirs.ask("prepare", key=layout, model=timm_name, layout=layout, **common)
                    if not train:
                        diffs[f"{model}/{precision}"] = _logit_check(
                            ours, theirs, TORCH_LAYOUTS, tmp, precision=precision
                        )
                    parties = [ours.timed("keras")] + [theirs.timed(k) for k in TORCH_LAYOUTS]
                    times = interleave_parties(parties, repeats=train_repeats if train else repeats)
                    figures += _peer_figures(
                        model,
                        precision,
                        train,
                        times,
                        batch=batch,
                        size=size,
                        threads=threads,
                        timm_name=timm_name,
                    )
                    ours.ask("drop")
                    theirs.ask("drop")
    return {"figures": figures, "versions": versions, "threads": threads, "logit_diff": diffs}


class KerasSide:
    """The keras_se side of the peer comparison (runs in a `LiveWorker` child, or in-process)."""

    def __init__(self, threads, device="cpu"):
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # TensorFlow already initialised (in-process use): keep its pools
                pass
        self.steps = {}

    def versions(self):
        return {"keras": keras.__version__, "keras_backend": keras.backend.backend()}

    def prepare(self, key, *, model, weights, inputs, labels, precision, train, learning_rate, **_):
        from keras_se.models import pretrained

        x, y = np.load(inputs), np.load(labels)
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
        try:
            built = pretrained.load_reference_model(
                weights,
                model=model,
                input_shape=x.shape[1:],
                # logits, as timm's; training uses the softmax + cross-entropy of the SE-cost figures
                classifier_activation="softmax" if train else None,
            )
        finally:
            keras.config.set_dtype_policy(previous)
        if train:
            step = compiled_train_step(built, learning_rate=learning_rate)
            self.steps[key] = lambda: step(x, y)
        else:
            forward = compiled_forward(built)
            self.steps[key] = lambda: forward(x)
        return {}

    def logits(self, key, path):
        np.save(path, np.asarray(self.steps[key](), dtype="float32"))
        return {}

    def time(self, key):
        start = time.perf_counter()
        self.steps[key]()
        return {"seconds": time.perf_counter() - start}

    def drop(self):
        self.steps.clear()
        gc.collect()
        return {}


class TorchSide:
    """The timm side of the peer comparison (a `LiveWorker` child under a Python with torch + timm)."""

    def __init__(self, threads, device="cpu"):
        import torch

        torch.set_num_threads(threads)
        # TensorFlow flushes denormals to zero in its thread pools; PyTorch does not by default,
        # and random weights can make denormal activations (1.14 -> 0.80 s a legacy_seresnet50
        # forward at 64x64, batch 2, on the loaded 2-core VM).
        torch.set_flush_denormal(True)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set (only possible before any parallel work)
            pass
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.torch, self.device, self.steps = torch, device, {}

    def versions(self):
        import timm

        return {
            "torch": self.torch.__version__,
            "timm": timm.__version__,
            "torch_threads": self.torch.get_num_threads(),
            "device": self.device,
        }

    def write_weights(self, timm_name, path, seed=0):
        """timm's random initialisation (seed ``seed``), BatchNorm statistics randomised, as safetensors."""
        import timm
        from safetensors.torch import save_file

        torch = self.torch
        torch.manual_seed(seed)
        model = timm.create_model(timm_name, pretrained=False)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.1)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
        return {"parameters": sum(p.numel() for p in model.parameters())}

    def prepare(
        self,
        key,
        *,
        model,
        weights,
        inputs,
        labels,
        precision,
        train,
        learning_rate,
        layout="nchw",
        compile=False,
    ):
        import contextlib

        import timm
        from safetensors.torch import load_file

        torch = self.torch
        net = timm.create_model(model, pretrained=False)
        net.load_state_dict(load_file(weights))
        x = torch.from_numpy(np.load(inputs)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        y = torch.from_numpy(np.load(labels))
        net, x, y = net.to(self.device), x.to(self.device), y.to(self.device)
        if layout == "channels_last":
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if compile:
            net = torch.compile(net)

        def autocast():
            if precision == "bfloat16":
                return torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16)
            return contextlib.nullcontext()

        if train:
            net.train()
            optimizer = torch.optim.SGD(net.parameters(), lr=learning_rate, momentum=0.9)

            def step():
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                loss.backward()
                optimizer.step()
                return loss.item()

        else:
            net.eval()

            def step():
                with torch.inference_mode(), autocast():
                    return net(x).float().cpu().numpy()

        self.steps[key] = step
        return {}

    def logits(self, key, path):
        np.save(path, self.steps[key]())
        return {}

    def time(self, key):
        start = time.perf_counter()
        self.steps[key]()
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()
        return {"seconds": time.perf_counter() - start}

    def drop(self):
        self.steps.clear()
        gc.collect()
        return {}


def serve(side, *, threads, device="cpu", stdin=None, stdout=None):
    """The loop of a `LiveWorker` child: one JSON request per line in, one ``JSON`` reply line out."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    server = (KerasSide if side == "keras" else TorchSide)(threads, device)
    for line in stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            reply = getattr(server, op)(**request)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
            reply = {"error": f"{type(err).__name__}: {err}"}
        stdout.write(WORKER_RESULT_PREFIX + json.dumps(reply) + "\n")
        stdout.flush()
    return 0


def run_device_benchmarks(*, quick, log, peer_python=None):
    """``keras-se bench --device gpu``: `bench_device`, then keras_se vs timm on the same device.

    The timm rows need a Python with torch and timm (this one, ``peer_python`` or
    ``$KERAS_SE_PEER_PYTHON``); without one they are skipped with a message.
    """
    settings = SETTINGS["quick" if quick else "full"]
    size, batch = (64, 2) if quick else (224, 64)  # 64: the ImageNet stem the timm weights need
    log("SE-ResNet-50 vs ResNet-50, mixed precision + XLA ...")
    figures = bench_device(size=size, batch=batch, repeats=settings["repeats"])
    report = {"machine": machine_info(), "mode": ("quick" if quick else "full") + "-gpu"}
    try:
        python = find_peer_python(peer_python)
    except UsageError as err:
        log(f"no timm comparison: {err}")
        python = None
    if python:
        log(f"keras_se ({keras.backend.backend()}) vs timm (PyTorch) on the same device ...")
        peer = bench_device_peer(
            python=python, size=size, batch=batch, repeats=settings["repeats"], log=log
        )
        figures += peer.pop("figures")
        report["peer"] = peer
    report["figures"] = [f.as_dict() for f in figures]
    return report


def bench_device_peer(
    *, python, size, batch, repeats, model="se_resnet50", precision="bfloat16", log=print
):
    """keras_se on the active backend (in this process) vs timm channels_last on PyTorch (a live worker).

    Mixed ``precision`` on both sides (Keras's ``mixed_bfloat16`` policy, XLA on JAX;
    ``torch.autocast``), same weights (timm's seed-0 initialisation), images/s in the
    descriptions. The float32 logit difference is reported, not asserted (GPUs run float32
    convolutions in TF32 on both sides).
    """
    timm_name = PEER_MODELS[model]
    ours = KerasSide(os.cpu_count())
    figures = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveWorker(
            python,
            "torch",
            threads=os.cpu_count(),
            device="auto",
            env=dict(os.environ, KERAS_BACKEND="torch"),
        ) as theirs,
    ):
        rng = np.random.default_rng(0)
        inputs, labels = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
        np.save(inputs, rng.standard_normal((batch, size, size, 3)).astype("float32"))
        np.save(labels, rng.integers(0, 1000, size=(batch,)).astype("int64"))
        versions = theirs.ask("versions")
        weights = os.path.join(tmp, f"{timm_name}.safetensors")
        theirs.ask("write_weights", timm_name=timm_name, path=weights, seed=0)
        common = dict(weights=weights, inputs=inputs, labels=labels, learning_rate=0.01)
        ours.prepare("check", model=model, precision="float32", train=False, **common)
        theirs.ask(
            "prepare", key="check", model=timm_name, precision="float32", train=False, **common
        )
        ours.logits("check", os.path.join(tmp, "ours.npy"))
        theirs.ask("logits", key="check", path=os.path.join(tmp, "theirs.npy"))
        a, b = np.load(os.path.join(tmp, "ours.npy")), np.load(os.path.join(tmp, "theirs.npy"))
        diff = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
        ours.drop()
        theirs.ask("drop")
        for train in (False, True):
            name = "device_peer_train_step" if train else "device_peer_inference"
            log(f"  {model} vs timm {timm_name}, {precision}, {name} ...")
            ours.prepare("keras", model=model, precision=precision, train=train, **common)
            theirs.ask(
                "prepare",
                key="timm",
                model=timm_name,
                layout="channels_last",
                precision=precision,
                train=train,
                **common,
            )
            a_times, b_times = interleave_parties(
                [lambda: ours.time("keras")["seconds"], theirs.timed("timm")],
                repeats=repeats,
                warmup=3,
            )
            figure = Figure(
                name,
                f"{model}, {'training step' if train else 'inference'}, {precision}, batch {batch}, "
                f"{size}x{size}: keras_se on {keras.backend.backend()} vs timm {timm_name} "
                f"channels_last on PyTorch {versions.get('device')} "
                f"({batch / statistics.median(a_times):.0f} vs {batch / statistics.median(b_times):.0f} images/s)",
                "keras_se",
                "timm",
                a_times,
                b_times,
                backend=keras.backend.backend(),
            )
            figures.append(figure)
            ours.drop()
            theirs.ask("drop")
    return {"figures": figures, "versions": versions, "logit_diff_float32": diff}


# --------------------------------------------------------------------------- bf16: export precision, the limit
#: The line a ``_bench_worker onednn`` child writes between its phases (`parse_onednn_verbose`).
ONEDNN_MARK = "@@keras_se_onednn_phase "


def loadavg():
    """The 1-minute load average (``/proc/loadavg``), or None where there is none."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _rate_figure(name, description, labels, times, work, *, unit="GFLOP/s"):
    """A `Figure` of rates from `interleave`'s two lists of seconds: ``work[i] / t / 1e9``."""
    a, b = ([w / t / 1e9 for t in ts] for w, ts in zip(work, times))
    return Figure(name, description, *labels, a, b, unit=unit, backend=keras.backend.backend())


def agreement(reference, other):
    """How far ``other``'s class probabilities are from ``reference``'s (same images).

    Returns:
        ``{"images", "top1_agreement", "top5_overlap", "max_abs_diff"}``: the share of
        images with the same top class, the mean share of the top-5 classes in common, and
        the largest |difference| of any probability.
    """
    reference, other = np.asarray(reference, "float64"), np.asarray(other, "float64")
    k = min(5, reference.shape[-1])
    top_a = np.argsort(-reference, axis=-1)[:, :k]
    top_b = np.argsort(-other, axis=-1)[:, :k]
    overlap = [len(set(a) & set(b)) / k for a, b in zip(top_a, top_b)]
    return {
        "images": int(reference.shape[0]),
        "top1_agreement": float(np.mean(top_a[:, 0] == top_b[:, 0])),
        "top5_overlap": float(np.mean(overlap)),
        "max_abs_diff": float(np.abs(reference - other).max()),
    }


def _serving_fn(path):
    """``images -> probabilities`` (NumPy) through a SavedModel's ``serving_default``."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]

    def call(images, loaded=loaded):  # the loaded object owns the variables: keep it alive
        return fn(image=images)["probabilities"].numpy()

    return call


def digits_agreement(export_dir, *, epochs):
    """SE-ResNet-20 trained ``epochs`` on the 16x16 digits, exported in float32 and bfloat16:
    `agreement` of the two SavedModels on the 360 validation images, and both accuracies."""
    from keras_se import export
    from keras_se.data import DIGITS_MEAN, DIGITS_STD, Preprocessing, load_digits_arrays

    (x_train, y_train), (x_val, y_val), _ = load_digits_arrays(16)
    spec = Preprocessing(mean=DIGITS_MEAN, std=DIGITS_STD)
    x = (x_train.astype("float32") * spec.scale - np.array(spec.mean)) / np.array(spec.std)
    keras.utils.set_random_seed(0)
    model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=10)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y_train, batch_size=64, epochs=epochs, verbose=0)
    probabilities = {}
    for precision in export.PRECISIONS:
        result = export.export_model(
            model, export_dir, name="digits", preprocessing=spec, precision=precision
        )
        probabilities[precision] = _serving_fn(result.path)(x_val)
    result = agreement(probabilities["float32"], probabilities["bfloat16"])
    for precision, p in probabilities.items():
        result[f"accuracy_{precision}"] = float(np.mean(p.argmax(-1) == y_val))
    return result


def bench_bf16(
    *,
    model,
    size,
    batches,
    repeats,
    overhead_batch,
    compute_batch,
    train_repeats,
    matmul,
    conv,
    digits_epochs,
    onednn_steps,
    log=print,
):
    """The bfloat16 SavedModel against the float32 one, the serving overhead and the limit.

    Every timing is a `_figure` (A and B interleaved after warm-up, medians over the
    repetitions):

    * ``bf16_export_speedup_b{N}``: ``serving_default`` (uint8 in) of the float32 export (A)
      and the bfloat16 export (B) of registry ``model``; A/B time is bfloat16 ÷ float32
      images/s (goal at batch 64: >= 1.5).
    * ``serving_overhead``: the float32 SavedModel on uint8 images (in-graph check,
      preprocessing, head) against the bare model's compiled forward on preprocessed images.
    * ``peak_matmul``/``peak_conv3x3``: GFLOP/s of a ``matmul``-square matmul and a 3x3
      convolution of shape ``conv`` (N, H, W, C -> C) in bfloat16 (A) and float32 (B).
    * ``share_of_peak_{inference,train_step}_{float32,bfloat16}``: the model's GFLOP/s
      (``2 x MACs`` per image forward, ``6 x MACs`` for a training step: the backward pass
      costs twice the forward; MACs from `keras_se.utils.model_stats`) against the 3x3
      convolution's of the same precision, interleaved: the share of the reached peak.

    Returns:
        ``{"figures": [...], "model", "macs", "agreement": {...}, "onednn": {...},
        "loadavg": [[step, before, after], ...]}``.
    """
    import tensorflow as tf

    from keras_se import export
    from keras_se.utils import model_stats

    figures, loads, info = [], [], {"model": model, "size": size}

    def measured(step, fn):
        before = loadavg()
        value = fn()
        loads.append([step, before, loadavg()])
        return value

    keras.utils.set_random_seed(0)
    net = models.get(model, input_shape=(size, size, 3))
    macs = model_stats(net).macs
    info["macs"] = macs
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        log(f"  exporting {model} ({size}x{size}) in float32 and bfloat16 ...")
        paths = {
            p: export.export_model(net, tmp, name=f"{model}_{p}", precision=p).path
            for p in export.PRECISIONS
        }
        serve32, serve16 = (_serving_fn(paths[p]) for p in export.PRECISIONS)
        for batch in batches:
            images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
            log(f"  SavedModel throughput, batch {batch} ...")
            figure = measured(
                f"bf16_export_speedup_b{batch}",
                lambda images=images, batch=batch: _figure(
                    f"bf16_export_speedup_b{batch}",
                    f"{model} SavedModel serving_default (uint8 in), batch {batch}, {size}x{size}: "
                    "A/B time = bfloat16 ÷ float32 images/s",
                    ("float32 SavedModel", "bfloat16 SavedModel"),
                    lambda: serve32(images),
                    lambda: serve16(images),
                    repeats=repeats,
                ),
            )
            figure.description += (
                f" ({batch / statistics.median(figure.a):.3g} vs "
                f"{batch / statistics.median(figure.b):.3g} images/s)"
            )
            figures.append(figure)
        info["agreement"] = {
            f"{model}_random_weights_b{batches[-1]}": agreement(serve32(images), serve16(images))
        }
        if digits_epochs:
            log(f"  agreement on the digits validation split ({digits_epochs} epochs) ...")
            info["agreement"]["digits_se_resnet20"] = measured(
                "digits_agreement",
                lambda: digits_agreement(os.path.join(tmp, "digits"), epochs=digits_epochs),
            )

        log(f"  serving overhead, batch {overhead_batch} ...")
        from keras_se.data import Preprocessing, normalize

        images = rng.integers(0, 256, (overhead_batch, size, size, 3), dtype=np.uint8)
        pre = normalize(tf.constant(images), Preprocessing())
        bare = compiled_forward(net)
        uint8 = tf.constant(images)
        figures.append(
            measured(
                "serving_overhead",
                lambda: _figure(
                    "serving_overhead",
                    f"{model} float32, batch {overhead_batch}, {size}x{size}: SavedModel "
                    "serving_default (uint8 -> check -> preprocessing -> probabilities) vs the "
                    "model's compiled forward on preprocessed images",
                    ("SavedModel serving_default", "tf.function model(x)"),
                    lambda: serve32(uint8),
                    lambda: bare(pre),
                    repeats=repeats,
                ),
            )
        )

    # the limit: TensorFlow's peak on a big matmul and a ResNet-shaped 3x3 convolution
    peak, peak_flops = {}, {}
    n, c = matmul, conv[-1]
    peak_flops["matmul"] = 2.0 * n**3
    peak_flops["conv"] = 2.0 * math.prod(conv) * c * 9
    for dtype in ("float32", "bfloat16"):
        a = tf.cast(tf.random.normal((n, n)), dtype)
        x = tf.cast(tf.random.normal(conv), dtype)
        k = tf.cast(tf.random.normal((3, 3, c, c)), dtype)
        mm = tf.function(lambda a=a: tf.linalg.matmul(a, a))
        cv = tf.function(lambda x=x, k=k: tf.nn.conv2d(x, k, 1, "SAME"))
        peak[dtype] = {
            "matmul": lambda mm=mm: mm().numpy(),
            "conv": lambda cv=cv: cv().numpy(),
        }
    conv_text = "x".join(map(str, conv)) + f" -> {c}, 3x3"
    for kind, what in (("matmul", f"{n}x{n} matmul"), ("conv", f"conv {conv_text}")):
        log(f"  peak GFLOP/s: {what} ...")
        times = measured(
            f"peak_{kind}",
            lambda kind=kind: interleave(
                peak["bfloat16"][kind], peak["float32"][kind], repeats=repeats, warmup=2
            ),
        )
        figures.append(
            _rate_figure(
                "peak_matmul" if kind == "matmul" else "peak_conv3x3",
                f"TensorFlow's reached GFLOP/s, {what}: bfloat16 vs float32",
                ("bfloat16", "float32"),
                times,
                (peak_flops[kind], peak_flops[kind]),
            )
        )

    # the model against that peak, each precision against its own
    y = rng.integers(0, 1000, size=(compute_batch,))
    x = rng.standard_normal((compute_batch, size, size, 3)).astype("float32")
    for precision in ("float32", "bfloat16"):
        variant = export.with_precision(net, precision)
        forward = compiled_forward(variant)
        train = compiled_train_step(export.with_precision(net, precision))
        for mode, fn, flops, reps in (
            ("inference", lambda forward=forward: forward(x), 2.0, repeats),
            ("train_step", lambda train=train: train(x, y), 6.0, train_repeats),
        ):
            name = f"share_of_peak_{mode}_{precision}"
            log(f"  {name} ...")
            times = measured(
                name,
                lambda fn=fn, reps=reps, precision=precision: interleave(
                    fn, peak[precision]["conv"], repeats=reps, warmup=2
                ),
            )
            figures.append(
                _rate_figure(
                    name,
                    f"{model} {mode.replace('_', ' ')} ({precision}), batch {compute_batch}, "
                    f"{size}x{size}, {flops:g} x {macs / 1e9:.3g} GMACs per image, vs the "
                    f"{precision} conv {conv_text}: share of the reached peak",
                    (f"{model} {mode}", f"conv 3x3 {precision}"),
                    times,
                    (flops * macs * compute_batch, peak_flops["conv"]),
                )
            )

    log("  which oneDNN kernels run (ONEDNN_VERBOSE=1, a child process) ...")
    info["onednn"] = measured(
        "onednn",
        lambda: onednn_kernels(model, size, compute_batch, steps=onednn_steps),
    )
    info["loadavg"] = loads
    info["figures"] = figures
    return info


def onednn_kernels(model, size, batch, *, steps, env=None):
    """oneDNN primitives run by a bfloat16 forward and training step, from ``ONEDNN_VERBOSE=1``.

    A fresh ``_bench_worker onednn`` child builds registry ``model`` under ``mixed_bfloat16``
    and runs ``steps`` forward calls and training steps after one untimed call of each;
    oneDNN prints one ``onednn_verbose,...,exec,...`` line per primitive executed.

    Returns:
        ``{"isa": ..., "forward": {kernel: {"count", "ms"}}, "train_step": {...}}``: per
        phase, the calls and milliseconds by ``"<primitive> <implementation> (<dtypes>)"``,
        and the ISA oneDNN reports (e.g. ``Intel AVX2``, ``Intel AVX-512 with AMX``).
    """
    env = dict(env or _tensorflow_env(), ONEDNN_VERBOSE="1")
    result = _run_worker("onednn", model, size, batch, steps, env=env, timeout=3600)
    return parse_onednn_verbose(result.stdout)


def parse_onednn_verbose(text):
    """`onednn_kernels`' summary of a child's stdout (phases separated by `ONEDNN_MARK` lines)."""
    phases, phase, isa = {}, None, None
    for line in text.splitlines():
        if line.startswith(ONEDNN_MARK):
            phase = line[len(ONEDNN_MARK) :].strip()
            phase = None if phase == "end" else phase
            if phase:
                phases.setdefault(phase, {})
            continue
        if not line.startswith("onednn_verbose,"):
            continue
        fields = line.split(",")
        if "isa:" in line and isa is None:
            isa = next(f.split("isa:", 1)[1] for f in fields if "isa:" in f)
        if phase is None or len(fields) < 10 or fields[3] != "exec":
            continue
        # onednn_verbose,v1,primitive,exec,cpu,KIND,IMPLEMENTATION,PROP,MEMORY,...,TIME
        kind, impl = fields[5], fields[6] or "-"
        dtypes = sorted({m.split(":")[0].split("_")[-1] for m in fields[8].split() if "_" in m})
        key = f"{kind} {impl} ({'/'.join(dtypes)})"
        entry = phases[phase].setdefault(key, {"count": 0, "ms": 0.0})
        entry["count"] += 1
        try:
            entry["ms"] += float(fields[-1])
        except ValueError:
            pass
    return {"isa": isa, **phases}


def bf16_markdown(info):
    """The lines under the bf16 table: agreement, oneDNN kernels, load averages."""
    lines = [f"Model: {info['model']} at {info['size']}x{info['size']}, {info['macs'] / 1e9:.4g} GMACs per image."]
    for key, a in info.get("agreement", {}).items():
        accuracy = "".join(
            f", accuracy {p} {a[f'accuracy_{p}']:.4f}"
            for p in ("float32", "bfloat16")
            if f"accuracy_{p}" in a
        )
        lines.append(
            f"Agreement of the bfloat16 with the float32 SavedModel, {key} ({a['images']} images): "
            f"top-1 {a['top1_agreement']:.4f}, top-5 overlap {a['top5_overlap']:.4f}, "
            f"max |Δprobability| {a['max_abs_diff']:.3g}{accuracy}."
        )
    onednn = info.get("onednn") or {}
    lines.append(f"oneDNN (ONEDNN_VERBOSE=1) ISA: {onednn.get('isa')}; kernels executed per phase:")
    lines += ["", "| phase | primitive implementation (dtypes) | calls | ms |", "|---|---|---|---|"]
    for phase, kernels in onednn.items():
        if phase == "isa":
            continue
        for key, entry in sorted(kernels.items(), key=lambda kv: -kv[1]["ms"]):
            lines.append(f"| {phase} | {key} | {entry['count']} | {entry['ms']:.1f} |")
        if not kernels:
            lines.append(f"| {phase} | (no oneDNN primitive) | 0 | 0 |")
    loads = ", ".join(f"{step} {b}→{a}" for step, b, a in info.get("loadavg", []))
    lines += ["", f"Load average (1 min) before→after each measurement: {loads}."]
    return lines


# --------------------------------------------------------------------------- report
def machine_info():
    import importlib

    def version(module):
        try:
            return importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001
            return None

    devices = []
    try:
        if keras.backend.backend() == "jax":
            import jax as jax_module

            devices = [str(d) for d in jax_module.devices()]
        else:
            import tensorflow as tf

            devices = [d.name for d in tf.config.list_logical_devices()]
    except Exception:  # noqa: BLE001 - device listing is informative only
        pass
    return {
        "devices": devices,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow": version("tensorflow"),
        "jax": version("jax"),
    }


SETTINGS = {
    "quick": dict(
        size=64,
        batch=2,
        repeats=3,
        slow_repeats=3,
        eager_repeats=3,
        layer=dict(shape=(2, 28, 28, 64), repeats=6, min_sample=0.005),
        jax_processes=dict(layer=2, models=2),
        pipeline_repeats=1,
        memory_repeats=0,  # fresh processes: skipped in the smoke test
        # the training-loop figures (keras_se.bench_training), one tiny call of each
        training=dict(
            loop=dict(steps=2, repeats=1, image_size=16, batch=8, model="se_resnet20_cifar"),
            precision=dict(steps=2, repeats=1, image_size=16, batch=8, model="se_resnet20_cifar"),
            read_volume=dict(images=16, workers=(1, 2)),
            excitation_log=dict(repeats=1, model="se_resnet20_cifar", image_size=16, steps=2),
        ),
        # keras_se vs timm: one model, tiny inputs
        peer=dict(models=("se_resnet50",), size=64, batch=2, repeats=2, train_repeats=2),
        # the bfloat16 export and the limit: SE-ResNet-18 at 32x32, tiny peak shapes
        bf16=dict(
            model="se_resnet18",
            size=32,
            batches=(1, 2),
            repeats=2,
            overhead_batch=2,
            compute_batch=2,
            train_repeats=2,
            matmul=128,
            conv=(2, 14, 14, 32),
            digits_epochs=0,
            onednn_steps=1,
        ),
    ),
    "full": dict(
        size=224,
        batch=8,
        repeats=31,
        # the training-step rows: 15 pairs moved their JAX medians 2.5 % run to run, 31 pairs
        # 3.1 % (per-pair ratios 0.80-1.45 on a noisy host)
        slow_repeats=48,
        # eager calls: JAX dispatches op by op, per-pair ratios spread 0.83-1.16; 31 pairs
        # moved the median 3.3 % between two runs
        eager_repeats=93,
        # each repetition times >= 0.2 s of each side (~10 calls of the layer on TensorFlow)
        layer=dict(shape=(16, 56, 56, 256), repeats=62, min_sample=0.2),
        # On JAX the SE-vs-floor ratio is set per process (1.01-1.13 between processes, within
        # one process +-2 %, whatever the input buffer), and so is the textbook model's (its
        # compiled inference median 525 vs 585 ms in two runs, ResNet-50's 502 vs 527): each
        # figure's repetitions are spread over this many fresh processes and pooled
        # (`pool_figures`). With 12 and 3, two runs moved the floor row 2.2 % and the
        # textbook training row 3.2 % (their per-process ratios spread 1.005-1.152 and
        # 1.005-1.085); with twice and 5/3 as many processes (1/sqrt(n): 29 % and 23 % less
        # spread of the pooled medians) all eight JAX rows repeated within 2 % (BENCHMARKS.md).
        jax_processes=dict(layer=24, models=5),
        pipeline_repeats=3,
        memory_repeats=3,
        # about 9 minutes on 2 idle cores (SE-ResNet-18 at 32x32, batch 64: ~1.2 s a step)
        training=dict(
            loop=dict(steps=10, repeats=7),
            precision=dict(steps=5, repeats=5),
            read_volume=dict(),
            excitation_log=dict(repeats=3),
        ),
        # about 12 minutes on 2 idle cores (4 configurations x 2 models, 3 processes' steps each)
        peer=dict(
            models=tuple(PEER_MODELS),
            size=224,
            batch=8,
            repeats=15,
            train_repeats=7,
        ),
        # `keras-se bench --only bf16`: about 20 minutes on 2 cores without bfloat16 instructions
        bf16=dict(
            model="se_resnet50",
            size=224,
            batches=(1, 8, 64),
            repeats=7,
            overhead_batch=8,
            compute_batch=8,
            train_repeats=5,
            matmul=2048,
            conv=(8, 56, 56, 64),
            digits_epochs=4,
            onednn_steps=2,
        ),
    ),
}


def select_groups(only=None, *, jax=True, peer=None):
    """The figure groups to run: ``only`` (names of `GROUPS`), else `DEFAULT_GROUPS`.

    ``peer`` (``"timm"``) alone selects the peer comparison only; ``jax=False`` drops
    the JAX group.
    """
    if peer is not None and peer not in PEERS:
        raise UsageError(f"Unknown peer. Known: {', '.join(PEERS)}. Received: peer={peer!r}")
    if only is None:
        groups = ["peer"] if peer else list(DEFAULT_GROUPS)
    else:
        parts = [only] if isinstance(only, str) else list(only)
        groups = [g.strip() for part in parts for g in part.split(",") if g.strip()]
        unknown = [g for g in groups if g not in GROUPS]
        if unknown or not groups:
            raise UsageError(
                f"`only` takes comma-separated groups of {', '.join(GROUPS)}. Received: only={only!r}"
            )
        if peer:
            groups.append("peer")
    if not jax:
        groups = [g for g in groups if g != "jax"]
    return [g for g in GROUPS if g in groups]


def run_benchmarks(
    *,
    quick=False,
    jax=True,
    verbose=1,
    device="cpu",
    only=None,
    peer=None,
    peer_python=None,
    threads=None,
):
    """Runs the selected figure groups; returns the report.

    Args:
        quick: tiny sizes and few repetitions (a smoke test of the structure).
        jax: False drops the JAX group (the layer/model figures under ``KERAS_BACKEND=jax``
            in a child process).
        verbose: 0 for no progress lines.
        device: ``"gpu"``: the accelerator figures instead (`bench_device`: mixed precision
            + XLA at batch 64, with the timm comparison when torch and timm are there),
            on the active backend only.
        only: groups to run (`GROUPS`, a list or a comma-separated string); default
            `DEFAULT_GROUPS`.
        peer: ``"timm"``: keras_se vs timm on PyTorch (`bench_peer`); without ``only``,
            that comparison alone.
        peer_python: the Python that runs the PyTorch side (default: this one, else
            ``$KERAS_SE_PEER_PYTHON``).
        threads: intra-op threads on both sides of the peer comparison (default: all CPUs).
    """
    settings = SETTINGS["quick" if quick else "full"]
    mode = "quick" if quick else "full"

    def log(message):
        if verbose:
            print(message, flush=True)

    if device == "gpu":
        return run_device_benchmarks(quick=quick, log=log, peer_python=peer_python)

    groups = select_groups(only, jax=jax, peer=peer)
    if "peer" in groups:
        peer_python = find_peer_python(peer_python)  # fails fast, before any figure
    figures, extra = [], {}
    if "layer" in groups:
        log("SE layer vs naive block and memory floor ...")
        figures += bench_se_layer(**settings["layer"])
    if "models" in groups:
        log("SE-ResNet-50 vs ResNet-50 (inference, eager, training step, keras.applications) ...")
        figures += bench_models(**model_settings(settings))
    tensorflow = keras.backend.backend() == "tensorflow"
    if "pipeline" in groups and tensorflow:
        log("input pipeline vs training ...")
        figures += bench_input_pipeline(repeats=settings["pipeline_repeats"])
    if "memory" in groups and tensorflow and settings["memory_repeats"]:
        log("peak memory of a training step (fresh processes) ...")
        figures += bench_memory(
            size=settings["size"], batch=settings["batch"], repeats=settings["memory_repeats"]
        )
    if "training" in groups and tensorflow:
        log("the training loop: Trainer vs fit, bfloat16, read volume, excitation logging ...")
        training_figures, training_extra = _training_figures(mode)
        figures += training_figures
        extra.update(training_extra)
    report = {
        "machine": machine_info(),
        "mode": mode,
        "groups": groups,
        "figures": [f.as_dict() for f in figures],
        **extra,
    }
    if "jax" in groups and keras.backend.backend() != "jax":
        jax_figures, report["machine"]["jax_allocator"] = _jax_figures(quick=quick, log=log)
        report["figures"] += jax_figures
    if "bf16" in groups and tensorflow:
        log("the bfloat16 export, the serving overhead and the machine's peak ...")
        bf16_report = bench_bf16(log=log, **settings["bf16"])
        report["figures"] += [f.as_dict() for f in bf16_report.pop("figures")]
        report["bf16"] = bf16_report
    if "peer" in groups:
        log(f"keras_se (TensorFlow) vs timm (PyTorch, {peer_python}) ...")
        peer_report = bench_peer(python=peer_python, threads=threads, log=log, **settings["peer"])
        report["figures"] += [f.as_dict() for f in peer_report["figures"]]
        report["peer"] = {k: v for k, v in peer_report.items() if k != "figures"}
    return report


def model_settings(settings, *, share=1):
    """The keyword arguments of `bench_models` in a `SETTINGS` entry.

    ``share``: for one of ``share`` processes that split each figure's pairs
    (``ceil(pairs / share)`` each).
    """
    kwargs = {k: settings[k] for k in ("size", "batch")}
    for k in ("repeats", "slow_repeats", "eager_repeats"):
        kwargs[k] = math.ceil(settings[k] / share)
    return kwargs


def _training_figures(mode):
    """`keras_se.bench_training`'s figures, run by a fresh ``_bench_worker training`` child."""
    result = read_worker_result(
        _run_worker("training", mode, env=_tensorflow_env(), timeout=3600).stdout
    )
    return [Figure(**f) for f in result["figures"]], {"read_volume": result["read_volume"]}


def _tensorflow_env():
    return dict(os.environ, KERAS_BACKEND="tensorflow")


#: gperftools' tcmalloc (Debian/Ubuntu: ``apt install libtcmalloc-minimal4``), which the JAX
#: child preloads when it is installed. Why (`getrusage` minor faults per call, batch 8,
#: 224x224, 2 idle cores): XLA's CPU runtime allocates its buffers afresh on every call and
#: glibc's malloc hands large blocks back to the kernel, so every call faults its memory in
#: again: 38,000 page faults per compiled SE-ResNet-50 forward, 209,000 (9.5 s of system
#: time over 20 steps) per training step, 25,000 per call of the SE layer on 16x56x56x256.
#: glibc's tunables (MALLOC_MMAP_THRESHOLD_, MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_)
#: leave the count unchanged. tcmalloc with ``TCMALLOC_RELEASE_RATE=0`` keeps freed pages:
#: 7,100 / 31,700 / 4 faults, the SE layer 4x faster (11 vs 47 ms) and the forward 15-25 %.
#: jemalloc with its default decay faults more than glibc (85,000 per forward).
TCMALLOC = "libtcmalloc_minimal.so.4"


def find_tcmalloc():
    """The path of tcmalloc's shared library, or None where it is not installed."""
    import ctypes.util
    import glob

    for pattern in (
        f"/usr/lib/*/{TCMALLOC}",
        f"/usr/lib64/{TCMALLOC}",
        f"/usr/local/lib/{TCMALLOC}",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return ctypes.util.find_library("tcmalloc_minimal")


def jax_child_env():
    """The environment of the JAX child: ``KERAS_BACKEND=jax``, CPU, and tcmalloc preloaded.

    Returns:
        ``(env, allocator)``: ``allocator`` says what the child allocates with, for the report.
        An ``LD_PRELOAD`` already set (even empty) is kept as it is: the way to run the JAX
        figures on glibc's malloc, or on another allocator.
    """
    env = dict(
        os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu")
    )
    if "LD_PRELOAD" in os.environ:
        return env, f"LD_PRELOAD={os.environ['LD_PRELOAD']!r} (as set)"
    library = find_tcmalloc()
    if library is None:
        return env, "glibc malloc (tcmalloc not found: apt install libtcmalloc-minimal4)"
    env.update(LD_PRELOAD=library, TCMALLOC_RELEASE_RATE="0")
    return env, f"tcmalloc ({library}, TCMALLOC_RELEASE_RATE=0)"


def _jax_figures(*, quick, log):
    """The layer and model figures under the JAX backend; ``(figures, allocator)``."""
    try:
        import jax  # noqa: F401
    except ImportError:
        log("JAX not installed: skipping the JAX figures.")
        return [], None
    env, allocator = jax_child_env()
    mode = "quick" if quick else "full"
    processes = SETTINGS[mode]["jax_processes"]
    log(
        f"the same layer/model figures under the JAX backend ({allocator}): the layer figures in "
        f"{processes['layer']} fresh processes, the model figures in {processes['models']} ..."
    )
    figures = []
    for part in ("layer", "models"):
        runs = []
        for _ in range(processes[part]):
            args = ("figures", mode, "--part", part, "--share", processes[part])
            result = _run_worker(*args, env=env, timeout=3600, check=False)
            if result.returncode != 0:
                return _jax_failed(result, log), allocator
            runs.append([Figure(**f) for f in read_worker_result(result.stdout)])
            log(
                f"  {part} process {len(runs)}/{processes[part]}: "
                + ", ".join(f"{f.name} {f.ratio:.3f}" for f in runs[-1])
            )
        for f in pool_figures(runs):
            # what each process measured, for judging the pooled median
            ratios = [g.ratio for run in runs for g in run if g.name == f.name]
            figures.append(dict(f.as_dict(), process_ratios=ratios))
    return figures, allocator


def _jax_failed(result, log):
    """Logs a failed JAX child's last line of stderr; no figures."""
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode
    log(f"JAX figures failed: {last}")
    return []


def format_markdown(report, *, command):
    """The BENCHMARKS.md table for a report."""
    m = report["machine"]
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, Keras {m['keras']}, "
        f"TensorFlow {m['tensorflow']}, JAX {m['jax']}; mode: {report['mode']}."
        + (
            f" The JAX child allocates with {m['jax_allocator']}." if m.get("jax_allocator") else ""
        ),
    ]
    peer = report.get("peer")
    if peer:
        versions = ", ".join(f"{k} {v}" for k, v in sorted(peer.get("versions", {}).items()))
        diffs = peer.get("logit_diff", peer.get("logit_diff_float32"))
        lines[-1] += "  "
        lines.append(
            f"Peer: {versions}; "
            + (f"{peer['threads']} threads; " if "threads" in peer else "")
            + "max |logit diff| / max |logit|, "
            f"same weights: {json.dumps(diffs)}."
        )
    lines += [
        "",
        "| backend | figure | A | B | A median (min–max) | B median (min–max) | A/B median (min–max) | goal | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:

        def cell(prefix, f=f, unit=f["unit"]):
            scale, u = (1000.0, "ms") if unit == "s" else (1.0, unit)
            return (
                f"{f[prefix + '_median'] * scale:.4g} {u} ({f[prefix + '_min'] * scale:.4g}–"
                f"{f[prefix + '_max'] * scale:.4g})"
            )

        spread = "" if f["ratio_min"] is None else f" ({f['ratio_min']:.3f}–{f['ratio_max']:.3f})"
        status = "—" if f["passed"] is None else ("met" if f["passed"] else "**missed**")
        lines.append(
            f"| {f['backend']} | {f['description']} | {f['a']} | {f['b']} | {cell('a')} | {cell('b')} | "
            f"{f['ratio']:.3f}{spread} | {f['goal'] or '—'} | {status} |"
        )
    if report.get("bf16"):
        lines += ["", *bf16_markdown(report["bf16"])]
    return "\n".join(lines)


def report_section(report):
    """The BENCHMARKS.md section a report belongs in: ``"gpu"``, ``"peer"``, ``"bf16"`` or ``""``
    (the main table)."""
    if report["mode"].endswith("-gpu"):
        return "gpu"
    if report.get("groups") in (["peer"], ["bf16"]):
        return report["groups"][0]
    return ""


def write_report(report, *, out=None, markdown=None, command="keras-se bench", section=""):
    """Writes the JSON report and, optionally, the table into a markdown file between markers.

    The markers are ``<!-- bench:begin -->``/``<!-- bench:end -->``, or
    ``<!-- bench-SECTION:begin -->``... for a ``section`` (`report_section`), so the peer
    and GPU tables live beside the main one.
    """
    if out:
        write_json(out, report, indent=2)
    if markdown:
        table = format_markdown(report, command=command)
        tag = f"bench-{section}" if section else "bench"
        begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
        text = (
            open(markdown).read()
            if os.path.exists(markdown)
            else f"# Benchmarks\n\n{begin}\n{end}\n"
        )
        if begin not in text:
            text += f"\n{begin}\n{end}\n"
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        write_text(markdown, f"{head}{begin}\n{table}\n{end}{tail}")
    return report


def compare_reports(first, second):
    """How far the medians of two reports of the same figures differ (run-to-run stability).

    Args:
        first, second: report dicts or JSON paths (e.g. two ``keras-se bench --only jax`` runs).

    Returns:
        One ``(backend, name, description, a_change, b_change, ratio_change)`` per figure present in
        both, the changes relative to ``first`` (0.01 = +1 %).
    """

    def figures(report):
        if not isinstance(report, dict):
            with open(report) as f:
                report = json.load(f)
        return {(f["backend"], f["name"], f["description"]): f for f in report["figures"]}

    a, b = figures(first), figures(second)
    return [
        (*key, *(b[key][k] / a[key][k] - 1 for k in ("a_median", "b_median", "ratio")))
        for key in a
        if key in b
    ]


if __name__ == "__main__":  # python -m keras_se.bench FIRST.json SECOND.json
    for backend, name, _, da, db, dr in compare_reports(*sys.argv[1:3]):
        print(f"{backend:10s} {name:32s} A {da:+.1%}  B {db:+.1%}  A/B {dr:+.1%}")
