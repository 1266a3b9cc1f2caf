"""What SE costs, measured side by side: the harness behind ``keras-se bench``.

The paper (Hu et al., 2018, Section 4 "Model and computational complexity") reports that
SE-ResNet-50 costs 3.87 vs 3.86 GFLOPs, +1.8 % CPU inference time and +10 % GPU training
time over ResNet-50. Every comparison here is measured in one process, A and B
interleaved after warm-up, and reported as medians with min–max over the repetitions;
only ratios from one run are compared against goals.

One module per job:

- `keras_se.bench.harness`: `Figure`, the goals, interleaved timing, compiled steps per backend.
- `keras_se.bench.process`: child processes, their result lines, the JAX child's allocator.
- `keras_se.bench.suites`: the groups, their settings and `run_benchmarks`.
- `keras_se.bench.suites_models`: SE-ResNet-50 vs ResNet-50, the SE layer, pipeline, memory,
  the accelerator figures; `trained_as` is a model as `keras-se train` runs it (its fast twin,
  `keras_se.speed.accelerate`), `textbook_se_resnet50` the twin with its SE tails left as built.
- `keras_se.bench.suites_precision`: the bfloat16 export, the serving overhead, the peak.
- `keras_se.bench.suites_training`: the training loop (Trainer vs fit, read volume, ...).
- `keras_se.bench.peer` and `keras_se.bench.peer_sides`: keras_se vs timm on PyTorch.
- `keras_se.bench.report`: the machine, the JSON report and the BENCHMARKS.md tables.
- `keras_se.bench.worker`: the child processes (``python -m keras_se.bench.worker``).

``python -m keras_se.bench FIRST.json SECOND.json`` prints `compare_reports`.
"""

from keras_se.bench.harness import (
    GOALS,
    Figure,
    calls_per_sample,
    compiled_forward,
    compiled_train_step,
    interleave,
    interleave_parties,
    pool_figures,
)
from keras_se.bench.peer import (
    PEER_INSTALL,
    PEER_MODELS,
    PEER_MODULES,
    PEER_PYTHON_INSTALL,
    PEER_TOLERANCE,
    PEERS,
    TORCH_LAYOUTS,
    LiveWorker,
    bench_device_peer,
    bench_peer,
    find_peer_python,
)
from keras_se.bench.peer_sides import KerasSide, TorchSide, serve
from keras_se.bench.process import (
    TCMALLOC,
    WORKER_RESULT_PREFIX,
    find_tcmalloc,
    jax_child_env,
    loadavg,
    read_worker_result,
)
from keras_se.bench.report import (
    bf16_markdown,
    compare_reports,
    format_markdown,
    machine_info,
    report_section,
    write_report,
)
from keras_se.bench.suites import (
    DEFAULT_GROUPS,
    GROUPS,
    SETTINGS,
    model_settings,
    run_benchmarks,
    run_device_benchmarks,
    select_groups,
)
from keras_se.bench.suites_models import (
    bench_device,
    bench_input_pipeline,
    bench_memory,
    bench_models,
    bench_se_layer,
    textbook_se_resnet50,
    trained_as,
)
from keras_se.bench.suites_precision import (
    ONEDNN_MARK,
    agreement,
    bench_bf16,
    digits_agreement,
    onednn_kernels,
    parse_onednn_verbose,
)
from keras_se.bench.suites_training import (
    GENERATED_TFDS,
    bench_excitation_log,
    bench_loop_vs_fit,
    bench_precision,
    bench_read_volume,
    worker_read_bytes,
    write_tfds,
)

__all__ = [
    "DEFAULT_GROUPS",
    "GENERATED_TFDS",
    "GOALS",
    "GROUPS",
    "ONEDNN_MARK",
    "PEERS",
    "PEER_INSTALL",
    "PEER_MODELS",
    "PEER_MODULES",
    "PEER_PYTHON_INSTALL",
    "PEER_TOLERANCE",
    "SETTINGS",
    "TCMALLOC",
    "TORCH_LAYOUTS",
    "WORKER_RESULT_PREFIX",
    "Figure",
    "KerasSide",
    "LiveWorker",
    "TorchSide",
    "agreement",
    "bench_bf16",
    "bench_device",
    "bench_device_peer",
    "bench_excitation_log",
    "bench_input_pipeline",
    "bench_loop_vs_fit",
    "bench_memory",
    "bench_models",
    "bench_peer",
    "bench_precision",
    "bench_read_volume",
    "bench_se_layer",
    "bf16_markdown",
    "calls_per_sample",
    "compare_reports",
    "compiled_forward",
    "compiled_train_step",
    "digits_agreement",
    "find_peer_python",
    "find_tcmalloc",
    "format_markdown",
    "interleave",
    "interleave_parties",
    "jax_child_env",
    "loadavg",
    "machine_info",
    "model_settings",
    "onednn_kernels",
    "parse_onednn_verbose",
    "pool_figures",
    "read_worker_result",
    "report_section",
    "run_benchmarks",
    "run_device_benchmarks",
    "select_groups",
    "serve",
    "textbook_se_resnet50",
    "trained_as",
    "worker_read_bytes",
    "write_report",
    "write_tfds",
]
