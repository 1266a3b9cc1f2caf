"""notebooks/*.ipynb run top to bottom (nbclient, a fresh kernel each, in a temp directory)."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from tests import prefork

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Seconds per cell; each notebook runs in well under 3 minutes on a CPU.
CELL_TIMEOUT = 300
#: The suite runs each notebook's code on fewer training steps (text substitutions in its code
#: cells, each of which must match exactly once, so an edited notebook fails here instead of
#: running full size): every cell, API call and figure still runs. The docs build
#: (``execute: true`` in mkdocs.yml) runs them as written, for the numbers on their pages.
#: SE-ResNet-18 becomes CIFAR SE-ResNet-20 (the same kind of figures from 9 SE blocks instead
#: of 8, a third of the notebook's time) and the search evaluates the first batch only.
SHRINK = {
    "02_excitation_by_depth": [
        ("    epochs=2,\n", "    epochs=1,\n"),
        ("steps_per_epoch=15,", "steps_per_epoch=3,"),
        ('model="se_resnet18",', 'model="se_resnet20_cifar",'),
        ('models.get("se_resnet18",', 'models.get("se_resnet20_cifar",'),
    ],
    "03_ratio_search": [
        ("steps_per_epoch=5,", "steps_per_epoch=2, validation_steps=1,"),
        ('model="se_resnet18",', 'model="se_resnet20_cifar",'),
    ],
    "04_excitations_during_training": [
        (
            "dict(QUICKSTART, epochs=3, steps_per_epoch=12)",
            "dict(QUICKSTART, epochs=2, steps_per_epoch=3)",
        )
    ],
}


def _shrink(notebook, name):
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for old, new in SHRINK.get(name, []):
        hits = [cell for cell in code if old in cell.source]
        assert len(hits) == 1 and hits[0].source.count(old) == 1, (name, old)
        hits[0].source = hits[0].source.replace(old, new)


def test_the_four_notebooks_exist():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


def _forked_kernel(cmd, stdin=None, stdout=None, stderr=None, env=None, cwd=None, **kwargs):
    """jupyter_client's `launch_kernel` (its own session, ``JPY_PARENT_PID``), the kernel
    forked from the suite's preloaded interpreter (tests/prefork.py: TensorFlow is imported
    once, not once per notebook); its stdin, a pipe nothing writes to there, is /dev/null."""
    env = dict(os.environ if env is None else env, JPY_PARENT_PID=str(os.getpid()))
    return prefork.Popen(
        cmd,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from jupyter_client.provisioning import local_provisioner

    monkeypatch.setattr(local_provisioner, "launch_kernel", _forked_kernel)

    # The kernel imports this checkout's keras_se, installed or not; quiet TF logging.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    _shrink(notebook, path.stem)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        # a kernel that imports TensorFlow on 2 busy cores took over nbclient's default 60 s to start
        startup_timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, "the notebook displayed no figure"
    assert sorted(p.suffix for p in tmp_path.glob("*.png")) and list(tmp_path.glob("*.svg"))
