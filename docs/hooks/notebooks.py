"""MkDocs hook: the notebooks of notebooks/ become pages of the site.

The notebooks live outside ``docs/`` (the test suite executes them there,
tests/test_notebooks.py). This hook adds each one to the site's files from a copy in a
temporary directory, so that mkdocs-jupyter executes it there: the runs, PNG and SVG files a
notebook writes into its working directory never land in the checkout. It runs before
mkdocs-jupyter's own ``on_files`` (priority 100), which then renders the copies.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"

_tmp: tempfile.TemporaryDirectory | None = None


@event_priority(100)
def on_files(files, config):
    global _tmp
    if _tmp is None:
        _tmp = tempfile.TemporaryDirectory(prefix="keras_se_docs_")
    src_dir = pathlib.Path(_tmp.name)
    (src_dir / "notebooks").mkdir(exist_ok=True)
    # The kernel imports this checkout's keras_se (installed or not), quietly, and draws with Agg;
    # a kernel that imports TensorFlow on 2 busy cores can take over nbclient's 60 s to start.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    config_dir = src_dir / "jupyter_config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "jupyter_nbconvert_config.json").write_text(
        '{"ExecutePreprocessor": {"startup_timeout": 300, "timeout": 600}}'
    )
    os.environ["JUPYTER_CONFIG_DIR"] = str(config_dir)
    # TensorFlow's C++ start-up lines (absl, CUDA stubs) go to the build's stderr, not onto the
    # pages: the kernel forwards only Python's own output.
    profile = src_dir / "ipython" / "profile_default"
    profile.mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.json").write_text(
        '{"IPKernelApp": {"capture_fd_output": false}}'
    )
    os.environ["IPYTHONDIR"] = str(profile.parent)
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        shutil.copy2(path, src_dir / "notebooks" / path.name)
        files.append(
            File(
                f"notebooks/{path.name}",
                str(src_dir),
                config["site_dir"],
                config["use_directory_urls"],
            )
        )
    return files


def on_serve(server, config, builder):
    # `mkdocs serve` rebuilds when a notebook changes
    server.watch(str(NOTEBOOKS))
    return server
