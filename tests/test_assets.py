"""keras_se.export.assets: the warmup records and the REST request body of assets.extra/."""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from keras_se.export import assets


def test_sample_images_are_uint8_and_reproducible():
    images = assets.sample_images((5, 4, 3), 2)
    assert images.dtype == np.uint8 and images.shape == (2, 5, 4, 3)
    np.testing.assert_array_equal(images, assets.sample_images((5, 4, 3), 2))
    assert not np.array_equal(images, assets.sample_images((5, 4, 3), 2, seed=1))


def test_extras_hold_one_warmup_request_and_its_rest_body(tmp_path):
    images = assets.sample_images((6, 6, 3), 2)
    assets.write_extras(str(tmp_path), "net", images)
    extra = tmp_path / "assets.extra"
    (log,) = assets.read_warmup_requests(str(extra / "tf_serving_warmup_requests"))
    request = log.predict_log.request
    assert (request.model_spec.name, request.model_spec.signature_name) == (
        "net",
        "serving_default",
    )
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["image"]), images[:1])
    body = json.loads((extra / "request.json").read_text())
    assert body["signature_name"] == "serving_default"
    np.testing.assert_array_equal(np.asarray(body["instances"], np.uint8), images[:1])
    assets.write_metadata(str(tmp_path), {"name": "net"})
    with open(os.path.join(extra, "keras_se_export.json")) as f:
        assert json.load(f) == {"name": "net"}
