"""keras_se.bench_training: the old name of `keras_se.bench.suites_training` still imports."""

from __future__ import annotations

from keras_se import bench_training
from keras_se.bench import suites_training


def test_the_old_module_name_gives_the_training_benchmarks():
    for name in bench_training.__all__:
        assert getattr(bench_training, name) is getattr(suites_training, name)
    assert bench_training.write_tfds.__module__ == "keras_se.bench.suites_training"
