"""The child processes of `keras_se.bench`: ``python -m keras_se.bench.worker COMMAND ...``.

`keras_se.bench` runs some figures in a fresh process (`keras_se.bench.process.run_worker`),
where nothing else has touched the heap (peak memory of training steps) or where another
Keras backend is active (the JAX figures, with ``KERAS_BACKEND=jax`` set by the parent).
Each command prints one line ``JSON<result>`` on stdout, which
`keras_se.bench.process.read_worker_result` parses; everything else a child prints
(TensorFlow's start-up lines, progress) is ignored. The package's ``__init__`` does not
import this module, so ``python -m`` runs it without a second copy.

Commands:
    ``memory MODEL SIZE BATCH``: the resident memory before and the peak during the
    first three training steps of registry model ``MODEL`` (`train_memory`).
    ``figures MODE [--part layer|models] [--share N]``: the layer and model figures of
    `keras_se.bench.suites_models` on the active backend, with the settings ``MODE``
    (``quick`` or ``full``), 1/N of each figure's repetitions (`figures`).
    ``training MODE``: the training-loop figures of `keras_se.bench.suites_training`
    (`training`; in a fresh process because the Trainer sets global Keras state such as the
    dtype policy).
    ``read-volume ROOT N I [--unsharded]``: the bytes worker ``I`` of ``N`` reads over one
    epoch of the generated TFDS dataset in ``ROOT``
    (`keras_se.bench.suites_training.worker_read_bytes`).
    ``onednn MODEL SIZE BATCH STEPS``: a ``mixed_bfloat16`` forward and training step of
    registry ``MODEL``, run with ``ONEDNN_VERBOSE=1`` by
    `keras_se.bench.suites_precision.onednn_kernels` (`onednn_phases`), phases separated by
    ``ONEDNN_MARK`` lines on stdout.
    ``serve SIDE --threads N``: a live worker of the peer comparison
    (`keras_se.bench.peer_sides.serve`): ``keras`` (keras_se) or ``torch`` (timm), one JSON
    request per line on stdin, one ``JSON`` reply line each on stdout; anything else the
    libraries print goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import sys
import threading
import time

from keras_se.bench import peer_sides, suites_models
from keras_se.bench.harness import compiled_forward, compiled_train_step
from keras_se.bench.process import WORKER_MODULE, WORKER_RESULT_PREFIX
from keras_se.bench.suites import SETTINGS, model_settings
from keras_se.bench.suites_precision import ONEDNN_MARK


def rss_mib():
    """This process's resident set size in MiB (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def train_memory(name, size, batch, *, steps=3, classes=1000):
    """RSS before, and its peak during, the first ``steps`` training steps of a new model.

    The base is measured after building the model and the step function (runtime and
    weights); the steps add tracing, optimizer slots and activations. A thread samples
    the RSS every 0.5 ms while they run.

    Returns:
        ``{"base_mib": float, "peak_mib": float}``.
    """
    import numpy as np

    from keras_se import models, speed

    model = speed.accelerate(models.get(name, input_shape=(size, size, 3), classes=classes))
    step = compiled_train_step(model)
    x = np.random.default_rng(0).random((batch, size, size, 3)).astype("float32")
    y = np.zeros((batch,), "int64")
    gc.collect()
    base = rss_mib()
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for _ in range(steps):
            step(x, y)
    finally:
        done.set()
        sampler.join()
    return {"base_mib": base, "peak_mib": peak[0]}


def figures(mode, part="all", share=1):
    """The SE-layer and model figures (`bench_se_layer`, `bench_models`) with all their fields.

    ``part``: ``"layer"``, ``"models"`` or ``"all"``. ``share``: this process is one of
    ``share`` that split each figure's repetitions (``ceil(repeats / share)`` of them here);
    the figures come back with their repetitions, so the parent pools the processes'
    with `keras_se.bench.harness.pool_figures`.
    """
    settings = SETTINGS[mode]
    result = []
    if part in ("all", "layer"):
        layer = dict(settings["layer"], repeats=math.ceil(settings["layer"]["repeats"] / share))
        result += suites_models.bench_se_layer(**layer)
    if part in ("all", "models"):
        result += suites_models.bench_models(**model_settings(settings, share=share))
    return [dataclasses.asdict(f) for f in result]


def training(mode):
    """The training-loop figures (`keras_se.bench.suites_training`) with the settings of ``MODE``.

    Returns:
        ``{"figures": [Figure fields, ...], "read_volume": [row, ...]}``.
    """
    from keras_se.bench import suites_training as bench_training

    settings = SETTINGS[mode]["training"]
    figures = [
        bench_training.bench_loop_vs_fit(**settings["loop"]),
        bench_training.bench_precision(**settings["precision"]),
    ]
    read_figures, rows = bench_training.bench_read_volume(**settings["read_volume"])
    figures += read_figures
    figures.append(bench_training.bench_excitation_log(**settings["excitation_log"]))
    return {"figures": [dataclasses.asdict(f) for f in figures], "read_volume": rows}


def read_volume(root, num_workers, worker, *, sharded):
    """`keras_se.bench.suites_training.bench_read_volume`'s child: one worker's bytes read."""
    from keras_se.bench.suites_training import worker_read_bytes

    return worker_read_bytes(root, num_workers, worker, sharded=sharded)


def onednn_phases(name, size, batch, steps):
    """`keras_se.bench.suites_precision.onednn_kernels`' child: ``steps`` bfloat16 forward calls, then training
    steps, of registry model ``name``, each phase after one untimed call and between marks.

    The marks go to file descriptor 1 after a flush, in order with oneDNN's verbose lines.
    """
    import numpy as np

    from keras_se import export, models

    def mark(phase):
        sys.stdout.flush()
        os.write(1, (ONEDNN_MARK + phase + "\n").encode())

    model = export.with_precision(models.get(name, input_shape=(size, size, 3)), "bfloat16")
    x = np.random.default_rng(0).random((batch, size, size, 3)).astype("float32")
    y = np.zeros((batch,), "int64")
    forward = compiled_forward(model)
    train = compiled_train_step(export.with_precision(model, "bfloat16"))
    for phase, fn in (("forward", lambda: forward(x)), ("train_step", lambda: train(x, y))):
        fn()
        mark(phase)
        for _ in range(steps):
            fn()
        mark("end")
    return {"steps": steps}


def serve(side, threads, device):
    """`keras_se.bench.peer_sides.serve` with the replies on the real stdout and all other output
    on stderr."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # C++ and Python prints of the libraries: stderr
    sys.stdout = sys.stderr
    return peer_sides.serve(side, threads=threads, device=device, stdout=replies)


def _parser():
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    commands = parser.add_subparsers(dest="command", required=True)
    memory = commands.add_parser("memory", help="peak memory of the first training steps")
    memory.add_argument("model")
    memory.add_argument("size", type=int)
    memory.add_argument("batch", type=int)
    figure = commands.add_parser("figures", help="the layer and model figures")
    figure.add_argument("mode", choices=("quick", "full"))
    figure.add_argument("--part", choices=("all", "layer", "models"), default="all")
    figure.add_argument("--share", type=int, default=1)
    train = commands.add_parser("training", help="the training-loop figures")
    train.add_argument("mode", choices=("quick", "full"))
    volume = commands.add_parser("read-volume", help="the bytes one input worker reads")
    volume.add_argument("root")
    volume.add_argument("num_workers", type=int)
    volume.add_argument("worker", type=int)
    volume.add_argument("--unsharded", action="store_true")
    onednn = commands.add_parser("onednn", help="bfloat16 forward and training step phases")
    onednn.add_argument("model")
    onednn.add_argument("size", type=int)
    onednn.add_argument("batch", type=int)
    onednn.add_argument("steps", type=int)
    live = commands.add_parser("serve", help="a live worker of the peer comparison")
    live.add_argument("side", choices=("keras", "torch"))
    live.add_argument("--threads", type=int, required=True)
    live.add_argument("--device", default="cpu")
    return parser


def main(argv=None):
    """Runs one command (see the module docstring); prints its ``JSON`` result line."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.side, args.threads, args.device)
    if args.command == "memory":
        result = train_memory(args.model, args.size, args.batch)
    elif args.command == "training":
        result = training(args.mode)
    elif args.command == "read-volume":
        result = read_volume(args.root, args.num_workers, args.worker, sharded=not args.unsharded)
    elif args.command == "onednn":
        result = onednn_phases(args.model, args.size, args.batch, args.steps)
    else:
        result = figures(args.mode, args.part, args.share)
    print(WORKER_RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
