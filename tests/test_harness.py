"""keras_se.bench.harness: interleaved timing, figures and compiled steps (never their timings)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_se.bench import harness
from keras_se.layers import SqueezeExcite


class FakeClock:
    """``time.perf_counter`` for the harness: advanced only by the timed functions."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def step(self, seconds, calls, label):
        def fn():
            calls.append(label)
            self.now += seconds

        return fn


def test_interleave_alternates_call_by_call_and_attributes_times(monkeypatch):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(harness.time, "perf_counter", clock)
    a, b = harness.interleave(
        clock.step(3.0, calls, "a"),
        clock.step(1.0, calls, "b"),
        repeats=4,
        warmup=1,
        inner=2,
    )
    # warm-up a,b; then a b a b / b a b a / ...: each side runs first every other repetition.
    assert (
        calls[:2] == ["a", "b"] and calls[2:6] == ["a", "b"] * 2 and calls[6:10] == ["b", "a"] * 2
    )
    assert len(calls) == 2 + 4 * 2 * 2
    # per-call means, each side's own time whichever ran first
    assert a == [3.0] * 4 and b == [1.0] * 4


def test_calls_per_sample_times_the_faster_side(monkeypatch):
    clock, calls = FakeClock(), []
    monkeypatch.setattr(harness.time, "perf_counter", clock)
    fast, slow = clock.step(0.004, calls, "fast"), clock.step(0.05, calls, "slow")
    assert harness.calls_per_sample(slow, fast, min_sample=0.2) == 50  # 0.2 / 0.004
    assert calls == ["slow", "fast"]
    assert harness.calls_per_sample(slow, slow, min_sample=0.01) == 1  # never fewer than one


def test_compiled_forward_without_numpy_copy_returns_the_same_values():
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, SqueezeExcite(4)(inputs))
    x = np.random.default_rng(0).random((2, 4, 4, 8)).astype("float32")
    copied = harness.compiled_forward(model)(x)
    tensor = harness.compiled_forward(model, to_numpy=False)(keras.ops.convert_to_tensor(x))
    assert isinstance(copied, np.ndarray) and not isinstance(tensor, np.ndarray)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), copied, rtol=1e-6)


def test_figure_ratio_and_goal():
    figure = harness.Figure("inference_compiled", "d", "A", "B", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert figure.ratio == 2.0 and figure.passed() is False
    d = figure.as_dict()
    assert (d["ratio_min"], d["ratio_max"], d["goal"], d["a_median"]) == (
        1.0,
        3.0,
        "<= 1.02",
        2.0,
    )
    assert harness.Figure("input_pipeline", "d", "A", "B", [10.0], [1.0]).passed() is True


@pytest.mark.slow
def test_interleave_parties_rotates_every_order():
    calls = []

    def party(name):
        return lambda: calls.append(name) or 0.5

    times = harness.interleave_parties([party("k"), party("n"), party("c")], repeats=6, warmup=1)
    assert times == [[0.5] * 6] * 3
    reps = ["".join(calls[3 + 3 * r : 6 + 3 * r]) for r in range(6)]
    assert calls[:3] == ["k", "n", "c"] and sorted(reps) == sorted(
        ["knc", "kcn", "nkc", "nck", "ckn", "cnk"]
    )


def test_pool_figures_takes_the_median_over_every_process_pair():
    run_1 = [harness.Figure("f", "d", "A", "B", [1.1, 1.2], [1.0, 1.0], calls=4)]
    run_2 = [harness.Figure("f", "d", "A", "B", [2.0, 3.0, 2.2], [2.0, 2.0, 2.0], calls=6)]
    run_3 = [harness.Figure("f", "d", "A", "B", [0.9], [1.0], calls=5)]
    [pooled] = harness.pool_figures([run_1, run_2, run_3])
    ratios = np.array([1.1, 1.2, 1.0, 1.5, 1.1, 0.9])
    assert pooled.a == [1.1, 1.2, 2.0, 3.0, 2.2, 0.9] and len(pooled.b) == 6
    assert pooled.ratio == pytest.approx(np.median(ratios)) and pooled.calls == 5
    assert run_1[0].a == [1.1, 1.2] and run_1[0].calls == 4  # the inputs are left as they were
