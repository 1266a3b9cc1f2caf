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
import json
import os
import platform
import statistics
import subprocess
import sys
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
            "goal": None if goal is None else f"{goal[0]} {goal[1]}",
            "passed": self.passed(),
        }


def interleave(fn_a, fn_b, *, repeats, warmup=2, inner=1):
    """Times ``fn_a`` and ``fn_b`` alternately; returns two lists of seconds per call.

    Each repetition times ``inner`` calls of A then ``inner`` calls of B (the order
    alternates every repetition so neither always runs first).
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    times_a, times_b = [], []
    for rep in range(repeats):
        order = (
            ((fn_a, times_a), (fn_b, times_b))
            if rep % 2 == 0
            else ((fn_b, times_b), (fn_a, times_a))
        )
        for fn, times in order:
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - start) / inner)
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


def compiled_forward(model):
    """A compiled inference function ``x -> model(x, training=False)``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda x: model(x, training=False), jit_compile=False)
        return lambda x: fn(x).numpy()
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        @jax.jit
        def fn(x):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return out

        return lambda x: np.asarray(fn(x))
    raise UsageError(
        f"keras-se bench supports the tensorflow and jax backends. Received: backend={backend!r}"
    )


def compiled_train_step(model, *, learning_rate=0.01):
    """A compiled SGD step (forward, backward, update) on ``(x, y)``."""
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=False,
    )
    backend = keras.backend.backend()
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
def _figure(name, description, labels, fn_a, fn_b, *, repeats, warmup=2):
    """Times ``fn_a`` against ``fn_b`` with `interleave`; the `Figure` of the active backend."""
    a, b = interleave(fn_a, fn_b, repeats=repeats, warmup=warmup)
    return Figure(name, description, *labels, a, b, backend=keras.backend.backend())


def bench_models(*, size, batch, repeats, classes=1000):
    """Figures 1-4: SE-ResNet-50 vs ResNet-50 (and vs keras.applications) on one backend."""
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
    slow_repeats = max(3, repeats // 2)  # eager calls and training steps take longer

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
    compare("inference_eager", eager_description, pair, eager(se), eager(plain), slow_repeats)

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


def bench_se_layer(*, shape, repeats, ratio=16):
    """Figure 5: `SqueezeExcite` vs the naive functional block and the memory floor."""
    backend = keras.backend.backend()
    x = np.random.default_rng(0).random(shape).astype("float32")
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
        compiled_forward(ours),
        compiled_forward(naive),
        compiled_forward(floor),
    )
    label = "x".join(str(d) for d in shape)
    a, b = interleave(lambda: f_ours(x), lambda: f_floor(x), repeats=repeats)
    figures = [
        Figure(
            "se_layer_vs_floor",
            f"SE on {label} (compiled)",
            "SqueezeExcite",
            "mean + scale floor",
            a,
            b,
            backend=backend,
        )
    ]
    a, b = interleave(lambda: f_ours(x), lambda: f_naive(x), repeats=repeats)
    figures.append(
        Figure(
            "se_layer_vs_naive",
            f"SE on {label} (compiled)",
            "SqueezeExcite",
            "GAP-Dense-Dense-Multiply",
            a,
            b,
            backend=backend,
        )
    )
    return figures


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
        size=64, batch=2, repeats=3, layer_shape=(2, 28, 28, 64), pipeline_repeats=1, memory=False
    ),
    "full": dict(
        size=224,
        batch=8,
        repeats=31,
        layer_shape=(16, 56, 56, 256),
        pipeline_repeats=3,
        memory=True,
    ),
}


def run_benchmarks(*, quick=False, jax=True, verbose=1, device="cpu"):
    """Runs every figure on this backend (and the layer/model figures under JAX); returns the report.

    ``device="gpu"``: the accelerator figures instead (`bench_device`: mixed precision + XLA at
    batch 64, or tiny sizes with ``quick``), on the active backend only.
    """
    settings = SETTINGS["quick" if quick else "full"]
    figures = []

    def log(message):
        if verbose:
            print(message, flush=True)

    if device == "gpu":
        log("SE-ResNet-50 vs ResNet-50, mixed precision + XLA ...")
        size, batch = (32, 2) if quick else (224, 64)
        figures = bench_device(size=size, batch=batch, repeats=settings["repeats"])
        return {
            "machine": machine_info(),
            "mode": ("quick" if quick else "full") + "-gpu",
            "figures": [f.as_dict() for f in figures],
        }

    log("SE layer vs naive block and memory floor ...")
    figures += bench_se_layer(shape=settings["layer_shape"], repeats=settings["repeats"] * 2)
    log("SE-ResNet-50 vs ResNet-50 (inference, eager, training step, keras.applications) ...")
    figures += bench_models(
        size=settings["size"], batch=settings["batch"], repeats=settings["repeats"]
    )
    if keras.backend.backend() == "tensorflow":
        log("input pipeline vs training ...")
        figures += bench_input_pipeline(repeats=settings["pipeline_repeats"])
        if settings["memory"]:
            log("peak memory of a training step (fresh processes) ...")
            figures += bench_memory(size=settings["size"], batch=settings["batch"], repeats=3)
    report = {
        "machine": machine_info(),
        "mode": "quick" if quick else "full",
        "figures": [f.as_dict() for f in figures],
    }
    if jax and keras.backend.backend() != "jax":
        report["figures"] += _jax_figures(quick=quick, log=log)
    return report


def _jax_figures(*, quick, log):
    try:
        import jax  # noqa: F401
    except ImportError:
        log("JAX not installed: skipping the JAX figures.")
        return []
    log("the same layer/model figures under the JAX backend (subprocess) ...")
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", ""))
    mode = "quick" if quick else "full"
    result = _run_worker("figures", mode, env=env, timeout=3600, check=False)
    if result.returncode != 0:
        log(
            f"JAX figures failed: {result.stderr.strip().splitlines()[-1] if result.stderr else result.returncode}"
        )
        return []
    return read_worker_result(result.stdout)


def format_markdown(report, *, command):
    """The BENCHMARKS.md table for a report."""
    m = report["machine"]
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, Keras {m['keras']}, "
        f"TensorFlow {m['tensorflow']}, JAX {m['jax']}; mode: {report['mode']}.",
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
    return "\n".join(lines)


def write_report(report, *, out=None, markdown=None, command="keras-se bench"):
    """Writes the JSON report and, optionally, the table into a markdown file between markers."""
    if out:
        write_json(out, report, indent=2)
    if markdown:
        table = format_markdown(report, command=command)
        begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
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
