"""tf.distribute strategies for training: selection, cluster roles, logical CPU devices.

``auto`` picks multi-worker when ``TF_CONFIG`` names more than one worker, mirrored
when more than one GPU is visible, else one device. ``TF_CONFIG`` is read once here
(`tf_config`) and a malformed value is a `UsageError` naming it.

Before a multi-worker strategy starts, every task meets the others in a bounded
rendezvous (`wait_for_cluster`): TensorFlow's own start-up waits for missing peers for
an hour, holding the interpreter (Python signal handlers cannot run) and replacing the
SIGTERM handler, so a cluster with a worker that never starts could only be SIGKILLed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import time

import keras
import numpy as np
import tensorflow as tf

from keras_se_core import choices
from keras_se_core.errors import UsageError
from keras_se_core.validation import check_choice


def tf_config():
    """The parsed ``TF_CONFIG`` (``{}`` when unset); a `UsageError` if it is malformed."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"`TF_CONFIG` is not valid JSON ({err.msg}). Received: TF_CONFIG={text!r}"
        ) from None
    if not isinstance(config, dict):
        raise UsageError(f"`TF_CONFIG` must be a JSON object. Received: TF_CONFIG={text!r}")
    cluster, task = config.get("cluster", {}), config.get("task")
    if not isinstance(cluster, dict) or any(not isinstance(v, list) for v in cluster.values()):
        raise UsageError(
            f'`TF_CONFIG` needs "cluster": {{"worker": ["host:port", ...]}}. Received: TF_CONFIG={text!r}'
        )
    if cluster and not (
        isinstance(task, dict)
        and isinstance(task.get("type"), str)
        and isinstance(task.get("index"), int)
    ):
        raise UsageError(
            f'`TF_CONFIG` needs "task": {{"type": "worker", "index": N}}. Received: TF_CONFIG={text!r}'
        )
    if cluster and task["index"] >= len(cluster.get(task["type"], [])):
        raise UsageError(
            f"`TF_CONFIG` task {task['type']}:{task['index']} is not in the cluster. Received: TF_CONFIG={text!r}"
        )
    return config


def tf_config_workers():
    """Number of workers (and chief) named in ``TF_CONFIG`` (0 when unset)."""
    cluster = tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def split_cpu(count):
    """Splits the first CPU into ``count`` logical devices (before TF initialises them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as err:
        raise UsageError(
            "`cpu_devices` must be set before TensorFlow initialises its devices "
            f"(run it in a fresh process). Received: cpu_devices={count}"
        ) from err


def _cluster_tasks(config):
    """``[(task name, "host:port"), ...]`` of the chief and workers, the leader first."""
    cluster = config.get("cluster", {})
    return [
        (f"{job}:{index}", address)
        for job in ("chief", "worker")
        for index, address in enumerate(cluster.get(job, []))
    ]


def _split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


@contextlib.contextmanager
def _signals_raise(what):
    """SIGTERM and SIGINT raise a `UsageError` naming ``what`` (main thread only)."""

    def handler(signum, frame):
        raise UsageError(
            f"{signal.Signals(signum).name} while {what}; stopped before training started"
        )

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _send_line(conn, text):
    with contextlib.suppress(OSError):
        conn.sendall(text.encode() + b"\n")


def _lead_rendezvous(tasks, deadline, timeout):
    """The leader: accepts one connection per other task, then tells them all to go."""
    _, port = _split_address(tasks[0][1])
    try:
        server = socket.create_server(("", port))
    except OSError as err:
        raise UsageError(
            f"`TF_CONFIG`: this task's address {tasks[0][1]} cannot be listened on "
            f"({err.strerror or err}). Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}"
        ) from err
    joined, buffers = {}, {}
    try:
        while len(joined) < len(tasks) - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [f"{name} ({addr})" for name, addr in tasks[1:] if name not in joined]
                raise UsageError(
                    f"workers never connected within {timeout:g} s: {', '.join(missing)}; start "
                    f"every task of TF_CONFIG's cluster, or wait longer with --cluster-timeout. "
                    f"Received: cluster_timeout={timeout:g}"
                )
            readable, _, _ = select.select([server, *buffers], [], [], min(left, 0.5))
            for ready in readable:
                if ready is server:
                    conn, _ = server.accept()
                    buffers[conn] = b""
                    continue
                chunk = b""
                with contextlib.suppress(OSError):
                    chunk = ready.recv(256)
                if not chunk:  # a task (or a port probe) that connected and went away
                    joined = {k: c for k, c in joined.items() if c is not ready}
                    del buffers[ready]
                    ready.close()
                    continue
                buffers[ready] += chunk
                if b"\n" in buffers[ready]:
                    joined[buffers[ready].split(b"\n")[0].decode()] = ready
        for conn in joined.values():
            _send_line(conn, "go")
        # The others close first (their side keeps TIME_WAIT), so TensorFlow's server can
        # bind this port at once.
        for conn in joined.values():
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(16)
    finally:
        for conn in buffers:
            conn.close()
        server.close()


def _join_rendezvous(tasks, me, deadline, timeout):
    """A non-leader task: connects to the leader (retrying) until it says go."""
    leader, address = tasks[0]
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise UsageError(
                f"the cluster did not start within {timeout:g} s: {leader} ({address}) never "
                f"answered, or other workers never connected to it; start every task of "
                f"TF_CONFIG's cluster, or wait longer with --cluster-timeout. "
                f"Received: cluster_timeout={timeout:g}"
            )
        try:
            conn = socket.create_connection(_split_address(address), timeout=min(left, 2))
        except OSError:
            time.sleep(min(0.2, max(left, 0)))
            continue
        with conn:
            _send_line(conn, me)
            data = b""
            while b"\n" not in data and time.monotonic() < deadline:
                readable, _, _ = select.select(
                    [conn], [], [], min(deadline - time.monotonic(), 0.5)
                )
                if readable:
                    try:
                        chunk = conn.recv(256)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        break  # the leader restarted: connect again
                    data += chunk
            if data.startswith(b"go"):
                return


def wait_for_cluster(timeout, config=None):
    """Waits up to ``timeout`` seconds until every chief/worker task of ``TF_CONFIG`` runs.

    The leader (the chief, else worker 0) listens on its own ``TF_CONFIG`` port (before
    TensorFlow's server takes it); every other task connects to it and waits for "go",
    sent when all have connected. SIGTERM and Ctrl-C stop the wait at once.

    Args:
        timeout: seconds to wait for the whole cluster.
        config: the parsed ``TF_CONFIG`` (default: `tf_config()`).

    Raises:
        UsageError: a task did not connect in time (the leader names the missing ones), or
            SIGTERM/SIGINT arrived while waiting.

    Example:
        >>> wait_for_cluster(60, {})  # no cluster: returns at once
    """
    config = tf_config() if config is None else config
    tasks = _cluster_tasks(config)
    if len(tasks) < 2:
        return
    me = f"{config['task']['type']}:{config['task']['index']}"
    deadline = time.monotonic() + timeout
    with _signals_raise(f"waiting for the cluster's workers ({len(tasks)} tasks)"):
        if me == tasks[0][0]:
            _lead_rendezvous(tasks, deadline, timeout)
        else:
            _join_rendezvous(tasks, me, deadline, timeout)


def make_strategy(name="auto", *, tpu=None, cluster_timeout=None):
    """The tf.distribute strategy for ``name`` (one of ``choices.STRATEGIES``).

    ``cluster_timeout``: for multi-worker, seconds to wait for every task of the cluster
    (`wait_for_cluster`) before TensorFlow starts its collectives; None: no rendezvous.
    """
    check_choice("strategy", name, choices.STRATEGIES)
    if name == "auto":
        # Physical devices: listing logical ones would initialise the runtime, after
        # which MultiWorkerMirroredStrategy can no longer configure its collectives.
        if tf_config_workers() > 1:
            name = "multi-worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one-device"
    if name == "multi-worker":
        if tf_config_workers() < 1:
            raise UsageError(
                "`strategy='multi-worker'` needs TF_CONFIG with a cluster of workers (see docs/training.md)."
            )
        if cluster_timeout is not None:
            wait_for_cluster(cluster_timeout)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def strategy_name(strategy):
    """The ``--strategy`` name of a strategy object."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    return "one-device"


def _task(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """The worker that writes the run directory (chief, or worker 0 without a chief)."""
    task_type, task_id = _task(strategy)
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0)


def worker_index(strategy):
    return _task(strategy)[1] or 0


def weights_digest(model):
    """SHA-256 of all model weights, to check that workers hold identical models."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


@contextlib.contextmanager
def sigterm_flag():
    """Yields a one-item list set to 1 when SIGTERM arrives (the previous handler restored).

    The trainer sums the flag across workers inside its step, so every worker stops at the
    same step boundary (preemption).

    Example:
        >>> with sigterm_flag() as flag:
        ...     flag
        [0]
    """
    flag = [0]

    def handler(signum, frame):
        flag[0] = 1

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: no preemption handling
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
