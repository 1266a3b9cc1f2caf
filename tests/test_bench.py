"""The benchmark harness's structure (never its timings: those belong in BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess

import pytest

from keras_se import bench
from tests.conftest import run_main


def test_interleave_alternates_and_counts():
    calls = []
    a, b = bench.interleave(
        lambda: calls.append("a"), lambda: calls.append("b"), repeats=4, warmup=1, inner=2
    )
    assert len(a) == len(b) == 4 and all(t >= 0 for t in a + b)
    # warm-up a,b; then a a b b / b b a a / ...: each side runs first every other repetition.
    assert (
        calls[:2] == ["a", "b"]
        and calls[2:6] == ["a", "a", "b", "b"]
        and calls[6:10] == ["b", "b", "a", "a"]
    )


def test_figure_ratio_and_goal():
    figure = bench.Figure("inference_compiled", "d", "A", "B", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert figure.ratio == 2.0 and figure.passed() is False
    d = figure.as_dict()
    assert (d["ratio_min"], d["ratio_max"], d["goal"], d["a_median"]) == (1.0, 3.0, "<= 1.02", 2.0)
    assert bench.Figure("input_pipeline", "d", "A", "B", [10.0], [1.0]).passed() is True


def test_quick_cli_report_structure(tmp_path, capsys):
    out, markdown = tmp_path / "report.json", tmp_path / "BENCH.md"
    markdown.write_text(
        "# Benchmarks\n\nintro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nnotes\n"
    )
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
    for f in report["figures"]:
        assert (
            f["a_min"] <= f["a_median"] <= f["a_max"] and f["b_min"] <= f["b_median"] <= f["b_max"]
        )
        assert f["ratio"] > 0
        if f["name"].endswith("_textbook"):  # informational: what the fused SE tail saves
            assert f["goal"] is None and f["passed"] is None
        else:
            assert isinstance(f["passed"], bool) and f["goal"]
    text = markdown.read_text()
    assert "old" not in text and "intro" in text and "notes" in text
    assert text.count("| tensorflow |") == len(report["figures"])


@pytest.mark.parametrize("args, needle", [(["--out"], "--out"), (["--bogus"], "--bogus")])
def test_bench_cli_errors(capsys, args, needle):
    result = run_main(capsys, "bench", *args)
    assert result.returncode == 2 and needle in result.stderr


def test_device_path_runs_on_whatever_device_is_there(capsys, tmp_path):
    """`--device gpu` (mixed precision + XLA) runs end to end; here on the CPU, at tiny sizes."""
    out = tmp_path / "gpu.json"
    result = run_main(capsys, "bench", "--device", "gpu", "--quick", "--quiet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["mode"] == "quick-gpu"
    assert [f["name"] for f in report["figures"]] == ["device_inference", "device_train_step"]
    assert all("images/s" in f["description"] and f["ratio"] > 0 for f in report["figures"])


# --------------------------------------------------------------------------- child processes
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


@pytest.mark.integration
def test_worker_runs_as_a_module_in_a_child_process():
    """What `bench_memory` runs: ``python -m keras_se._bench_worker memory ...``."""
    result = bench._run_worker("memory", "se_resnet18", 32, 2, timeout=300)
    info = bench.read_worker_result(result.stdout)
    assert 0 < info["base_mib"] <= info["peak_mib"]
    with pytest.raises(subprocess.CalledProcessError):
        bench._run_worker("figures", "medium", timeout=300)
