#!/usr/bin/env python3
"""Launch `keras-se train` on several hosts (MultiWorkerMirroredStrategy) from a host list.

Each worker needs ``TF_CONFIG`` naming the whole cluster and its own index. Run this on
every host with the same ``--hosts`` and that host's ``--index``; everything after ``--``
is the ``keras-se train`` command line (the same on every host, with a shared ``--out``
on a network file system: the chief writes the run, every worker restores from it).

    # on host A and host B:
    python scripts/launch_multiworker.py --hosts a:12345,b:12345 --index 0 -- --model se_resnet50 ...
    python scripts/launch_multiworker.py --hosts a:12345,b:12345 --index 1 -- --model se_resnet50 ...
    # or every worker on this machine (127.0.0.1, free ports), to try it out:
    python scripts/launch_multiworker.py --local 2 -- --dataset digits --epochs 1 --out runs/mw

A preempted worker (SIGTERM) saves a step checkpoint and exits with code 3; rerunning the
same command on every host resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys


def tf_config(hosts, index):
    """The ``TF_CONFIG`` of worker ``index`` in a cluster of ``hosts`` (``host:port``)."""
    if not 0 <= index < len(hosts):
        raise SystemExit(
            f"error: --index must be in [0, {len(hosts) - 1}]. Received: --index {index}"
        )
    return json.dumps(
        {"cluster": {"worker": list(hosts)}, "task": {"type": "worker", "index": index}}
    )


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def train_command(train_args):
    return [
        sys.executable,
        "-m",
        "keras_se_core.cli",
        "train",
        "--strategy",
        "multi-worker",
        *train_args,
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--hosts", help="comma-separated host:port of every worker, the chief first")
    where.add_argument(
        "--local", type=int, metavar="N", help="start N workers on 127.0.0.1 and wait for them"
    )
    parser.add_argument("--index", type=int, help="this host's position in --hosts")
    parser.add_argument(
        "--dry-run", action="store_true", help="print TF_CONFIG and the commands, start nothing"
    )
    parser.add_argument(
        "train_args", nargs=argparse.REMAINDER, help="-- then the keras-se train arguments"
    )
    args = parser.parse_args(argv)
    train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
    if args.hosts:
        if args.index is None:
            parser.error("--hosts needs --index (this host's position in the list)")
        jobs = [(tf_config(args.hosts.split(","), args.index), train_command(train_args))]
    else:
        hosts = [f"127.0.0.1:{port}" for port in _free_ports(args.local)]
        jobs = [(tf_config(hosts, i), train_command(train_args)) for i in range(args.local)]
    if args.dry_run:
        for config, command in jobs:
            print(f"TF_CONFIG='{config}' {' '.join(command)}")
        return 0
    procs = [
        subprocess.Popen(command, env=dict(os.environ, TF_CONFIG=config))
        for config, command in jobs
    ]
    codes = [p.wait() for p in procs]
    return max(codes, key=abs)


if __name__ == "__main__":
    sys.exit(main())
