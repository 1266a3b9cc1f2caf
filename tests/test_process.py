"""keras_se.bench.process: the children's environments and their result lines."""

from __future__ import annotations

import subprocess

import pytest

from keras_se.bench import process


def test_jax_child_preloads_tcmalloc_unless_ld_preload_is_set(monkeypatch):
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(process, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    env, allocator = process.jax_child_env()
    assert env["KERAS_BACKEND"] == "jax" and env["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4"
    assert env["TCMALLOC_RELEASE_RATE"] == "0" and "tcmalloc" in allocator
    monkeypatch.setattr(process, "find_tcmalloc", lambda: None)
    env, allocator = process.jax_child_env()
    assert "LD_PRELOAD" not in env and allocator.startswith("glibc malloc")
    monkeypatch.setenv("LD_PRELOAD", "")  # set, even empty: the user's choice is kept
    monkeypatch.setattr(process, "find_tcmalloc", lambda: "/lib/libtcmalloc_minimal.so.4")
    env, allocator = process.jax_child_env()
    assert env["LD_PRELOAD"] == "" and "as set" in allocator


def test_find_tcmalloc_returns_a_library_path_or_none():
    found = process.find_tcmalloc()
    assert found is None or "tcmalloc" in found


@pytest.mark.slow
def test_worker_result_line_is_found_among_other_output():
    stdout = 'I0000 tensorflow start-up\n{"not": "it"}\nJSON[{"name": "x"}]\nbye\n'
    assert process.read_worker_result(stdout) == [{"name": "x"}]
    with pytest.raises(ValueError, match="No JSON result line"):
        process.read_worker_result("nothing here\n")


def test_run_worker_runs_the_worker_module(monkeypatch):
    """The command line of every child: this Python, ``-m keras_se.bench.worker``, the args."""
    seen = {}

    def fake_run(command, **kwargs):
        seen.update(command=command, **kwargs)
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    monkeypatch.setattr(process.subprocess, "run", fake_run)
    process.run_worker("memory", "se_resnet18", 32, 2, timeout=5)
    assert seen["command"][1:] == [
        "-m",
        "keras_se.bench.worker",
        "memory",
        "se_resnet18",
        "32",
        "2",
    ]
    assert seen["timeout"] == 5 and seen["check"] is True and seen["env"] is None
