"""tests/prefork.py: test processes forked from the preloaded interpreter behave like
`subprocess` ones (exit status, signals, streams, cwd, environment, ``__main__``), and commands
it cannot run faithfully go to `subprocess`."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from tests import prefork

PROBE = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    print(json.dumps({
        "argv": sys.argv, "cwd": os.getcwd(), "pid": os.getpid(), "name": __name__,
        "path0": sys.path[0], "env": os.environ.get("PREFORK_PROBE"),
        "tf": "tensorflow" in sys.modules, "draw": float(np.random.random()),
    }))
    print("to stderr", file=sys.stderr)
    sys.exit(int(os.environ.get("PREFORK_EXIT", "0")))
    """
)


def _probe(tmp_path, **env):
    import json

    result = prefork.run(
        [sys.executable, "-c", PROBE, "a", "b"],
        cwd=tmp_path,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, json.loads(result.stdout)


@pytest.mark.integration
def test_a_forked_command_looks_like_a_new_process(tmp_path):
    result, seen = _probe(tmp_path, PREFORK_PROBE="x", PREFORK_EXIT="7")
    assert result.returncode == 7 and result.stderr == "to stderr\n"
    assert seen["argv"] == ["-c", "a", "b"] and seen["name"] == "__main__"
    assert seen["cwd"] == str(tmp_path) and seen["path0"] == "" and seen["env"] == "x"
    assert seen["pid"] != os.getpid()
    assert seen["tf"]  # preloaded: the point of it
    _, again = _probe(tmp_path)
    assert again["draw"] != seen["draw"]  # NumPy reseeded per child, as in a new process
    assert again["pid"] != seen["pid"]

    # -m runs the module as __main__ with the cwd first on sys.path; an exception is a traceback
    # and status 1.
    (tmp_path / "probe_mod.py").write_text("import sys\nprint(__name__, sys.path[0])\n1 / 0\n")
    mod = prefork.run(
        [sys.executable, "-m", "probe_mod"], cwd=tmp_path, capture_output=True, text=True
    )
    assert mod.returncode == 1 and mod.stdout == f"__main__ {tmp_path}\n"
    assert "ZeroDivisionError" in mod.stderr and "Traceback" in mod.stderr


@pytest.mark.integration
def test_signals_reach_the_child_and_its_status_is_minus_the_signal(tmp_path):
    code = "import signal, sys, time\nprint('up', flush=True)\ntime.sleep(120)\n"
    proc = prefork.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert isinstance(proc, prefork.ForkedProcess)
    assert proc.stdout.readline() == "up\n"
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)  # its own group before the reply
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM

    # SIGTERM handlers the program installs are its own (the preloaded interpreter installs none).
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
        "print('up', flush=True)\ntime.sleep(120)\n"
    )
    proc = prefork.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=dict(os.environ), text=True
    )
    assert proc.stdout.readline() == "up\n"
    proc.terminate()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3 and out == ""


@pytest.mark.integration
def test_unbuffered_output_streams_as_with_python_dash_u(tmp_path):
    code = "import time\nprint('first')\ntime.sleep(120)\n"
    proc = prefork.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        text=True,
    )
    try:  # on the pipe while the child still runs, not held in a buffer until it exits
        assert select.select([proc.stdout], [], [], 60)[0], "nothing written within 60 s"
        assert proc.stdout.readline() == "first\n"
    finally:
        proc.kill()
        proc.wait(timeout=60)


@pytest.mark.integration
def test_what_a_fork_cannot_reproduce_runs_in_a_real_interpreter(monkeypatch):
    flag = prefork.Popen([sys.executable, "-I", "-c", "pass"])
    backend = prefork.Popen(
        [sys.executable, "-c", "pass"], env=dict(os.environ, KERAS_BACKEND="jax")
    )
    other = prefork.Popen(["true"])
    stdin = prefork.Popen([sys.executable, "-c", "pass"], stdin=subprocess.PIPE)
    for proc in (flag, backend, other, stdin):
        assert isinstance(proc, subprocess.Popen)
        proc.communicate(timeout=120)
        assert proc.returncode == 0
    # A command with the matching environment forks; KERAS_SE_NO_PREFORK=1 turns that off.
    forked = prefork.Popen([sys.executable, "-c", "pass"])
    assert isinstance(forked, prefork.ForkedProcess) and forked.wait(timeout=120) == 0
    monkeypatch.setenv(prefork.DISABLE_ENV, "1")
    real = prefork.Popen([sys.executable, "-c", "pass"])
    assert isinstance(real, subprocess.Popen) and real.wait(timeout=120) == 0
    # A preloaded interpreter that failed to start: the commands still run, in subprocesses.
    monkeypatch.delenv(prefork.DISABLE_ENV)
    monkeypatch.setattr(prefork._Server, "failed", RuntimeError("did not start"))
    real = prefork.Popen([sys.executable, "-c", "pass"])
    assert isinstance(real, subprocess.Popen) and real.wait(timeout=120) == 0
