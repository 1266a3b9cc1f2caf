"""keras_se.bench_training: the training-loop figures (structure only; times are never asserted)
and the bytes each worker reads (a count, asserted)."""

from __future__ import annotations

import pytest

from keras_se import bench_training


def test_sharded_workers_read_their_share_of_the_records(tmp_path):
    """TFDS in 4 files: worker 0 of 2 reads about half the bytes of a single worker; without
    sharding (global slices) it reads them all."""
    bench_training.write_tfds(str(tmp_path), images=64, files=4)
    one = bench_training.worker_read_bytes(str(tmp_path), 1, 0)
    half = bench_training.worker_read_bytes(str(tmp_path), 2, 0)
    every = bench_training.worker_read_bytes(str(tmp_path), 2, 0, sharded=False)
    assert one["images"] == 64 and half["images"] == every["images"] == 32
    assert half["bytes"] == pytest.approx(one["bytes"] / 2, rel=0.1)
    assert every["bytes"] == pytest.approx(one["bytes"], rel=0.1)


@pytest.mark.slow
def test_loop_and_logging_figures_have_the_report_structure():
    figure = bench_training.bench_loop_vs_fit(steps=1, repeats=1, image_size=16, batch=16)
    assert (figure.name, figure.a_label, figure.b_label) == ("loop_vs_fit", "Trainer", "model.fit")
    assert len(figure.a) == len(figure.b) == 1 and figure.ratio > 0 and figure.goal() is not None
    overhead = bench_training.bench_excitation_log(repeats=1, image_size=16, batch=16, steps=2)
    assert overhead.name == "excitation_log_overhead" and overhead.ratio > 0
