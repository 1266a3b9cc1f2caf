"""keras_se.bench.peer_sides: the protocol a live worker serves (in this process)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_se.bench import peer_sides
from keras_se.bench.process import read_worker_result


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.integration
def test_keras_side_serves_the_protocol(tmp_path):
    """The loop of a live keras_se worker, in this process: prepare, logits, time, errors."""
    import io

    from keras_se import models
    from keras_se import weights as reference

    # 64x64: the ImageNet stem, which reference (timm) weights need
    model = models.SEResNet18(input_shape=(64, 64, 3), classifier_activation=None)
    weights = reference.save_reference_weights(model, str(tmp_path / "w.safetensors"))
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    common = dict(
        model="se_resnet18",
        weights=weights,
        inputs=str(tmp_path / "x.npy"),
        labels=str(tmp_path / "y.npy"),
        precision="float32",
        learning_rate=0.01,
    )
    requests = [
        {"op": "prepare", "key": "i", "train": False, **common},
        {"op": "prepare", "key": "t", "train": True, **common},
        {"op": "logits", "key": "i", "path": str(tmp_path / "logits.npy")},
        {"op": "time", "key": "t"},
        {"op": "time", "key": "missing"},
        {"op": "drop"},
        {"op": "quit"},
        {"op": "never read"},
    ]
    out = io.StringIO()
    stdin = io.StringIO("".join(json.dumps(r) + "\n" for r in requests))
    assert peer_sides.serve("keras", threads=1, stdin=stdin, stdout=out) == 0
    replies = [read_worker_result(line) for line in out.getvalue().splitlines()]
    assert len(replies) == 6 and replies[0] == replies[1] == {}
    assert replies[3]["seconds"] > 0 and "KeyError" in replies[4]["error"]
    # the worker's logits are the model's (the same weights went through the timm file)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), model(x), rtol=1e-4, atol=1e-4)
