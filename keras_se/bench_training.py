"""The training-loop benchmarks moved to `keras_se.bench.suites_training`; this name re-exports them.

Kept for ``from keras_se import bench_training`` (tests/test_data.py, docs/training.md).
"""

from keras_se.bench.suites_training import *  # noqa: F403
from keras_se.bench.suites_training import __all__  # noqa: F401
