"""The processes of `keras_se.bench`: fresh children, their environments and their result lines.

Some figures run in a fresh process (``python -m keras_se.bench.worker COMMAND ...``), where
nothing else has touched the heap or where another Keras backend is active; each child prints
one ``JSON<result>`` line on stdout (`read_worker_result`). The JAX child preloads tcmalloc
(`jax_child_env`): XLA's CPU runtime otherwise faults its buffers in afresh on every call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

#: The module every child process runs (``python -m keras_se.bench.worker COMMAND ...``).
WORKER_MODULE = "keras_se.bench.worker"
#: Prefix of the one result line a `keras_se.bench.worker` command prints.
WORKER_RESULT_PREFIX = "JSON"


def read_worker_result(stdout):
    """The result a worker printed (its ``JSON...`` line), from the child's stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(WORKER_RESULT_PREFIX):
            return json.loads(line[len(WORKER_RESULT_PREFIX) :])
    raise ValueError(
        f"No {WORKER_RESULT_PREFIX} result line in the worker's output: {stdout[-500:]!r}"
    )


def run_worker(*args, env=None, timeout, check=True):
    """Runs ``python -m keras_se.bench.worker ARGS`` (a fresh process); its CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", WORKER_MODULE, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=check,
    )


def tensorflow_env():
    """This process's environment with ``KERAS_BACKEND=tensorflow``, for a TensorFlow child."""
    return dict(os.environ, KERAS_BACKEND="tensorflow")


#: gperftools' tcmalloc (Debian/Ubuntu: ``apt install libtcmalloc-minimal4``), which the JAX
#: child preloads when it is installed. Why (`getrusage` minor faults per call, batch 8,
#: 224x224, 2 idle cores): XLA's CPU runtime allocates its buffers afresh on every call and
#: glibc's malloc hands large blocks back to the kernel, so every call faults its memory in
#: again: 38,000 page faults per compiled SE-ResNet-50 forward, 209,000 (9.5 s of system
#: time over 20 steps) per training step, 25,000 per call of the SE layer on 16x56x56x256.
#: glibc's tunables (MALLOC_MMAP_THRESHOLD_, MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_)
#: leave the count unchanged. tcmalloc with ``TCMALLOC_RELEASE_RATE=0`` keeps freed pages:
#: 7,100 / 31,700 / 4 faults, the SE layer 4x faster (11 vs 47 ms) and the forward 15-25 %.
#: jemalloc with its default decay faults more than glibc (85,000 per forward).
TCMALLOC = "libtcmalloc_minimal.so.4"


def find_tcmalloc():
    """The path of tcmalloc's shared library, or None where it is not installed."""
    import ctypes.util
    import glob

    for pattern in (
        f"/usr/lib/*/{TCMALLOC}",
        f"/usr/lib64/{TCMALLOC}",
        f"/usr/local/lib/{TCMALLOC}",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return ctypes.util.find_library("tcmalloc_minimal")


def jax_child_env():
    """The environment of the JAX child: ``KERAS_BACKEND=jax``, CPU, and tcmalloc preloaded.

    Returns:
        ``(env, allocator)``: ``allocator`` says what the child allocates with, for the report.
        An ``LD_PRELOAD`` already set (even empty) is kept as it is: the way to run the JAX
        figures on glibc's malloc, or on another allocator.
    """
    env = dict(
        os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu")
    )
    if "LD_PRELOAD" in os.environ:
        return env, f"LD_PRELOAD={os.environ['LD_PRELOAD']!r} (as set)"
    library = find_tcmalloc()
    if library is None:
        return env, "glibc malloc (tcmalloc not found: apt install libtcmalloc-minimal4)"
    env.update(LD_PRELOAD=library, TCMALLOC_RELEASE_RATE="0")
    return env, f"tcmalloc ({library}, TCMALLOC_RELEASE_RATE=0)"


def loadavg():
    """The 1-minute load average (``/proc/loadavg``), or None where there is none."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
