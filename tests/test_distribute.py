"""keras_se.distribute: TF_CONFIG parsing, strategy names and roles, the bounded cluster
rendezvous (in threads; one CLI leader in a subprocess whose workers never start)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from keras_se import distribute
from keras_se_core.errors import UsageError
from tests import prefork
from tests.conftest import CliResult, assert_usage_error, free_port


def test_tf_config_unset_and_valid(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.tf_config() == {} and distribute.tf_config_workers() == 0
    cluster = {"chief": ["h:1"], "worker": ["h:2", "h:3"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    )
    assert distribute.tf_config_workers() == 3


@pytest.mark.parametrize(
    "value, needle",
    [
        ("{", "not valid JSON"),
        ("3", "must be a JSON object"),
        ('{"cluster": {"worker": "h:1"}}', '"cluster"'),
        ('{"cluster": {"worker": ["h:1"]}}', '"task"'),
        (
            '{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
            "not in the cluster",
        ),
    ],
)
def test_malformed_tf_config_names_the_variable(monkeypatch, value, needle):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UsageError, match="TF_CONFIG") as info:
        distribute.tf_config()
    assert needle in str(info.value)


def test_strategy_names_and_chief(monkeypatch):
    import tensorflow as tf

    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = distribute.make_strategy("one-device")
    assert distribute.strategy_name(strategy) == "one-device"
    assert distribute.is_chief(strategy) and distribute.worker_index(strategy) == 0
    assert isinstance(distribute.make_strategy("auto"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(UsageError, match="strategy='gpus'"):
        distribute.make_strategy("gpus")
    with pytest.raises(UsageError, match="TF_CONFIG"):
        distribute.make_strategy("multi-worker")


# ------------------------------------------------------------------ cluster rendezvous
def _cluster(workers, index):
    ports = [free_port() for _ in range(workers)]
    return {
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    }, ports


def test_rendezvous_leader_names_the_workers_that_never_connected():
    config, ports = _cluster(3, 0)
    start = time.monotonic()
    with pytest.raises(UsageError) as info:
        distribute.wait_for_cluster(1.5, config)
    assert 1.4 <= time.monotonic() - start < 10
    message = str(info.value)
    assert f"worker:1 (127.0.0.1:{ports[1]})" in message
    assert f"worker:2 (127.0.0.1:{ports[2]})" in message
    assert "worker:0" not in message and "cluster_timeout=1.5" in message


def test_rendezvous_worker_names_the_leader_that_never_answered():
    config, ports = _cluster(3, 2)
    start = time.monotonic()
    with pytest.raises(UsageError) as info:
        distribute.wait_for_cluster(1, config)
    assert 0.9 <= time.monotonic() - start < 10
    assert f"worker:0 (127.0.0.1:{ports[0]}) never answered" in str(info.value)
    assert "cluster_timeout=1" in str(info.value)


def test_rendezvous_of_a_chief_and_two_workers_returns_everywhere_and_frees_the_port():
    """Chief (the leader) and two workers in threads (signal handlers are skipped off the main
    thread); the workers start first and retry until the leader listens. Afterwards the
    leader's port can be bound again (TensorFlow's server takes it next)."""
    ports = [free_port() for _ in range(3)]
    cluster = {
        "chief": [f"127.0.0.1:{ports[0]}"],
        "worker": [f"127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[2]}"],
    }
    tasks = [("worker", 1), ("worker", 0), ("chief", 0)]  # the leader last
    done, errors = {}, []

    def meet(kind, index):
        try:
            config = {"cluster": cluster, "task": {"type": kind, "index": index}}
            distribute.wait_for_cluster(20, config)
            done[f"{kind}:{index}"] = time.monotonic()
        except BaseException as err:  # reported below
            errors.append(err)

    start = time.monotonic()
    threads = [threading.Thread(target=meet, args=task) for task in tasks]
    for thread in threads:
        thread.start()
        time.sleep(0.3)
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sorted(done) == ["chief:0", "worker:0", "worker:1"]
    assert max(done.values()) - start < 8
    with socket.socket() as s:  # no SO_REUSEADDR: fails if the leader left the port busy
        s.bind(("127.0.0.1", ports[0]))
    assert distribute.wait_for_cluster(60, {}) is None  # no cluster: nothing to wait for


def test_rendezvous_leader_survives_a_connection_that_hangs_up():
    """A port probe (connect, then close without a word) before the worker joins: the leader
    forgets it and still lets the real worker in (it used to crash closing a bytes buffer)."""
    config, ports = _cluster(2, 0)
    errors = []

    def lead():
        try:
            distribute.wait_for_cluster(20, config)
        except BaseException as err:  # reported below
            errors.append(err)

    leader = threading.Thread(target=lead)
    leader.start()
    deadline = time.monotonic() + 10
    while True:  # the probe: connect until the leader listens, then hang up at once
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the leader never listened"
            time.sleep(0.05)
    time.sleep(0.3)  # the leader sees the hang-up before anyone else connects
    try:
        distribute.wait_for_cluster(5, {**config, "task": {"type": "worker", "index": 1}})
    finally:
        leader.join(20)
    assert not leader.is_alive() and not errors, errors


def _leader_cli(tmp_path, name, timeout):
    config, ports = _cluster(2, 0)
    out = tmp_path / name
    proc = prefork.Popen(
        [
            sys.executable,
            "-m",
            "keras_se_core.cli",
            "train",
            "--model",
            "se_resnet18",
            "--image-size",
            "16",
            "--batch-size",
            "16",
            "--steps-per-epoch",
            "1",
            "--epochs",
            "1",
            "--quiet",
            "--strategy",
            "multi-worker",
            "--cluster-timeout",
            str(timeout),
            "--out",
            str(out),
        ],
        env=dict(os.environ, TF_CONFIG=json.dumps(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out, ports


def _accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.integration
@pytest.mark.slow
def test_cli_leader_stops_on_sigterm_and_on_its_cluster_timeout(tmp_path):
    """Worker 0 of a 2-worker TF_CONFIG whose worker 1 never starts: SIGTERM while it waits
    (its port accepts connections) is exit 2 within seconds, one line naming SIGTERM;
    --cluster-timeout 3 is exit 2 naming worker:1. Neither leaves its --out behind."""
    waiting, waiting_out, ports = _leader_cli(tmp_path, "sigterm", 120)
    timing_out, timing_out_out, _ = _leader_cli(tmp_path, "timeout", 3)
    try:
        deadline = time.monotonic() + 180
        while not _accepts(ports[0]):
            assert waiting.poll() is None, waiting.communicate()
            assert time.monotonic() < deadline, "the leader never listened"
            time.sleep(0.2)
        sent = time.monotonic()
        waiting.send_signal(signal.SIGTERM)
        out, err = waiting.communicate(timeout=60)
        stopped = time.monotonic() - sent
        late_out, late_err = timing_out.communicate(timeout=180)
    finally:
        waiting.kill()
        timing_out.kill()
    result = CliResult(waiting.returncode, out, err)
    assert_usage_error(result, "SIGTERM", "waiting for the cluster's workers")
    assert stopped < 10, stopped
    assert not waiting_out.exists()
    assert_usage_error(
        CliResult(timing_out.returncode, late_out, late_err),
        "never connected within 3 s",
        "worker:1",
        "cluster_timeout=3",
    )
    assert not timing_out_out.exists()
