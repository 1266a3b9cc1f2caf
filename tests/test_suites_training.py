"""keras_se.bench.suites_training: the bytes each worker reads (a count, asserted). The
training-loop figures' report structure is checked by tests/test_suites.py (the quick
training group)."""

from __future__ import annotations

import pytest

from keras_se.bench import suites_training


def test_sharded_workers_read_their_share_of_the_records(tmp_path):
    """TFDS in 4 files: worker 0 of 2 reads about half the bytes of a single worker; without
    sharding (global slices) it reads them all."""
    suites_training.write_tfds(str(tmp_path), images=64, files=4)
    one = suites_training.worker_read_bytes(str(tmp_path), 1, 0)
    half = suites_training.worker_read_bytes(str(tmp_path), 2, 0)
    every = suites_training.worker_read_bytes(str(tmp_path), 2, 0, sharded=False)
    assert one["images"] == 64 and half["images"] == every["images"] == 32
    assert half["bytes"] == pytest.approx(one["bytes"] / 2, rel=0.1)
    assert every["bytes"] == pytest.approx(one["bytes"], rel=0.1)
