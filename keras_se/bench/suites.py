"""Which figures ``keras-se bench`` runs, with which settings: `run_benchmarks` and its groups.

The groups (`GROUPS`) are the suites: the SE-cost figures (`keras_se.bench.suites_models`),
the training loop (`keras_se.bench.suites_training`, in a child process), the JAX re-run of
the layer and model figures (fresh JAX children, pooled), the bfloat16 export
(`keras_se.bench.suites_precision`) and keras_se against timm (`keras_se.bench.peer`).
`SETTINGS` holds the sizes and repetitions of ``--quick`` and of a full run.
"""

from __future__ import annotations

import math

import keras

from keras_se.bench import peer as peer_lib
from keras_se.bench import process, suites_models, suites_precision
from keras_se.bench.harness import Figure, pool_figures
from keras_se.bench.peer import PEER_MODELS, PEERS
from keras_se.bench.report import machine_info
from keras_se_core.errors import UsageError

#: The figure groups ``run_benchmarks(only=...)`` (``keras-se bench --only``) selects from.
GROUPS = ("layer", "models", "pipeline", "memory", "training", "jax", "peer", "bf16")
#: The groups a plain ``keras-se bench`` runs (the peer comparison is opt-in: ``--peer timm``;
#: the bfloat16 export and peak figures too: ``--only bf16``).
DEFAULT_GROUPS = ("layer", "models", "pipeline", "memory", "training", "jax")


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
        # the training-loop figures (keras_se.bench.suites_training), one tiny call of each
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
    mode = "quick" if quick else "full"

    def log(message):
        if verbose:
            print(message, flush=True)

    if device == "gpu":
        return run_device_benchmarks(quick=quick, log=log, peer_python=peer_python)

    groups = select_groups(only, jax=jax, peer=peer)
    if "peer" in groups:
        peer_python = peer_lib.find_peer_python(peer_python)  # fails fast, before any figure
    figures, extra = _in_process_figures(groups, mode, log)
    report = {
        "machine": machine_info(),
        "mode": mode,
        "groups": groups,
        "figures": [f.as_dict() for f in figures],
        **extra,
    }
    _add_child_and_opt_in_groups(
        report, groups, mode, peer_python=peer_python, threads=threads, log=log
    )
    return report


def _in_process_figures(groups, mode, log):
    """The layer, models, pipeline, memory and training groups; ``(figures, report extras)``."""
    settings = SETTINGS[mode]
    figures, extra = [], {}
    if "layer" in groups:
        log("SE layer vs naive block and memory floor ...")
        figures += suites_models.bench_se_layer(**settings["layer"])
    if "models" in groups:
        log("SE-ResNet-50 vs ResNet-50 (inference, eager, training step, keras.applications) ...")
        figures += suites_models.bench_models(**model_settings(settings))
    tensorflow = keras.backend.backend() == "tensorflow"
    if "pipeline" in groups and tensorflow:
        log("input pipeline vs training ...")
        figures += suites_models.bench_input_pipeline(repeats=settings["pipeline_repeats"])
    if "memory" in groups and tensorflow and settings["memory_repeats"]:
        log("peak memory of a training step (fresh processes) ...")
        figures += suites_models.bench_memory(
            size=settings["size"], batch=settings["batch"], repeats=settings["memory_repeats"]
        )
    if "training" in groups and tensorflow:
        log("the training loop: Trainer vs fit, bfloat16, read volume, excitation logging ...")
        training_figures, training_extra = _training_figures(mode)
        figures += training_figures
        extra.update(training_extra)
    return figures, extra


def _add_child_and_opt_in_groups(report, groups, mode, *, peer_python, threads, log):
    """Adds the jax (child processes), bf16 and peer groups' figures and sections to ``report``."""
    settings = SETTINGS[mode]
    tensorflow = keras.backend.backend() == "tensorflow"
    if "jax" in groups and keras.backend.backend() != "jax":
        jax_figures, report["machine"]["jax_allocator"] = _jax_figures(
            quick=mode == "quick", log=log
        )
        report["figures"] += jax_figures
    if "bf16" in groups and tensorflow:
        log("the bfloat16 export, the serving overhead and the machine's peak ...")
        bf16_report = suites_precision.bench_bf16(log=log, **settings["bf16"])
        report["figures"] += [f.as_dict() for f in bf16_report.pop("figures")]
        report["bf16"] = bf16_report
    if "peer" in groups:
        log(f"keras_se (TensorFlow) vs timm (PyTorch, {peer_python}) ...")
        peer_report = peer_lib.bench_peer(
            python=peer_python, threads=threads, log=log, **settings["peer"]
        )
        report["figures"] += [f.as_dict() for f in peer_report["figures"]]
        report["peer"] = {k: v for k, v in peer_report.items() if k != "figures"}


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
    """`keras_se.bench.suites_training`'s figures, run by a fresh ``worker training`` child."""
    result = process.read_worker_result(
        process.run_worker("training", mode, env=process.tensorflow_env(), timeout=3600).stdout
    )
    return [Figure(**f) for f in result["figures"]], {"read_volume": result["read_volume"]}


def _jax_figures(*, quick, log):
    """The layer and model figures under the JAX backend; ``(figures, allocator)``."""
    try:
        import jax  # noqa: F401
    except ImportError:
        log("JAX not installed: skipping the JAX figures.")
        return [], None
    env, allocator = process.jax_child_env()
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
            result = process.run_worker(*args, env=env, timeout=3600, check=False)
            if result.returncode != 0:
                return _jax_failed(result, log), allocator
            runs.append([Figure(**f) for f in process.read_worker_result(result.stdout)])
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


def run_device_benchmarks(*, quick, log, peer_python=None):
    """``keras-se bench --device gpu``: `bench_device`, then keras_se vs timm on the same device.

    The timm rows need a Python with torch and timm (this one, ``peer_python`` or
    ``$KERAS_SE_PEER_PYTHON``); without one they are skipped with a message.
    """
    settings = SETTINGS["quick" if quick else "full"]
    size, batch = (64, 2) if quick else (224, 64)  # 64: the ImageNet stem the timm weights need
    log("SE-ResNet-50 vs ResNet-50, mixed precision + XLA ...")
    figures = suites_models.bench_device(size=size, batch=batch, repeats=settings["repeats"])
    report = {"machine": machine_info(), "mode": ("quick" if quick else "full") + "-gpu"}
    try:
        python = peer_lib.find_peer_python(peer_python)
    except UsageError as err:
        log(f"no timm comparison: {err}")
        python = None
    if python:
        log(f"keras_se ({keras.backend.backend()}) vs timm (PyTorch) on the same device ...")
        peer = peer_lib.bench_device_peer(
            python=python, size=size, batch=batch, repeats=settings["repeats"], log=log
        )
        figures += peer.pop("figures")
        report["peer"] = peer
    report["figures"] = [f.as_dict() for f in figures]
    return report
