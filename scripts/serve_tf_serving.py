#!/usr/bin/env python3
"""Serve a `keras-se export` directory with the official TensorFlow Serving container.

``keras-se export RUN --base models`` writes ``models/<name>/<version>/`` and
``models/models.config``; this prints (or runs, with ``--run``) the ``docker run`` command
that serves every model listed there on REST port 8501 and gRPC port 8500, with the
warm-up requests the export wrote. Docker and the ``tensorflow/serving`` image are needed
to run it; nothing else of keras_se is.

    python scripts/serve_tf_serving.py models            # print the command
    python scripts/serve_tf_serving.py models --run      # run it (Ctrl-C stops the server)
    curl -d @models/<name>/<version>/assets.extra/request.json \\
         http://localhost:8501/v1/models/<name>:predict
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys

IMAGE = "tensorflow/serving"


def serving_command(base, *, rest_port=8501, grpc_port=8500, image=IMAGE):
    """The ``docker run`` argument list that serves ``base/models.config``."""
    base = os.path.abspath(base)
    config = os.path.join(base, "models.config")
    if not os.path.isfile(config):
        raise SystemExit(
            f"error: {config} does not exist: export a model first (keras-se export RUN --base {base})"
        )
    return [
        "docker", "run", "--rm", "-t",
        "-p", f"{rest_port}:8501", "-p", f"{grpc_port}:8500",
        "--mount", f"type=bind,source={base},target=/models",
        image,
        "--model_config_file=/models/models.config",
        "--enable_model_warmup=true",
    ]  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the export base directory (holds models.config)")
    parser.add_argument(
        "--rest-port", type=int, default=8501, help="host REST port; default %(default)s"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=8500, help="host gRPC port; default %(default)s"
    )
    parser.add_argument(
        "--image", default=IMAGE, help="serving image, e.g. tensorflow/serving:2.19.0-gpu"
    )
    parser.add_argument("--run", action="store_true", help="run the command instead of printing it")
    args = parser.parse_args(argv)
    command = serving_command(
        args.base, rest_port=args.rest_port, grpc_port=args.grpc_port, image=args.image
    )
    if not args.run:
        print(shlex.join(command))
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
