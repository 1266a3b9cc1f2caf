"""keras_se.bench.__main__: ``python -m keras_se.bench FIRST.json SECOND.json``."""

from __future__ import annotations

import json
import sys

import pytest

from keras_se.bench.harness import Figure
from tests import prefork


@pytest.mark.slow
def test_python_dash_m_keras_se_bench_compares_two_reports(tmp_path):
    """The command BENCHMARKS.md's run-to-run notes use: one line a figure, changes in %."""
    for name, a in (("1.json", 1.0), ("2.json", 1.1)):
        figure = Figure("train_step", "d", "A", "B", [a], [2.0], backend="jax").as_dict()
        (tmp_path / name).write_text(json.dumps({"figures": [figure]}))
    result = prefork.run(
        [
            sys.executable,
            "-m",
            "keras_se.bench",
            str(tmp_path / "1.json"),
            str(tmp_path / "2.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "jax",
        "train_step",
        "A",
        "+10.0%",
        "B",
        "+0.0%",
        "A/B",
        "+10.0%",
    ]
