"""keras_se.bench.suites: the groups, `run_benchmarks` and the JAX children (structure only)."""

from __future__ import annotations

import json
import subprocess

import pytest

from keras_se.bench import harness, process, suites
from keras_se_core.errors import UsageError
from tests.conftest import run_main


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.integration
def test_quick_cli_report_structure(tmp_path, capsys, monkeypatch):
    out, markdown = tmp_path / "report.json", tmp_path / "BENCH.md"
    markdown.write_text(
        "# Benchmarks\n\nintro\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nnotes\n"
    )
    # the training group runs in a child process: test_training_group_quick
    monkeypatch.setattr(suites, "_training_figures", lambda mode: ([], {"read_volume": []}))
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


def test_select_groups():
    assert (
        suites.select_groups() == list(suites.DEFAULT_GROUPS)
        and "peer" not in suites.DEFAULT_GROUPS
    )
    assert suites.select_groups(jax=False) == [g for g in suites.DEFAULT_GROUPS if g != "jax"]
    assert suites.select_groups(peer="timm") == ["peer"]  # --peer alone: that comparison only
    assert suites.select_groups("training, layer", peer="timm") == [
        "layer",
        "training",
        "peer",
    ]
    assert suites.select_groups(["jax"], jax=False) == []
    for only, peer in (("layer,bogus", None), (",", None), (None, "onnx")):
        with pytest.raises(UsageError, match="bogus|only|peer='onnx'"):
            suites.select_groups(only, peer=peer)


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
        rows = [harness.Figure(name, "d", "A", "B", [ratio] * n, [1.0] * n)]
        out = process.WORKER_RESULT_PREFIX + json.dumps([vars(f) for f in rows])
        return subprocess.CompletedProcess(args, 0, stdout=out, stderr="")

    monkeypatch.setattr(process, "run_worker", fake_worker)
    monkeypatch.setitem(suites.SETTINGS["quick"], "jax_processes", dict(layer=3, models=2))
    figures, allocator = suites._jax_figures(quick=True, log=lambda message: None)
    assert [c[:3] for c in calls] == [("figures", "quick", "--part")] * 5
    assert [c[3:] for c in calls] == [("layer", "--share", 3)] * 3 + [("models", "--share", 2)] * 2
    assert [f["name"] for f in figures] == ["se_layer_vs_floor", "train_step"]
    assert figures[0]["repetitions"] == 9 and figures[0]["ratio"] == 2.0 and allocator
    assert figures[0]["process_ratios"] == [2.0, 2.0, 2.0]
    assert figures[1]["process_ratios"] == [1.4, 1.5] and figures[1]["repetitions"] == 6
    assert figures[1]["ratio"] == pytest.approx(1.45)  # the median over both children's pairs

    def failing_worker(*args, env, timeout, check):
        return subprocess.CompletedProcess(args, 1, stdout="", stderr="Traceback\nBoom: it broke\n")

    monkeypatch.setattr(process, "run_worker", failing_worker)
    logged = []
    assert suites._jax_figures(quick=True, log=logged.append)[0] == []
    assert logged[-1] == "JAX figures failed: Boom: it broke"


@pytest.mark.bench
@pytest.mark.integration
def test_training_group_quick():
    """The training-loop figures (`keras_se.bench.suites_training`, one tiny call each) in their
    child process."""
    report = suites.run_benchmarks(quick=True, only="training", verbose=0)
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
