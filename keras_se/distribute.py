"""tf.distribute strategies for training: selection, cluster roles, logical CPU devices.

``auto`` picks multi-worker when ``TF_CONFIG`` names more than one worker, mirrored
when more than one GPU is visible, else one device. ``TF_CONFIG`` is read once here
(`tf_config`) and a malformed value is a `UsageError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os

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


def make_strategy(name="auto", *, tpu=None):
    """The tf.distribute strategy for ``name`` (one of ``choices.STRATEGIES``)."""
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
                "`strategy='multi-worker'` needs TF_CONFIG with a cluster of workers (see README)."
            )
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
