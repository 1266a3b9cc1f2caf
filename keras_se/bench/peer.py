"""keras_se against timm on PyTorch: two live worker processes, the same weights, interleaved.

``keras-se bench --peer timm`` (`bench_peer`, on the CPU) and the timm rows of
``keras-se bench --device gpu`` (`bench_device_peer`). Each framework runs in its own
process (`LiveWorker`, serving `keras_se.bench.peer_sides`), so the two never compete for
the cores; the parent asks them in turn for one timed step each.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_se.bench.harness import Figure, interleave_parties
from keras_se.bench.peer_sides import KerasSide
from keras_se.bench.process import WORKER_MODULE, WORKER_RESULT_PREFIX, tensorflow_env
from keras_se_core.errors import UsageError

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


#: What the peer Python imports to run ``python -m keras_se.bench.worker serve torch``.
PEER_MODULES = ("torch", "timm", "safetensors.torch", WORKER_MODULE)
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
            env=_torch_env(),
        )
    except OSError as err:
        return f"cannot run it ({err.strerror or err})"
    if probe.returncode == 0:
        return None
    lines = (
        probe.stdout.strip() or probe.stderr.strip() or f"exit {probe.returncode}"
    ).splitlines()
    return lines[-1]


def find_peer_python(python=None):
    """The Python that runs the PyTorch side: ``python``, else this one, else ``$KERAS_SE_PEER_PYTHON``.

    The side runs as ``python -m keras_se.bench.worker serve torch``: besides torch and
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
    """A child process (``python -m keras_se.bench.worker serve SIDE``) answering one request per line.

    Requests and replies are JSON objects; a reply is the child's ``JSON...`` line (other
    output is skipped), ``{"error": ...}`` raises here. The child's stderr goes to a
    temporary file whose tail is shown when it dies.
    """

    def __init__(self, python, side, *, threads, device="cpu", env=None):
        self.side = side
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [python, "-m", WORKER_MODULE, "serve", side, "--threads", str(threads)]
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


def _torch_env():
    return dict(os.environ, KERAS_BACKEND="torch")


def _peer_inputs(tmp, *, batch, size):
    """Writes the shared random images and labels (seed 0) into ``tmp``; their two paths."""
    rng = np.random.default_rng(0)
    inputs, labels = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(inputs, rng.standard_normal((batch, size, size, 3)).astype("float32"))
    np.save(labels, rng.integers(0, 1000, size=(batch,)).astype("int64"))
    return inputs, labels


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
        LiveWorker(sys.executable, "keras", threads=threads, env=tensorflow_env()) as ours,
        LiveWorker(python, "torch", threads=threads, env=_torch_env()) as theirs,
    ):
        inputs, labels = _peer_inputs(tmp, batch=batch, size=size)
        versions = theirs.ask("versions")
        versions.update(ours.ask("versions"))
        for model in models:
            timm_name = PEER_MODELS[model]
            weights = os.path.join(tmp, f"{timm_name}.safetensors")
            theirs.ask("write_weights", timm_name=timm_name, path=weights, seed=0)
            for precision in precisions:
                for train in (False, True):
                    common = dict(
                        weights=weights,
                        inputs=inputs,
                        labels=labels,
                        precision=precision,
                        train=train,
                        learning_rate=learning_rate,
                    )
                    times = _peer_times(
                        ours,
                        theirs,
                        common,
                        model=model,
                        timm_name=timm_name,
                        diffs=diffs,
                        tmp=tmp,
                        repeats=train_repeats if train else repeats,
                        log=log,
                    )
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
    return {"figures": figures, "versions": versions, "threads": threads, "logit_diff": diffs}


def _peer_times(ours, theirs, common, *, model, timm_name, diffs, tmp, repeats, log):
    """One configuration of `bench_peer`: prepared on both sides, logits checked (inference),
    timed in rotating order; the seconds of keras_se and of each timm layout."""
    what = "training step" if common["train"] else "inference"
    log(f"  {model} vs timm {timm_name}, {common['precision']}, {what} ...")
    ours.ask("prepare", key="keras", model=model, **common)
    for layout in TORCH_LAYOUTS:
        theirs.ask("prepare", key=layout, model=timm_name, layout=layout, **common)
    if not common["train"]:
        precision = common["precision"]
        diffs[f"{model}/{precision}"] = _logit_check(
            ours, theirs, TORCH_LAYOUTS, tmp, precision=precision
        )
    parties = [ours.timed("keras")] + [theirs.timed(k) for k in TORCH_LAYOUTS]
    times = interleave_parties(parties, repeats=repeats)
    ours.ask("drop")
    theirs.ask("drop")
    return times


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
            python, "torch", threads=os.cpu_count(), device="auto", env=_torch_env()
        ) as theirs,
    ):
        inputs, labels = _peer_inputs(tmp, batch=batch, size=size)
        versions = theirs.ask("versions")
        weights = os.path.join(tmp, f"{timm_name}.safetensors")
        theirs.ask("write_weights", timm_name=timm_name, path=weights, seed=0)
        common = dict(weights=weights, inputs=inputs, labels=labels, learning_rate=0.01)
        diff = _device_logit_diff(ours, theirs, common, tmp, model=model, timm_name=timm_name)
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


def _device_logit_diff(ours, theirs, common, tmp, *, model, timm_name):
    """max |logit diff| / max |logit| of keras_se (in-process) and timm in float32, same weights."""
    ours.prepare("check", model=model, precision="float32", train=False, **common)
    theirs.ask("prepare", key="check", model=timm_name, precision="float32", train=False, **common)
    ours.logits("check", os.path.join(tmp, "ours.npy"))
    theirs.ask("logits", key="check", path=os.path.join(tmp, "theirs.npy"))
    a, b = np.load(os.path.join(tmp, "ours.npy")), np.load(os.path.join(tmp, "theirs.npy"))
    diff = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
    ours.drop()
    theirs.ask("drop")
    return diff
