"""keras_se.bench.peer: keras_se vs timm's rows, the peer Python's checks, the live workers."""

from __future__ import annotations

import json
import subprocess

import pytest

from keras_se.bench import peer, suites_models
from keras_se_core.errors import UsageError
from tests.conftest import run_main


def test_peer_figures_compare_with_the_faster_layout():
    times = [
        [1.0, 1.0],
        [2.0, 2.0],
        [1.25, 1.0],
    ]  # keras_se, timm NCHW, timm channels_last
    figures = peer._peer_figures(
        "se_resnet50",
        "float32",
        False,
        times,
        batch=2,
        size=64,
        threads=2,
        timm_name="t",
    )
    by_name = {f.name: f for f in figures}
    assert set(by_name) == {
        "peer_inference",
        "peer_inference_nchw",
        "peer_inference_channels_last",
    }
    assert by_name["peer_inference"].ratios == [0.8, 1.0] and "channels_last" in (
        by_name["peer_inference"].b_label
    )
    assert by_name["peer_inference"].goal() == ("<=", 0.95)
    assert (
        by_name["peer_inference_nchw"].ratio == 0.5
        and by_name["peer_inference_nchw"].goal() is None
    )
    bf16 = peer._peer_figures(
        "se_resnet50",
        "bfloat16",
        True,
        times,
        batch=2,
        size=64,
        threads=2,
        timm_name="t",
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

    for module, name in (
        (peer, "bench_peer"),
        (suites_models, "bench_se_layer"),
        (suites_models, "bench_models"),
        (peer, "LiveWorker"),
    ):
        monkeypatch.setattr(module, name, no_benchmark)
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


def _peer_python_or_skip():
    try:
        return peer.find_peer_python()
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
    assert report["peer"]["logit_diff"]["se_resnet50/float32"]["nchw"] < peer.PEER_TOLERANCE
    names = [f["name"] for f in report["figures"]]
    for mode in ("inference", "train_step"):
        for suffix in ("", "_bfloat16"):
            for layout in ("", "_nchw", "_channels_last"):
                assert f"peer_{mode}{suffix}{layout}" in names
    goals = {f["name"]: f["goal"] for f in report["figures"]}
    assert goals["peer_inference"] == goals["peer_train_step"] == "<= 0.95"
