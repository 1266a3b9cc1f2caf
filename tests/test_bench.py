"""The benchmark harness's structure (never its timings: those belong in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess

import keras
import numpy as np
import pytest

from keras_se import bench
from keras_se_core.errors import UsageError
from tests.conftest import run_main


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
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    a, b = bench.interleave(
        clock.step(3.0, calls, "a"), clock.step(1.0, calls, "b"), repeats=4, warmup=1, inner=2
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
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    fast, slow = clock.step(0.004, calls, "fast"), clock.step(0.05, calls, "slow")
    assert bench.calls_per_sample(slow, fast, min_sample=0.2) == 50  # 0.2 / 0.004
    assert calls == ["slow", "fast"]
    assert bench.calls_per_sample(slow, slow, min_sample=0.01) == 1  # never fewer than one


def test_jax_child_preloads_tcmalloc_unless_ld_preload_is_set(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(bench, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    env, allocator = bench.jax_child_env()
    assert env["KERAS_BACKEND"] == "jax" and env["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4"
    assert env["TCMALLOC_RELEASE_RATE"] == "0" and "tcmalloc" in allocator
    monkeypatch.setattr(bench, "find_tcmalloc", lambda: None)
    env, allocator = bench.jax_child_env()
    assert "LD_PRELOAD" not in env and allocator.startswith("glibc malloc")
    monkeypatch.setenv("LD_PRELOAD", "")  # set, even empty: the user's choice is kept
    monkeypatch.setattr(bench, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    env, allocator = bench.jax_child_env()
    assert env["LD_PRELOAD"] == "" and "as set" in allocator


def test_find_tcmalloc_returns_a_library_path_or_none():
    found = bench.find_tcmalloc()
    assert found is None or "tcmalloc" in found


def test_compiled_forward_without_numpy_copy_returns_the_same_values():
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, bench.SqueezeExcite(4)(inputs))
    x = np.random.default_rng(0).random((2, 4, 4, 8)).astype("float32")
    copied = bench.compiled_forward(model)(x)
    tensor = bench.compiled_forward(model, to_numpy=False)(keras.ops.convert_to_tensor(x))
    assert isinstance(copied, np.ndarray) and not isinstance(tensor, np.ndarray)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), copied, rtol=1e-6)


def test_figure_ratio_and_goal():
    figure = bench.Figure("inference_compiled", "d", "A", "B", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert figure.ratio == 2.0 and figure.passed() is False
    d = figure.as_dict()
    assert (d["ratio_min"], d["ratio_max"], d["goal"], d["a_median"]) == (1.0, 3.0, "<= 1.02", 2.0)
    assert bench.Figure("input_pipeline", "d", "A", "B", [10.0], [1.0]).passed() is True


@pytest.mark.bench
@pytest.mark.integration
def test_quick_cli_report_structure(tmp_path, capsys, monkeypatch):
    out, markdown = tmp_path / "report.json", tmp_path / "BENCH.md"
    markdown.write_text(
        "# Benchmarks\n\nintro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nnotes\n"
    )
    # the training group runs in a child process: test_training_group_quick
    monkeypatch.setattr(bench, "_training_figures", lambda mode: ([], {"read_volume": []}))
    result = run_main(
        capsys,
        "bench",
        "--quick",
        "--no-jax",
        "--quiet",
        "--out",
        str(out),
        "--markdown",
        str(markdown),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick" and report["machine"]["backend"] == "tensorflow"
    names = [f["name"] for f in report["figures"]]
    for name in (
        "se_layer_vs_floor",
        "se_layer_vs_naive",
        "inference_compiled",
        "vs_keras_applications",
        "inference_eager",
        "train_step",
        "inference_compiled_textbook",
        "train_step_textbook",
        "input_pipeline",
    ):
        assert name in names
    assert report["groups"] == ["layer", "models", "pipeline", "memory", "training"]
    for f in report["figures"]:
        assert (
            f["a_min"] <= f["a_median"] <= f["a_max"] and f["b_min"] <= f["b_median"] <= f["b_max"]
        )
        assert f["ratio"] > 0
        if f["name"].endswith(("_textbook", "_unsharded")) or f["name"] == "bf16_vs_fp32":
            assert f["goal"] is None and f["passed"] is None  # informational rows
        else:
            assert isinstance(f["passed"], bool) and f["goal"]
    text = markdown.read_text()
    assert "old" not in text and "intro" in text and "notes" in text
    assert text.count("| tensorflow |") == len(report["figures"])


@pytest.mark.parametrize("args, needle", [(["--out"], "--out"), (["--bogus"], "--bogus")])
def test_bench_cli_errors(capsys, args, needle):
    result = run_main(capsys, "bench", *args)
    assert result.returncode == 2 and needle in result.stderr


@pytest.mark.bench
@pytest.mark.integration
def test_device_path_runs_on_whatever_device_is_there(capsys, tmp_path):
    """`--device gpu` (mixed precision + XLA) runs end to end; here on the CPU, at tiny sizes."""
    out = tmp_path / "gpu.json"
    result = run_main(capsys, "bench", "--device", "gpu", "--quick", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick-gpu"
    names = [f["name"] for f in report["figures"]]
    peer = ["device_peer_inference", "device_peer_train_step"] if "peer" in report else []
    assert names == ["device_inference", "device_train_step", *peer]
    assert all("images/s" in f["description"] and f["ratio"] > 0 for f in report["figures"])


def test_select_groups():
    assert (
        bench.select_groups() == list(bench.DEFAULT_GROUPS) and "peer" not in bench.DEFAULT_GROUPS
    )
    assert bench.select_groups(jax=False) == [g for g in bench.DEFAULT_GROUPS if g != "jax"]
    assert bench.select_groups(peer="timm") == ["peer"]  # --peer alone: that comparison only
    assert bench.select_groups("training, layer", peer="timm") == ["layer", "training", "peer"]
    assert bench.select_groups(["jax"], jax=False) == []
    for only, peer in (("layer,bogus", None), (",", None), (None, "onnx")):
        with pytest.raises(UsageError, match="bogus|only|peer='onnx'"):
            bench.select_groups(only, peer=peer)


def test_interleave_parties_rotates_every_order():
    calls = []

    def party(name):
        return lambda: calls.append(name) or 0.5

    times = bench.interleave_parties([party("k"), party("n"), party("c")], repeats=6, warmup=1)
    assert times == [[0.5] * 6] * 3
    reps = ["".join(calls[3 + 3 * r : 6 + 3 * r]) for r in range(6)]
    assert calls[:3] == ["k", "n", "c"] and sorted(reps) == sorted(
        ["knc", "kcn", "nkc", "nck", "ckn", "cnk"]
    )


def test_peer_figures_compare_with_the_faster_layout():
    times = [[1.0, 1.0], [2.0, 2.0], [1.25, 1.0]]  # keras_se, timm NCHW, timm channels_last
    figures = bench._peer_figures(
        "se_resnet50", "float32", False, times, batch=2, size=64, threads=2, timm_name="t"
    )
    by_name = {f.name: f for f in figures}
    assert set(by_name) == {"peer_inference", "peer_inference_nchw", "peer_inference_channels_last"}
    assert by_name["peer_inference"].ratios == [0.8, 1.0] and "channels_last" in (
        by_name["peer_inference"].b_label
    )
    assert by_name["peer_inference"].goal() == ("<=", 0.95)
    assert (
        by_name["peer_inference_nchw"].ratio == 0.5
        and by_name["peer_inference_nchw"].goal() is None
    )
    bf16 = bench._peer_figures(
        "se_resnet50", "bfloat16", True, times, batch=2, size=64, threads=2, timm_name="t"
    )
    assert {f.name for f in bf16} >= {"peer_train_step_bfloat16"} and all(
        f.goal() is None for f in bf16
    )


def test_peer_without_torch_is_a_usage_error(capsys, tmp_path):
    result = run_main(
        capsys, "bench", "--peer", "timm", "--peer-python", str(tmp_path / "no-python")
    )
    assert result.returncode == 2 and "pip install torch timm" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _python_with_torch_but_not_keras_se(tmp_path):
    """A hermetic stand-in for a venv that has torch and timm but not keras_se: this Python
    without site-packages (``-S``) or the working directory on its path (``-P``), with
    importable ``torch``, ``timm`` and ``safetensors.torch`` modules on ``PYTHONPATH``."""
    import os
    import stat
    import sys

    fake = tmp_path / "fake_site"
    for module in ("torch", "timm", "safetensors"):
        (fake / module).mkdir(parents=True)
        (fake / module / "__init__.py").write_text("__version__ = '0.0'\n")
    (fake / "safetensors" / "torch.py").write_text("")
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{fake}" exec "{sys.executable}" -S -P "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    probe = subprocess.run([str(python), "-c", "import torch, timm"], capture_output=True)
    assert probe.returncode == 0, probe.stderr
    assert subprocess.run([str(python), "-c", "import keras_se"], cwd=os.getcwd()).returncode == 1
    return str(python)


def test_peer_python_without_keras_se_is_a_usage_error_before_any_figure(
    capsys, tmp_path, monkeypatch
):
    """Issue 30 item 10: torch and timm are not enough, the peer Python runs keras_se's worker."""
    python = _python_with_torch_but_not_keras_se(tmp_path)

    def no_benchmark(*args, **kwargs):
        raise AssertionError("a benchmark started before the peer Python was checked")

    for name in ("bench_peer", "bench_se_layer", "bench_models", "LiveWorker"):
        monkeypatch.setattr(bench, name, no_benchmark)
    result = run_main(capsys, "bench", "--only", "layer", "--peer", "timm", "--peer-python", python)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in (
        "No module named 'keras_se'",
        f"{python} -m pip install keras-se torch timm",
        f"peer_python={python!r}",
    ):
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.bench
@pytest.mark.integration
def test_keras_side_serves_the_protocol(tmp_path):
    """The loop of a live keras_se worker, in this process: prepare, logits, time, errors."""
    import io

    from keras_se import models
    from keras_se import weights as reference

    # 64x64: the ImageNet stem, which reference (timm) weights need
    model = models.SEResNet18(input_shape=(64, 64, 3), classifier_activation=None)
    weights = reference.save_reference_weights(model, str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    common = dict(
        model="se_resnet18",
        weights=weights,
        inputs=str(tmp_path / "x.npy"),
        labels=str(tmp_path / "y.npy"),
        precision="float32",
        learning_rate=0.01,
    )
    requests = [
        {"op": "prepare", "key": "i", "train": False, **common},
        {"op": "prepare", "key": "t", "train": True, **common},
        {"op": "logits", "key": "i", "path": str(tmp_path / "logits.npy")},
        {"op": "time", "key": "t"},
        {"op": "time", "key": "missing"},
        {"op": "drop"},
        {"op": "quit"},
        {"op": "never read"},
    ]
    out = io.StringIO()
    stdin = io.StringIO("".join(json.dumps(r) + "\n" for r in requests))
    assert bench.serve("keras", threads=1, stdin=stdin, stdout=out) == 0
    replies = [bench.read_worker_result(line) for line in out.getvalue().splitlines()]
    assert len(replies) == 6 and replies[0] == replies[1] == {}
    assert replies[3]["seconds"] > 0 and "KeyError" in replies[4]["error"]
    # the worker's logits are the model's (the same weights went through the timm file)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), model(x), rtol=1e-4, atol=1e-4)


def test_compare_reports(tmp_path):
    first = {"figures": [bench.Figure("x", "d", "A", "B", [1.0], [2.0]).as_dict()]}
    second = {"figures": [bench.Figure("x", "d", "A", "B", [1.1], [2.0]).as_dict()]}
    (tmp_path / "b.json").write_text(json.dumps(second))
    [(backend, name, _, da, db, dr)] = bench.compare_reports(first, str(tmp_path / "b.json"))
    assert (backend, name, db) == ("", "x", 0.0)
    assert da == pytest.approx(0.1) and dr == pytest.approx(0.1)


def test_pool_figures_takes_the_median_over_every_process_pair():
    run_1 = [bench.Figure("f", "d", "A", "B", [1.1, 1.2], [1.0, 1.0], calls=4)]
    run_2 = [bench.Figure("f", "d", "A", "B", [2.0, 3.0, 2.2], [2.0, 2.0, 2.0], calls=6)]
    run_3 = [bench.Figure("f", "d", "A", "B", [0.9], [1.0], calls=5)]
    [pooled] = bench.pool_figures([run_1, run_2, run_3])
    ratios = np.array([1.1, 1.2, 1.0, 1.5, 1.1, 0.9])
    assert pooled.a == [1.1, 1.2, 2.0, 3.0, 2.2, 0.9] and len(pooled.b) == 6
    assert pooled.ratio == pytest.approx(np.median(ratios)) and pooled.calls == 5
    assert run_1[0].a == [1.1, 1.2] and run_1[0].calls == 4  # the inputs are left as they were


def test_jax_figures_spread_each_figures_pairs_over_fresh_processes(monkeypatch):
    """`_jax_figures`: N layer children, then M model children, each told its share; pooled."""
    calls = []

    def fake_worker(*args, env, timeout, check):
        calls.append(args)
        share = args[args.index("--share") + 1]
        layer = args[args.index("--part") + 1] == "layer"
        name, repeats = ("se_layer_vs_floor", 7) if layer else ("train_step", 5)
        n = -(-repeats // share)
        ratio = 2.0 if layer else 1.0 + len(calls) / 10  # the model children differ
        rows = [bench.Figure(name, "d", "A", "B", [ratio] * n, [1.0] * n)]
        out = bench.WORKER_RESULT_PREFIX + json.dumps([vars(f) for f in rows])
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    monkeypatch.setattr(bench, "_run_worker", fake_worker)
    monkeypatch.setitem(bench.SETTINGS["quick"], "jax_processes", dict(layer=3, models=2))
    figures, allocator = bench._jax_figures(quick=True, log=lambda message: None)
    assert [c[:3] for c in calls] == [("figures", "quick", "--part")] * 5
    assert [c[3:] for c in calls] == [("layer", "--share", 3)] * 3 + [("models", "--share", 2)] * 2
    assert [f["name"] for f in figures] == ["se_layer_vs_floor", "train_step"]
    assert figures[0]["repetitions"] == 9 and figures[0]["ratio"] == 2.0 and allocator
    assert figures[0]["process_ratios"] == [2.0, 2.0, 2.0]
    assert figures[1]["process_ratios"] == [1.4, 1.5] and figures[1]["repetitions"] == 6
    assert figures[1]["ratio"] == pytest.approx(1.45)  # the median over both children's pairs

    def failing_worker(*args, env, timeout, check):
        return subprocess.CompletedProcess(args, 1, stdout="", stderr="Traceback\nBoom: it broke\n")

    monkeypatch.setattr(bench, "_run_worker", failing_worker)
    logged = []
    assert bench._jax_figures(quick=True, log=logged.append)[0] == []
    assert logged[-1] == "JAX figures failed: Boom: it broke"


def test_write_report_keeps_sections_apart(tmp_path):
    markdown = tmp_path / "B.md"
    figure = bench.Figure("peer_inference", "d", "A", "B", [1.0], [2.0]).as_dict()
    machine = bench.machine_info()
    main = {"machine": machine, "mode": "quick", "groups": ["layer"], "figures": [figure]}
    peer = dict(main, groups=["peer"], peer={"versions": {"torch": "x"}, "logit_diff": {}})
    bench.write_report(main, markdown=str(markdown), section=bench.report_section(main))
    bench.write_report(peer, markdown=str(markdown), section=bench.report_section(peer))
    text = markdown.read_text()
    assert bench.report_section(peer) == "peer" and bench.report_section(main) == ""
    assert text.count("<!-- bench:begin -->") == 1 and text.count("<!-- bench-peer:begin -->") == 1
    assert "Peer: torch x" in text.split("<!-- bench-peer:begin -->")[1]


# --------------------------------------------------------------------------- child processes
@pytest.mark.bench
@pytest.mark.integration
def test_worker_train_memory_samples_the_training_steps():
    """`bench_memory`'s child program, run in this process on a small model."""
    from keras_se import _bench_worker

    info = _bench_worker.train_memory("se_resnet18", 32, 2, classes=3)
    assert set(info) == {"base_mib", "peak_mib"}
    assert 0 < info["base_mib"] <= info["peak_mib"]


def test_worker_result_line_is_found_among_other_output():
    stdout = 'I0000 tensorflow start-up\n{"not": "it"}\nJSON[{"name": "x"}]\nbye\n'
    assert bench.read_worker_result(stdout) == [{"name": "x"}]
    with pytest.raises(ValueError, match="No JSON result line"):
        bench.read_worker_result("nothing here\n")


@pytest.mark.bench
@pytest.mark.integration
def test_worker_runs_as_a_module_in_a_child_process():
    """What `bench_memory` runs: ``python -m keras_se._bench_worker memory ...``."""
    result = bench._run_worker("memory", "se_resnet18", 32, 2, timeout=300)
    info = bench.read_worker_result(result.stdout)
    assert 0 < info["base_mib"] <= info["peak_mib"]
    with pytest.raises(subprocess.CalledProcessError):
        bench._run_worker("figures", "medium", timeout=300)


@pytest.mark.bench
@pytest.mark.integration
def test_jax_child_returns_its_share_of_the_repetitions():
    """One of `_jax_figures`' children, for real: JAX, ``--share``, raw pairs of every figure."""
    pytest.importorskip("jax")
    env, _ = bench.jax_child_env()
    result = bench._run_worker("figures", "quick", "--share", 2, env=env, timeout=600)
    figures = [bench.Figure(**f) for f in bench.read_worker_result(result.stdout)]
    names = [f.name for f in figures]
    assert names[:2] == ["se_layer_vs_floor", "se_layer_vs_naive"] and "train_step" in names
    quick = bench.SETTINGS["quick"]
    assert all(f.backend == "jax" and len(f.a) == len(f.b) and f.calls >= 1 for f in figures)
    assert len(figures[0].a) == -(-quick["layer"]["repeats"] // 2)  # ceil(6 / 2)
    train = figures[names.index("train_step")]
    assert len(train.a) == -(-quick["slow_repeats"] // 2)
    assert all(min(f.a) > 0 and min(f.b) > 0 for f in figures)


@pytest.mark.bench
@pytest.mark.integration
def test_device_path_runs_under_jax_without_tensorflow_figures(tmp_path):
    """What scripts/bench_gpu.sh runs (KERAS_BACKEND=jax), here on the CPU at tiny sizes."""
    import os
    import sys

    out = tmp_path / "gpu.json"
    blocker = tmp_path / "site" / "tensorflow"  # a machine without TensorFlow: importing it fails
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no TensorFlow on this machine')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=path,
        KERAS_SE_PEER_PYTHON="",
    )
    result = subprocess.run(
        [sys.executable, "-m", "keras_se_core.cli", "bench", "--device", "gpu", "--quick"]
        + ["--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["machine"]["backend"] == "jax"
    assert {f["backend"] for f in report["figures"]} == {"jax"}


def _peer_python_or_skip():
    try:
        return bench.find_peer_python()
    except UsageError as err:
        pytest.skip(f"no Python with torch and timm (set KERAS_SE_PEER_PYTHON): {err}")


@pytest.mark.bench
@pytest.mark.torch
@pytest.mark.integration
def test_peer_timm_quick(capsys, tmp_path):
    """``keras-se bench --peer timm --quick``: two live workers, the same weights, every row."""
    _peer_python_or_skip()
    out = tmp_path / "peer.json"
    result = run_main(capsys, "bench", "--peer", "timm", "--quick", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["groups"] == ["peer"] and report["peer"]["threads"] >= 1
    assert {"torch", "timm", "keras"} <= set(report["peer"]["versions"])
    assert report["peer"]["logit_diff"]["se_resnet50/float32"]["nchw"] < bench.PEER_TOLERANCE
    names = [f["name"] for f in report["figures"]]
    for mode in ("inference", "train_step"):
        for suffix in ("", "_bfloat16"):
            for layout in ("", "_nchw", "_channels_last"):
                assert f"peer_{mode}{suffix}{layout}" in names
    goals = {f["name"]: f["goal"] for f in report["figures"]}
    assert goals["peer_inference"] == goals["peer_train_step"] == "<= 0.95"


@pytest.mark.bench
@pytest.mark.integration
def test_training_group_quick():
    """The training-loop figures (`keras_se.bench_training`, one tiny call each) in their child process."""
    report = bench.run_benchmarks(quick=True, only="training", verbose=0)
    names = [f["name"] for f in report["figures"]]
    assert names == [
        "loop_vs_fit",
        "bf16_vs_fp32",
        "read_volume_2",
        "read_volume_2_unsharded",
        "excitation_log_overhead",
    ]
    goals = {f["name"]: f["goal"] for f in report["figures"]}
    assert goals["loop_vs_fit"] == "<= 1.02" and goals["read_volume_2"] == "<= 1.05"
    assert goals["bf16_vs_fp32"] is None and goals["read_volume_2_unsharded"] is None
    assert {row["workers"] for row in report["read_volume"]} == {1, 2}
    assert all(f["backend"] == "tensorflow" and f["ratio"] > 0 for f in report["figures"])


# --------------------------------------------------------------------------- bf16: export and the limit
def test_agreement_counts_top1_top5_and_the_largest_difference():
    reference = np.array([[0.7, 0.1, 0.1, 0.05, 0.03, 0.02], [0.3, 0.31, 0.2, 0.1, 0.05, 0.04]])
    other = reference.copy()
    other[1, :2] = [0.32, 0.29]  # the near-tie swaps its top class; top-5 sets unchanged
    result = bench.agreement(reference, other)
    assert result["images"] == 2 and result["top1_agreement"] == 0.5
    assert result["top5_overlap"] == 1.0
    assert result["max_abs_diff"] == pytest.approx(0.02)
    other[0] = [0.02, 0.1, 0.1, 0.05, 0.03, 0.7]  # the last class enters image 0's top 5
    assert bench.agreement(reference, other)["top5_overlap"] == pytest.approx((4 / 5 + 1) / 2)


def test_parse_onednn_verbose_sums_each_phases_kernels():
    mark = bench.ONEDNN_MARK
    fields = "src_bf16::blocked:acdb::f0 wei_bf16:a:blocked:AcdB64a2b::f0 dst_f32::blocked:acdb::f0"
    amx = f"onednn_verbose,v1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx,forward_inference,{fields},,alg:convolution_direct,mb8_ic64oc64_ih56oh56kh3,"
    text = "\n".join(
        [
            "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AMX",
            amx + "9.5",  # before the first mark: the untimed call, not counted
            mark + "forward",
            amx + "1.25",
            amx + "0.75",
            "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd::f0 dst_bf16::blocked:acdb::f0,,,8x64x56x56,0.5",
            mark + "end",
            "I0000 tensorflow noise",
            mark + "train_step",
            mark + "end",
        ]
    )
    result = bench.parse_onednn_verbose(text)
    assert result["isa"] == "Intel AVX-512 with AMX"
    assert result["forward"] == {
        "convolution brg_conv_fwd:avx512_core_amx (bf16/f32)": {"count": 2, "ms": 2.0},
        "reorder jit:uni (bf16/f32)": {"count": 1, "ms": 0.5},
    }
    assert result["train_step"] == {}
    lines = bench.bf16_markdown(
        {"model": "m", "size": 8, "macs": 2e9, "onednn": result, "loadavg": [["x", 1.0, 2.0]]}
    )
    assert "| forward | convolution brg_conv_fwd:avx512_core_amx (bf16/f32) | 2 | 2.0 |" in lines
    assert "| train_step | (no oneDNN primitive) | 0 | 0 |" in lines
    assert lines[-1] == "Load average (1 min) before→after each measurement: x 1.0→2.0."


@pytest.mark.bench
@pytest.mark.integration
def test_bf16_group_quick(tmp_path):
    """``keras-se bench --only bf16 --quick``: every row, the agreement, the oneDNN child."""
    report = bench.run_benchmarks(quick=True, only="bf16", verbose=0)
    settings = bench.SETTINGS["quick"]["bf16"]
    assert report["groups"] == ["bf16"] and bench.report_section(report) == "bf16"
    names = [f["name"] for f in report["figures"]]
    assert names == [f"bf16_export_speedup_b{b}" for b in settings["batches"]] + [
        "serving_overhead",
        "peak_matmul",
        "peak_conv3x3",
        "share_of_peak_inference_float32",
        "share_of_peak_train_step_float32",
        "share_of_peak_inference_bfloat16",
        "share_of_peak_train_step_bfloat16",
    ]
    by_name = {f["name"]: f for f in report["figures"]}
    assert by_name["serving_overhead"]["goal"] == "<= 1.03"
    assert bench.GOALS["bf16_export_speedup_b64"] == (">=", 1.5)
    assert {by_name[n]["unit"] for n in names if n.startswith(("peak", "share"))} == {"GFLOP/s"}
    assert all(f["ratio"] > 0 and f["repetitions"] >= 2 for f in report["figures"])
    info = report["bf16"]
    assert info["macs"] > 0 and info["model"] == settings["model"]
    [agreement] = info["agreement"].values()
    assert agreement["images"] == settings["batches"][-1] and agreement["max_abs_diff"] < 0.05
    assert info["onednn"]["isa"] and {"forward", "train_step"} <= set(info["onednn"])
    assert [step for step, _, _ in info["loadavg"]][-1] == "onednn"
    text = bench.format_markdown(report, command="keras-se bench --only bf16 --quick")
    assert "oneDNN (ONEDNN_VERBOSE=1) ISA:" in text and "Load average" in text
    assert "Agreement of the bfloat16 with the float32 SavedModel" in text
