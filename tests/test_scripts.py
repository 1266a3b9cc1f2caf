"""scripts/: thin runnable scripts over the library (each has --help and works)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests import prefork
from tests.conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(n for n in os.listdir(os.path.join(ROOT, "scripts")) if n.endswith(".py"))


def _load(name):
    spec = importlib.util.spec_from_file_location(name[:-3], os.path.join(ROOT, "scripts", name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_help(name, capsys):
    with pytest.raises(SystemExit) as stop:
        _load(name).main(["--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out


#: Every file in scripts/ (not only the Python ones), so a new script is covered.
ALL_SCRIPTS = sorted(
    n for n in os.listdir(os.path.join(ROOT, "scripts")) if not n.startswith((".", "__"))
)
#: Runs a Python script as ``__main__`` and reports whether it imported TensorFlow/Keras.
_IMPORTS_PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
code = "none (it did not exit)"
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    code = stop.code or 0
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
sys.stderr.write(f"PROBE code={code} heavy={heavy}\\n")
"""


@pytest.mark.parametrize("name", ALL_SCRIPTS)
def test_every_script_is_executable_and_answers_help(name, tmp_path):
    """Run as a program (shebang + executable bit): its own usage, exit 0, nothing written."""
    path = os.path.join(ROOT, "scripts", name)
    assert os.access(path, os.X_OK), (
        f"scripts/{name} is not executable (chmod +x, git update-index --chmod=+x)"
    )
    with open(path) as f:
        assert f.readline().startswith("#!"), f"scripts/{name} has no shebang"
    # `#!/usr/bin/env python3` must find this interpreter.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(
        [path, "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    first = result.stdout.lstrip().splitlines()[0]
    assert first.startswith("usage:") and os.path.splitext(name)[0] in first, result.stdout
    assert "Traceback" not in result.stderr and not os.listdir(tmp_path)  # e.g. no mkdir --help


@pytest.mark.parametrize("name", [n for n in ALL_SCRIPTS if n.endswith(".py")])
def test_script_help_starts_no_framework(name):
    result = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, os.path.join(ROOT, "scripts", name)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert "PROBE code=0 heavy=[]" in result.stderr, result.stderr[-2000:]


def test_serve_prints_the_tensorflow_serving_command(tmp_path, capsys):
    serve = _load("serve_tf_serving.py")
    with pytest.raises(SystemExit, match="models.config does not exist"):
        serve.main([str(tmp_path)])
    (tmp_path / "models.config").write_text("model_config_list {}")
    assert serve.main([str(tmp_path), "--rest-port", "9001"]) == 0
    command = capsys.readouterr().out.split()
    assert (
        command[:2] == ["docker", "run"]
        and "9001:8501" in command
        and "tensorflow/serving" in command
    )
    assert f"type=bind,source={tmp_path},target=/models" in command
    assert "--model_config_file=/models/models.config" in command


def test_launcher_builds_one_tf_config_per_worker(capsys):
    launcher = _load("launch_multiworker.py")
    assert (
        launcher.main(["--hosts", "a:1,b:2", "--index", "1", "--dry-run", "--", "--epochs", "1"])
        == 0
    )
    line = capsys.readouterr().out.strip()
    config = json.loads(line.split("'")[1])
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert line.endswith("train --strategy multi-worker --epochs 1")
    with pytest.raises(SystemExit, match="--index must be in"):
        launcher.main(["--hosts", "a:1", "--index", "3", "--dry-run"])


@pytest.mark.integration
def test_launcher_runs_two_local_workers(tmp_path, monkeypatch):
    """The launcher's `main` (as `python scripts/launch_multiworker.py` runs it) starts two
    workers with their TF_CONFIG and waits for them; they train over loopback. The workers
    are forked from the suite's preloaded interpreter (tests/prefork.py: the launcher hands
    `subprocess.Popen` a ``python -m keras_se_core.cli`` command; two fresh TensorFlow
    imports cost ~12 s of CPU)."""
    import functools
    import types

    started = []

    def popen(command, **kwargs):  # the launcher's `p.wait()` gives up after 600 s
        process = prefork.Popen(command, **kwargs)
        process.wait = functools.partial(process.wait, timeout=600)
        started.append(process)
        return process

    launcher = _load("launch_multiworker.py")
    monkeypatch.setattr(launcher, "subprocess", types.SimpleNamespace(Popen=popen))
    out = tmp_path / "run"
    args = ["--model", "se_resnet20_cifar"]  # not SE-ResNet-18: the launcher is under test
    args += ["--image-size", "16", "--batch-size", "16", "--steps-per-epoch", "2"]
    args += ["--validation-steps", "1", "--epochs", "1", "--quiet", "--out", str(out)]
    try:
        assert launcher.main(["--local", "2", "--", *args]) == 0
    finally:
        for process in started:
            process.kill()  # only one still running (a timeout) is signalled
    assert len(started) == 2
    summary = json.load(open(out / "summary.json"))
    assert summary["strategy"] == "multi-worker" and summary["replicas"] == 2
    assert free_port()  # the workers released their ports


def test_ablation_table_of_a_finished_search(tmp_path):
    rows = [
        {"hyperparameters": {"se_ratio": 16}, "params": 11_263_042, "best_val_accuracy": 0.9583},
        {"hyperparameters": {"se_ratio": 2}, "params": 11_873_162, "best_val_accuracy": 0.9722},
        {"hyperparameters": {"se_ratio": 32}, "params": None, "best_val_accuracy": None},
    ]
    (tmp_path / "results.json").write_text(json.dumps(rows))
    table = _load("ratio_ablation.py").format_table(str(tmp_path / "results.json")).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["2", "16", "32"]
    assert table[1].split() == ["2", "11,873,162", "0.9722"] and table[3].split()[-1] == "n/a"
