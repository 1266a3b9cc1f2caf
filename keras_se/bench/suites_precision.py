"""The bfloat16 export against the float32 one, the serving overhead and the machine's peak.

``keras-se bench --only bf16``: what the bfloat16 SavedModel of `keras_se.export` gains in
images/s, how close its predictions stay to float32's (`agreement`), what the serving
signature costs over the bare compiled forward, how much of TensorFlow's reached peak
GFLOP/s the model uses, and which oneDNN kernels run (`onednn_kernels`).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile

import keras
import numpy as np

from keras_se import models
from keras_se.bench.harness import (
    Figure,
    compiled_forward,
    compiled_train_step,
    interleave,
    timed_figure,
)
from keras_se.bench.process import loadavg, run_worker, tensorflow_env

#: The line a ``keras_se.bench.worker onednn`` child writes between its phases
#: (`parse_onednn_verbose`).
ONEDNN_MARK = "@@keras_se_onednn_phase "


def _rate_figure(name, description, labels, times, work, *, unit="GFLOP/s"):
    """A `Figure` of rates from `interleave`'s two lists of seconds: ``work[i] / t / 1e9``."""
    a, b = ([w / t / 1e9 for t in ts] for w, ts in zip(work, times))
    return Figure(name, description, *labels, a, b, unit=unit, backend=keras.backend.backend())


class _Measured:
    """Runs one measurement, noting the 1-minute load average before and after it."""

    def __init__(self):
        self.loads = []

    def __call__(self, step, fn):
        before = loadavg()
        value = fn()
        self.loads.append([step, before, loadavg()])
        return value


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

    Every timing is a `timed_figure` (A and B interleaved after warm-up, medians over the
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
    from keras_se.utils import model_stats

    measured, info = _Measured(), {"model": model, "size": size}
    keras.utils.set_random_seed(0)
    net = models.get(model, input_shape=(size, size, 3))
    macs = model_stats(net).macs
    info["macs"] = macs
    rng = np.random.default_rng(0)
    figures = _exported_figures(
        net,
        info,
        model=model,
        size=size,
        batches=batches,
        repeats=repeats,
        overhead_batch=overhead_batch,
        digits_epochs=digits_epochs,
        rng=rng,
        measured=measured,
        log=log,
    )
    # the limit: TensorFlow's peak on a big matmul and a ResNet-shaped 3x3 convolution
    peak = _PeakSteps(matmul, conv)
    figures += _peak_figures(peak, repeats=repeats, measured=measured, log=log)
    # the model against that peak, each precision against its own
    figures += _share_of_peak_figures(
        net,
        peak,
        model=model,
        size=size,
        macs=macs,
        compute_batch=compute_batch,
        repeats=repeats,
        train_repeats=train_repeats,
        rng=rng,
        measured=measured,
        log=log,
    )
    log("  which oneDNN kernels run (ONEDNN_VERBOSE=1, a child process) ...")
    info["onednn"] = measured(
        "onednn",
        lambda: onednn_kernels(model, size, compute_batch, steps=onednn_steps),
    )
    info["loadavg"] = measured.loads
    info["figures"] = figures
    return info


def _exported_figures(
    net, info, *, model, size, batches, repeats, overhead_batch, digits_epochs, rng, measured, log
):
    """The SavedModel rows: bfloat16 vs float32 throughput per batch, then the serving overhead.

    Fills ``info["agreement"]`` (the two exports on the last batch's random images, and on
    the digits validation split when ``digits_epochs``).
    """
    from keras_se import export

    with tempfile.TemporaryDirectory() as tmp:
        log(f"  exporting {model} ({size}x{size}) in float32 and bfloat16 ...")
        paths = {
            p: export.export_model(net, tmp, name=f"{model}_{p}", precision=p).path
            for p in export.PRECISIONS
        }
        serve32, serve16 = (_serving_fn(paths[p]) for p in export.PRECISIONS)
        figures, images = _export_speedup(
            serve32,
            serve16,
            model=model,
            size=size,
            batches=batches,
            repeats=repeats,
            rng=rng,
            measured=measured,
            log=log,
        )
        info["agreement"] = {
            f"{model}_random_weights_b{batches[-1]}": agreement(serve32(images), serve16(images))
        }
        if digits_epochs:
            log(f"  agreement on the digits validation split ({digits_epochs} epochs) ...")
            info["agreement"]["digits_se_resnet20"] = measured(
                "digits_agreement",
                lambda: digits_agreement(os.path.join(tmp, "digits"), epochs=digits_epochs),
            )
        figures.append(
            _serving_overhead(
                net,
                serve32,
                model=model,
                size=size,
                overhead_batch=overhead_batch,
                repeats=repeats,
                rng=rng,
                measured=measured,
                log=log,
            )
        )
    return figures


def _export_speedup(serve32, serve16, *, model, size, batches, repeats, rng, measured, log):
    """``bf16_export_speedup_b{N}`` per batch; ``(figures, the last batch's images)``."""
    import tensorflow as tf

    figures = []
    for batch in batches:
        images = tf.constant(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
        log(f"  SavedModel throughput, batch {batch} ...")
        figure = measured(
            f"bf16_export_speedup_b{batch}",
            lambda images=images, batch=batch: timed_figure(
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
    return figures, images


def _serving_overhead(net, serve32, *, model, size, overhead_batch, repeats, rng, measured, log):
    """``serving_overhead``: the float32 SavedModel on uint8 images vs the bare compiled forward."""
    import tensorflow as tf

    from keras_se.data import Preprocessing, normalize

    log(f"  serving overhead, batch {overhead_batch} ...")
    images = rng.integers(0, 256, (overhead_batch, size, size, 3), dtype=np.uint8)
    pre = normalize(tf.constant(images), Preprocessing())
    bare = compiled_forward(net)
    uint8 = tf.constant(images)
    return measured(
        "serving_overhead",
        lambda: timed_figure(
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


class _PeakSteps:
    """A ``matmul``-square matmul and a 3x3 convolution of shape ``conv``, per precision.

    ``steps[dtype][kind]`` runs one (``kind``: ``"matmul"`` or ``"conv"``); ``flops[kind]``
    is its work.
    """

    def __init__(self, matmul, conv):
        import tensorflow as tf

        n, c = matmul, conv[-1]
        self.matmul, self.conv_text = n, "x".join(map(str, conv)) + f" -> {c}, 3x3"
        self.flops = {"matmul": 2.0 * n**3, "conv": 2.0 * math.prod(conv) * c * 9}
        self.steps = {}
        for dtype in ("float32", "bfloat16"):
            a = tf.cast(tf.random.normal((n, n)), dtype)
            x = tf.cast(tf.random.normal(conv), dtype)
            k = tf.cast(tf.random.normal((3, 3, c, c)), dtype)
            mm = tf.function(lambda a=a: tf.linalg.matmul(a, a))
            cv = tf.function(lambda x=x, k=k: tf.nn.conv2d(x, k, 1, "SAME"))
            self.steps[dtype] = {
                "matmul": lambda mm=mm: mm().numpy(),
                "conv": lambda cv=cv: cv().numpy(),
            }


def _peak_figures(peak, *, repeats, measured, log):
    """``peak_matmul`` and ``peak_conv3x3``: reached GFLOP/s, bfloat16 (A) vs float32 (B)."""
    n, figures = peak.matmul, []
    for kind, what in (("matmul", f"{n}x{n} matmul"), ("conv", f"conv {peak.conv_text}")):
        log(f"  peak GFLOP/s: {what} ...")
        times = measured(
            f"peak_{kind}",
            lambda kind=kind: interleave(
                peak.steps["bfloat16"][kind], peak.steps["float32"][kind], repeats=repeats, warmup=2
            ),
        )
        figures.append(
            _rate_figure(
                "peak_matmul" if kind == "matmul" else "peak_conv3x3",
                f"TensorFlow's reached GFLOP/s, {what}: bfloat16 vs float32",
                ("bfloat16", "float32"),
                times,
                (peak.flops[kind], peak.flops[kind]),
            )
        )
    return figures


def _share_of_peak_figures(
    net, peak, *, model, size, macs, compute_batch, repeats, train_repeats, rng, measured, log
):
    """``share_of_peak_{inference,train_step}_{precision}``: the model's GFLOP/s vs the conv's."""
    from keras_se import export

    y = rng.integers(0, 1000, size=(compute_batch,))
    x = rng.standard_normal((compute_batch, size, size, 3)).astype("float32")
    figures = []
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
                    fn, peak.steps[precision]["conv"], repeats=reps, warmup=2
                ),
            )
            figures.append(
                _rate_figure(
                    name,
                    f"{model} {mode.replace('_', ' ')} ({precision}), batch {compute_batch}, "
                    f"{size}x{size}, {flops:g} x {macs / 1e9:.3g} GMACs per image, vs the "
                    f"{precision} conv {peak.conv_text}: share of the reached peak",
                    (f"{model} {mode}", f"conv 3x3 {precision}"),
                    times,
                    (flops * macs * compute_batch, peak.flops["conv"]),
                )
            )
    return figures


def onednn_kernels(model, size, batch, *, steps, env=None):
    """oneDNN primitives run by a bfloat16 forward and training step, from ``ONEDNN_VERBOSE=1``.

    A fresh ``keras_se.bench.worker onednn`` child builds registry ``model`` under ``mixed_bfloat16``
    and runs ``steps`` forward calls and training steps after one untimed call of each;
    oneDNN prints one ``onednn_verbose,...,exec,...`` line per primitive executed.

    Returns:
        ``{"isa": ..., "forward": {kernel: {"count", "ms"}}, "train_step": {...}}``: per
        phase, the calls and milliseconds by ``"<primitive> <implementation> (<dtypes>)"``,
        and the ISA oneDNN reports (e.g. ``Intel AVX2``, ``Intel AVX-512 with AMX``).
    """
    env = dict(env or tensorflow_env(), ONEDNN_VERBOSE="1")
    result = run_worker("onednn", model, size, batch, steps, env=env, timeout=3600)
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
