"""keras_se.bench.worker: the child processes, in this process and as ``python -m``."""

from __future__ import annotations

import subprocess

import pytest

from keras_se.bench import harness, process, suites, worker


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.integration
def test_worker_train_memory_samples_the_training_steps():
    """`bench_memory`'s child program, run in this process on a small model."""
    info = worker.train_memory("se_resnet18", 32, 2, classes=3)
    assert set(info) == {"base_mib", "peak_mib"}
    assert 0 < info["base_mib"] <= info["peak_mib"]


@pytest.mark.bench
@pytest.mark.integration
def test_worker_runs_as_a_module_in_a_child_process():
    """What `bench_memory` runs: ``python -m keras_se.bench.worker memory ...``."""
    result = process.run_worker("memory", "se_resnet18", 32, 2, timeout=300)
    info = process.read_worker_result(result.stdout)
    assert 0 < info["base_mib"] <= info["peak_mib"]
    with pytest.raises(subprocess.CalledProcessError):
        process.run_worker("figures", "medium", timeout=300)


@pytest.mark.bench
@pytest.mark.integration
def test_jax_child_returns_its_share_of_the_repetitions():
    """One of `_jax_figures`' children, for real: JAX, ``--share``, raw pairs of every figure."""
    pytest.importorskip("jax")
    env, _ = process.jax_child_env()
    result = process.run_worker("figures", "quick", "--share", 2, env=env, timeout=600)
    figures = [harness.Figure(**f) for f in process.read_worker_result(result.stdout)]
    names = [f.name for f in figures]
    assert names[:2] == ["se_layer_vs_floor", "se_layer_vs_naive"] and "train_step" in names
    quick = suites.SETTINGS["quick"]
    assert all(f.backend == "jax" and len(f.a) == len(f.b) and f.calls >= 1 for f in figures)
    assert len(figures[0].a) == -(-quick["layer"]["repeats"] // 2)  # ceil(6 / 2)
    train = figures[names.index("train_step")]
    assert len(train.a) == -(-quick["slow_repeats"] // 2)
    assert all(min(f.a) > 0 and min(f.b) > 0 for f in figures)
