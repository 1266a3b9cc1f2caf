"""``assets.extra/`` of an exported version: what TF Serving and its clients read beside the graph.

- ``tf_serving_warmup_requests``: ``PredictionLog`` records (tensorflow-serving-api) that TF
  Serving replays when it loads the version, so the first real request is not slow;
- ``request.json``: a sample REST request body (``{"signature_name": ..., "instances": ...}``);
- ``keras_se_export.json``: the export's metadata (preprocessing, class names, signatures).
"""

from __future__ import annotations

import json
import os

import numpy as np

from keras_se.export.layout import ASSETS_EXTRA, METADATA_FILE, REQUEST_FILE, WARMUP_FILE
from keras_se.export.savedmodel import SERVING_SIGNATURE
from keras_se_core import fileio


def sample_images(shape, count, seed=0):
    """``count`` random ``uint8`` images of ``shape`` (H, W, C), the same for the same seed."""
    return np.random.default_rng(seed).integers(0, 256, (count, *shape), dtype=np.uint8)


def write_extras(path, name, images):
    """assets.extra/: TF Serving warmup records and the sample REST request body."""
    extra = os.path.join(path, ASSETS_EXTRA)
    os.makedirs(extra)
    _write_warmup(os.path.join(extra, WARMUP_FILE), name, [images[:1]])
    with open(os.path.join(extra, REQUEST_FILE), "w") as f:
        body = {"signature_name": SERVING_SIGNATURE, "instances": images[:1].tolist()}
        json.dump(body, f, separators=(",", ":"))


def write_metadata(path, metadata):
    """``assets.extra/keras_se_export.json`` of the version being written at ``path``."""
    fileio.write_json(os.path.join(path, ASSETS_EXTRA, METADATA_FILE), metadata)


def _write_warmup(path, name, images):
    """One PredictionLog (tensorflow-serving-api) per image batch, as TF Serving replays them."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for batch in images:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=name, signature_name=SERVING_SIGNATURE)
            )
            request.inputs["image"].CopyFrom(tf.make_tensor_proto(batch))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def read_warmup_requests(path):
    """The ``PredictionLog`` records of a warmup file (for checks and tests).

    Example:
        >>> result = export_model("runs/se_resnet18", "models/")  # doctest: +SKIP
        >>> logs = read_warmup_requests(result.warmup)  # doctest: +SKIP
        >>> list(logs[0].predict_log.request.inputs)  # doctest: +SKIP
        ['image']
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    logs = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        logs.append(log)
    return logs
