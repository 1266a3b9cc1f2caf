"""keras_se.bench, the package: every name of the former single module still imports from it.

Each job's tests mirror its module: tests/test_harness.py, test_process.py, test_suites.py,
test_suites_models.py, test_suites_precision.py, test_suites_training.py, test_peer.py,
test_peer_sides.py, test_report.py, test_worker.py. Never timings: those belong in BENCHMARKS.md.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from keras_se import bench
from tests import prefork

#: The public names of keras_se/bench.py before it became a package (and what keras_se.cli calls).
FORMER_NAMES = """
GOALS GROUPS DEFAULT_GROUPS Figure calls_per_sample interleave compiled_forward
compiled_train_step pool_figures bench_models bench_se_layer bench_input_pipeline
WORKER_RESULT_PREFIX read_worker_result bench_memory bench_device PEERS PEER_MODELS PEER_INSTALL
TORCH_LAYOUTS PEER_TOLERANCE PEER_MODULES PEER_PYTHON_INSTALL find_peer_python LiveWorker
interleave_parties bench_peer KerasSide TorchSide serve run_device_benchmarks bench_device_peer
ONEDNN_MARK loadavg agreement digits_agreement bench_bf16 onednn_kernels parse_onednn_verbose
bf16_markdown machine_info SETTINGS select_groups run_benchmarks model_settings TCMALLOC
find_tcmalloc jax_child_env format_markdown report_section write_report compare_reports
""".split()


def test_the_package_exports_every_former_name():
    missing = [name for name in FORMER_NAMES if not hasattr(bench, name)]
    assert not missing, missing
    assert sorted(bench.__all__) == sorted(set(bench.__all__))
    for name in bench.__all__:
        value = getattr(bench, name)
        module = getattr(value, "__module__", None)
        # each name is its module's own object, not a copy
        if module and module.startswith("keras_se.bench."):
            assert getattr(importlib.import_module(module), name) is value


@pytest.mark.slow
def test_importing_the_package_leaves_the_worker_to_python_dash_m():
    """``python -m keras_se.bench.worker`` runs the module once: the package does not import it
    (runpy would warn, and the module would run beside an imported copy)."""
    # forked from the preloaded interpreter (tests/prefork.py): keras_se is imported fresh
    code = "import sys, keras_se.bench; print('keras_se.bench.worker' in sys.modules)"
    result = prefork.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "False"
    assert bench.PEER_MODULES[-1] == "keras_se.bench.worker"
