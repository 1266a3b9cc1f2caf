"""SavedModel export for TF Serving (keras_se.export, `keras-se export`), issue #7, end to end.

The modules of the package have their own tests: test_sources.py, test_plan.py,
test_precision.py, test_savedmodel.py, test_assets.py, test_layout.py, test_exporter.py.

References are independent of the code under test: preprocessing is recomputed in
NumPy from the spec, gates from the paper's formula on the layer weights, and the
SavedModel is checked with TensorFlow's loader (in a process that cannot import
keras_se or Keras) and with ``saved_model_cli``. No TF Serving binary is run.
The ``.keras`` (safe_mode) round trip of every registry model is in test_registry.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_se import SqueezeExcite, export, models
from keras_se.data import Preprocessing, save_preprocessing
from keras_se_core.errors import UsageError
from tests import prefork
from tests.conftest import assert_usage_error, run_main

H, W, C = 32, 32, 3
CLASSES = 4
CLASS_NAMES = ["cat", "dog", "fish", "bird"]
#: Per-channel statistics unlike the ImageNet defaults, so a wrong spec shows.
SPEC = Preprocessing(mean=(0.2, 0.5, 0.7), std=(0.3, 0.1, 0.2))
ATOL = 1e-5
#: max |bfloat16 export - float32 model| of probabilities (8 mantissa bits: ~0.4 % per value)
BF16_ATOL = 0.05
SUBPROCESS_TIMEOUT = 240


def _images(n, seed=1, size=(H, W)):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, C), dtype=np.uint8)


def _numpy_preprocess(images, spec):
    """The spec applied in NumPy: (pixel * scale - mean) / std (reference for normalize)."""
    x = images.astype(np.float64) * spec.scale
    return ((x - np.array(spec.mean)) / np.array(spec.std)).astype(np.float32)


def _keras_probabilities(model, images, spec, *, logits=False):
    out = keras.ops.convert_to_numpy(model(_numpy_preprocess(images, spec), training=False))
    out = out.astype(np.float64)
    if logits:
        out = np.exp(out - out.max(-1, keepdims=True))
        out /= out.sum(-1, keepdims=True)
    return out


def _versions(model_dir):
    return sorted(n for n in os.listdir(model_dir) if n.isdigit())


def _temporaries(model_dir):
    return sorted(n for n in os.listdir(model_dir) if n.startswith(export.TMP_PREFIX))


def _make_run_dir(path):
    """A training run directory as keras_se's trainer writes it (model, sidecar, config)."""
    os.makedirs(path)
    model = models.get("se_resnet18", input_shape=(H, W, C), classes=CLASSES)
    model_path = os.path.join(path, "model.keras")
    model.save(model_path)
    save_preprocessing(model_path, SPEC)
    config = {
        "model": "se_resnet18",
        "num_classes": CLASSES,
        "class_names": CLASS_NAMES,
        "image_shape": [H, W, C],
    }
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export of a run directory, with excitations and top-2, shared by the checks."""
    root = tmp_path_factory.mktemp("export")
    run_dir = os.path.join(root, "run")
    model = _make_run_dir(run_dir)
    base = os.path.join(root, "models")
    result = export.export_model(run_dir, base, with_excitations=True, top_k=2)
    loaded = tf.saved_model.load(result.path)
    return types.SimpleNamespace(
        root=root,
        run_dir=run_dir,
        model=model,
        base=base,
        result=result,
        loaded=loaded,
        precision="float32",
    )


@pytest.fixture(
    scope="module",
    # the bfloat16 export (a second SavedModel, 15-50 s) runs in the slow tier
    params=[
        p if p == "float32" else pytest.param(p, marks=pytest.mark.slow) for p in export.PRECISIONS
    ],
)
def served(request, exported, tmp_path_factory):
    """`exported`, and the same run directory exported with ``precision="bfloat16"``: the
    serving contract (dtypes, in-graph checks, empty batches) must hold for both."""
    if request.param == "float32":
        return exported
    base = os.path.join(tmp_path_factory.mktemp("export_bf16"), "models")
    result = export.export_model(
        exported.run_dir, base, with_excitations=True, top_k=2, precision=request.param
    )
    return types.SimpleNamespace(
        **dict(
            vars(exported),
            base=base,
            result=result,
            loaded=tf.saved_model.load(result.path),
            precision=request.param,
        )
    )


def _graph_ops(fn):
    """``(op type, T attribute or None)`` of every node a concrete function runs, the nodes of
    the functions it calls (the Keras layers are traced into the graph's function library)
    included: what TensorFlow will execute, read from the graph itself."""
    graph_def = fn.graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += list(function.node_def)
    ops = []
    for node in nodes:
        single = "T" in node.attr and node.attr["T"].WhichOneof("value") == "type"
        dtype = tf.dtypes.as_dtype(node.attr["T"].type).name if single else None
        ops.append((node.op, dtype))
    return ops


# ---------------------------------------------------------------------- layout
@pytest.mark.slow
def test_export_writes_tf_serving_layout(exported):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    result, base = exported.result, exported.base
    model_dir = os.path.join(base, "se_resnet18")
    # Name from the run's config.json, first version 1, nothing temporary left.
    assert (result.name, result.version) == ("se_resnet18", 1)
    assert result.path == os.path.join(model_dir, "1")
    assert _versions(model_dir) == ["1"] and _temporaries(model_dir) == []
    for rel in ("saved_model.pb", "variables/variables.index", "assets.extra/request.json"):
        assert os.path.isfile(os.path.join(result.path, rel)), rel

    config = model_server_config_pb2.ModelServerConfig()
    with open(os.path.join(base, "models.config")) as f:
        text_format.Parse(f.read(), config)
    (entry,) = config.model_config_list.config
    assert entry.name == "se_resnet18"
    assert entry.base_path == os.path.abspath(model_dir)
    assert entry.model_platform == "tensorflow"

    with open(result.request) as f:
        body = json.load(f)
    assert body["signature_name"] == "serving_default"
    instances = np.asarray(body["instances"])
    assert instances.shape == (1, H, W, C) and 0 <= instances.min() <= instances.max() <= 255

    with open(os.path.join(result.path, "assets.extra", export.METADATA_FILE)) as f:
        meta = json.load(f)
    assert meta["class_names"] == CLASS_NAMES
    assert meta["preprocessing"]["mean"] == list(SPEC.mean)
    assert result.preprocessing_note.endswith("model.preprocessing.json")
    assert result.max_abs_diff <= ATOL

    text = export.format_result(result)
    assert f"to {result.path}" in text
    assert "signature serving_default:" in text
    assert "input  image: uint8 [-1, 32, 32, 3]" in text


def test_serving_signature_names_dtypes_and_training_preprocessing(served):
    exported = served
    loaded = exported.loaded
    assert set(loaded.signatures) == {"serving_default", "serving_preprocessed", "excitations"}
    fn = loaded.signatures["serving_default"]
    _, inputs = fn.structured_input_signature
    assert list(inputs) == ["image"]
    assert inputs["image"].dtype == tf.uint8
    # Declared with unknown shape so that every request reaches the in-graph check;
    # the result reports the shape the check accepts.
    assert inputs["image"].shape.rank is None
    assert exported.result.signatures["serving_default"]["inputs"]["image"] == (
        "uint8",
        [-1, H, W, C],
    )
    outputs = fn.structured_outputs
    expected = {
        "probabilities": (tf.float32, [None, CLASSES]),
        "class_id": (tf.int64, [None]),
        "top_k_probabilities": (tf.float32, [None, 2]),
        "top_k_class_ids": (tf.int64, [None, 2]),
    }
    assert {k: (v.dtype, v.shape.as_list()) for k, v in outputs.items()} == expected

    # The bfloat16 graph against the same model rebuilt under mixed_bfloat16 in Keras (the
    # function it must compute), and loosely against the float32 model.
    model = export.with_precision(exported.model, exported.precision)
    assert (model is exported.model) == (exported.precision == "float32")
    for batch in (1, 3):  # dynamic batch
        images = _images(batch, seed=batch)
        reference = _keras_probabilities(model, images, SPEC)
        served = {k: v.numpy() for k, v in fn(image=tf.constant(images)).items()}
        assert np.abs(served["probabilities"] - reference).max() <= ATOL
        np.testing.assert_array_equal(served["class_id"], reference.argmax(-1))
        np.testing.assert_allclose(
            served["top_k_probabilities"], np.sort(reference, -1)[:, ::-1][:, :2], atol=ATOL
        )
        np.testing.assert_array_equal(served["top_k_class_ids"][:, 0], reference.argmax(-1))
        float32 = _keras_probabilities(exported.model, images, SPEC)
        assert np.abs(served["probabilities"] - float32).max() <= BF16_ATOL

        # The float signature takes already-preprocessed images (documented).
        pre = loaded.signatures["serving_preprocessed"]
        out = pre(image=tf.constant(_numpy_preprocess(images, SPEC)))
        assert np.abs(out["probabilities"].numpy() - reference).max() <= ATOL


@pytest.mark.slow
def test_savedmodel_predicts_in_a_process_without_keras_se(exported, tmp_path):
    images = _images(5, seed=7)
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(
        """
        import sys
        for name in ("keras_se", "keras", "tf_keras"):
            sys.modules[name] = None  # any import of these raises ImportError
        for name in ("keras_se", "keras"):
            try:
                __import__(name)
            except ImportError:
                pass
            else:
                sys.exit(f"{name} is importable")
        import numpy as np
        import tensorflow as tf

        loaded = tf.saved_model.load(sys.argv[1])
        out = loaded.signatures["serving_default"](image=tf.constant(np.load("images.npy")))
        np.save("probabilities.npy", out["probabilities"].numpy())
        np.save("class_id.npy", out["class_id"].numpy())
        print("dtypes", out["probabilities"].dtype.name, out["class_id"].dtype.name)
        print("keras loaded:", any(m.startswith("keras") and sys.modules[m] is not None
                                   for m in sys.modules))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", script, os.path.abspath(exported.result.path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dtypes float32 int64" in proc.stdout
    assert "keras loaded: False" in proc.stdout
    served = np.load(tmp_path / "probabilities.npy")
    reference = _keras_probabilities(exported.model, images, SPEC)
    diff = np.abs(served - reference).max()
    print(f"max |keras - SavedModel (no keras_se process)| = {diff:.3g}")
    assert served.dtype == np.float32 and diff <= ATOL
    np.testing.assert_array_equal(np.load(tmp_path / "class_id.npy"), reference.argmax(-1))


@pytest.mark.slow
def test_saved_model_cli_show_and_run(exported, tmp_path):
    path = exported.result.path
    show = subprocess.run(
        ["saved_model_cli", "show", "--dir", path, "--all"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert show.returncode == 0, show.stderr[-3000:]
    block = show.stdout.split("signature_def['serving_default']:")[1].split("signature_def[")[0]
    for expected in (
        "inputs['image'] tensor_info:\n        dtype: DT_UINT8\n        shape: unknown_rank",
        f"outputs['probabilities'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, {CLASSES})",
        "outputs['class_id'] tensor_info:\n        dtype: DT_INT64\n        shape: (-1)",
        "Method name is: tensorflow/serving/predict",
    ):
        assert expected in block, (expected, block)
    assert "signature_def['excitations']" in show.stdout

    images = _images(3, seed=11)
    np.save(tmp_path / "x.npy", images)
    out_dir = tmp_path / "out"
    run = subprocess.run(
        [
            "saved_model_cli",
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"image={tmp_path / 'x.npy'}",
            "--outdir",
            str(out_dir),
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reference = _keras_probabilities(exported.model, images, SPEC)
    probabilities = np.load(out_dir / "probabilities.npy")
    assert probabilities.dtype == np.float32
    assert np.abs(probabilities - reference).max() <= ATOL
    np.testing.assert_array_equal(np.load(out_dir / "class_id.npy"), reference.argmax(-1))


def test_warmup_records_read_back(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported.result.path, "assets.extra", "tf_serving_warmup_requests")
    assert exported.result.warmup == path
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(records) == 1
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    request = log.predict_log.request
    assert request.model_spec.name == "se_resnet18"
    assert request.model_spec.signature_name == "serving_default"
    image = tf.make_ndarray(request.inputs["image"])
    assert image.dtype == np.uint8 and image.shape == (1, H, W, C)
    with open(exported.result.request) as f:
        np.testing.assert_array_equal(np.asarray(json.load(f)["instances"]), image)
    # The recorded request is a valid call of the signature.
    out = exported.loaded.signatures["serving_default"](image=tf.constant(image))
    reference = _keras_probabilities(exported.model, image, SPEC)
    assert np.abs(out["probabilities"].numpy() - reference).max() <= ATOL
    assert export.read_warmup_requests(path) == [log]


def test_excitations_signature_gives_each_se_gate(exported):
    model = exported.model
    se_layers = [layer for layer in model.layers if isinstance(layer, SqueezeExcite)]
    images = _images(2, seed=3)
    gates = exported.loaded.signatures["excitations"](image=tf.constant(images))
    assert sorted(gates) == sorted(layer.name for layer in se_layers)
    features = keras.Model(model.inputs[0], [layer.input for layer in se_layers])
    inputs = features(_numpy_preprocess(images, SPEC), training=False)
    for layer, u in zip(se_layers, inputs):
        # The paper's formula, s = sigmoid(W2 relu(W1 z + b1) + b2), in NumPy.
        z = keras.ops.convert_to_numpy(u).astype(np.float64).mean(axis=(1, 2))
        w1, w2, b1, b2 = (
            keras.ops.convert_to_numpy(v).astype(np.float64)
            for v in (
                layer.reduce_kernel,
                layer.expand_kernel,
                layer.reduce_bias,
                layer.expand_bias,
            )
        )
        s = 1 / (1 + np.exp(-(np.maximum(z @ w1 + b1, 0) @ w2 + b2)))
        got = gates[layer.name].numpy()
        assert got.dtype == np.float32 and got.shape == (2, layer.channels)
        assert np.abs(got - s).max() <= ATOL, layer.name


# ---------------------------------------------------------------------- variants
@pytest.mark.slow
def test_se_bottleneck_exports_its_function_and_gates(tmp_path):
    """An SE bottleneck ResNet (conv → BatchNormalization → SqueezeExcite tails, random BN
    statistics so that no BN is the identity) serves Keras's probabilities and gates."""
    from keras_se import analysis
    from keras_se.models.resnet import build_resnet

    kwargs = dict(stackwise_num_blocks=(2, 1, 1, 1), input_shape=(H, W, C), classes=3)
    textbook = build_resnet(**kwargs)
    rng = np.random.default_rng(1)
    for w in textbook.weights:
        if w.path.endswith("moving_variance"):
            w.assign(rng.uniform(0.5, 2.0, size=w.shape))
        elif w.path.endswith(("moving_mean", "beta")):
            w.assign(rng.normal(0.0, 0.2, size=w.shape))
    result = export.export_model(textbook, tmp_path, name="bottleneck", with_excitations=True)
    loaded = tf.saved_model.load(result.path)
    images = _images(2, seed=11)
    served = loaded.signatures["serving_default"](image=tf.constant(images))
    reference = _keras_probabilities(textbook, images, Preprocessing())
    assert np.abs(served["probabilities"].numpy() - reference).max() <= 1e-4
    gates = loaded.signatures["excitations"](image=tf.constant(images))
    expected = analysis.excitation_model(textbook).predict_on_batch(
        _numpy_preprocess(images, Preprocessing())
    )
    assert len(gates) == len(expected) == 5
    for layer, s in zip(analysis.find_se_blocks(textbook), expected):
        assert np.abs(gates[layer.name].numpy() - s).max() <= 1e-4, layer.name


@pytest.mark.slow
def test_bare_keras_file_defaults_versions_and_models_config(tmp_path):
    # A logits model (no classifier activation): the graph adds the softmax.
    model = models.get("se_resnet18", input_shape=(H, W, C), classes=3, classifier_activation=None)
    path = os.path.join(tmp_path, "net.keras")
    model.save(path)
    base = os.path.join(tmp_path, "models")
    os.makedirs(base)
    with open(os.path.join(base, "models.config"), "w") as f:
        f.write('model_config_list { config { name: "other" base_path: "/srv/other" } }\n')

    first = export.export_model(path, base)
    second = export.export_model(path, base)
    assert (first.name, first.version, second.version) == ("net", 1, 2)
    assert "ImageNet mean/std" in first.preprocessing_note
    assert "ImageNet mean/std" in export.format_result(first)
    assert first.preprocessing == Preprocessing()
    assert set(first.signatures) == {"serving_default", "serving_preprocessed"}  # off by default

    with open(os.path.join(base, "models.config")) as f:
        text = f.read()
    assert text.count('name: "other"') == 1 and text.count('name: "net"') == 1

    images = _images(4, seed=5)
    loaded = tf.saved_model.load(second.path)
    served = loaded.signatures["serving_default"](image=tf.constant(images))
    reference = _keras_probabilities(model, images, Preprocessing(), logits=True)
    assert np.abs(served["probabilities"].numpy() - reference).max() <= ATOL
    np.testing.assert_allclose(served["probabilities"].numpy().sum(-1), 1.0, atol=1e-6)


@pytest.mark.slow
def test_mixed_precision_model_exports_float32(tmp_path):
    """A model trained under mixed_float16 is served in float32 by default (precision="float32"):
    the graph has no float16 op, and computes the float32 rebuild with the same weights."""
    keras.config.set_dtype_policy("mixed_float16")
    model = models.get("se_resnet18", input_shape=(H, W, C), classes=3)
    keras.config.set_dtype_policy("float32")
    assert model.outputs[0].dtype == "float16"
    result = export.export_model(model, tmp_path, name="mixed", with_excitations=True)
    assert result.precision == "float32"
    loaded = tf.saved_model.load(result.path)
    images = _images(3, seed=9)
    served = loaded.signatures["serving_default"](image=tf.constant(images))
    gates = loaded.signatures["excitations"](image=tf.constant(images))
    assert served["probabilities"].dtype == tf.float32
    assert all(g.dtype == tf.float32 for g in gates.values())
    ops = _graph_ops(loaded.signatures["serving_default"])
    assert {dtype for _, dtype in ops} & {"float16", "bfloat16"} == set()
    assert {dtype for op, dtype in ops if op == "Conv2D"} == {"float32"}
    rebuilt = export.with_precision(model, "float32")
    assert rebuilt is not model and rebuilt.outputs[0].dtype == "float32"
    reference = _keras_probabilities(rebuilt, images, Preprocessing())
    assert np.abs(served["probabilities"].numpy() - reference).max() <= ATOL
    # and the mixed model it came from, to float16's precision
    mixed = _keras_probabilities(model, images, Preprocessing())
    diff = np.abs(served["probabilities"].numpy() - mixed).max()
    print(f"mixed_float16 model vs its float32 export: max |diff| = {diff:.3g}")
    assert diff <= 1e-2


# ---------------------------------------------------------------------- precision
def test_bfloat16_export_runs_bfloat16_convolutions(served):
    """What TensorFlow executes: every Conv2D in bfloat16 (float32 in the float32 export), the
    classifier's MatMul and softmax in float32; the metadata and report say which."""
    ops = _graph_ops(served.loaded.signatures["serving_default"])
    convs = [dtype for op, dtype in ops if op == "Conv2D"]
    matmuls = [dtype for op, dtype in ops if op == "MatMul"]
    # SE-ResNet-18: 20 convolutions (stem, 16 in blocks, 3 projections); 8 SE blocks x 2 FCs + head
    assert len(convs) == 20 and len(matmuls) == 17
    assert {dtype for op, dtype in ops if op == "Softmax"} == {"float32"}
    with open(os.path.join(served.result.path, "assets.extra", export.METADATA_FILE)) as f:
        meta = json.load(f)
    text = export.format_result(served.result)
    assert served.result.precision == meta["precision"] == served.precision
    assert f"precision: {served.precision}" in text
    if served.precision == "float32":
        assert set(convs) == set(matmuls) == {"float32"}
        assert "bfloat16" not in {dtype for _, dtype in ops}
        assert meta["compute_dtypes"] == ["float32"]
    else:
        assert set(convs) == {"bfloat16"}
        assert sorted(matmuls) == ["bfloat16"] * 16 + ["float32"]  # the SE FCs, then the head
        assert meta["compute_dtypes"] == ["bfloat16", "float32"]
        assert "mixed_bfloat16" in text
    # the float32 model's weights went into the graph (not a fresh initialisation)
    images = _images(2, seed=21)
    out = served.loaded.signatures["serving_default"](image=tf.constant(images))
    float32 = _keras_probabilities(served.model, images, SPEC)
    assert np.abs(out["probabilities"].numpy() - float32).max() <= BF16_ATOL


def _digits_model():
    """SE-ResNet-20 (CIFAR layout) trained 2 epochs on the 16x16 digits: 95.3 % validation
    accuracy here (95.8 % after 3, 96.7 % after 4; each epoch costs ~3 s of the suite's
    time), so that agreement is measured on a model that separates the classes."""
    from keras_se.data import DIGITS_MEAN, DIGITS_STD, load_digits_arrays

    (x_train, y_train), (x_val, y_val), _ = load_digits_arrays(16)
    spec = Preprocessing(mean=DIGITS_MEAN, std=DIGITS_STD)
    keras.utils.set_random_seed(0)
    model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=10)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)  # fit traces its step once, not twice (5 s)
    model.fit(_numpy_preprocess(x_train, spec), y_train, batch_size=64, epochs=2, verbose=0)
    return model, spec, x_val, y_val


@pytest.mark.slow
def test_bfloat16_export_agrees_with_float32_on_digits(tmp_path):
    """The bfloat16 SavedModel against the float32 model it was exported from (the Keras
    model itself: a float32 export serves it within ATOL, test_serving_signature_... above,
    and a second export cost the suite ~10 s)."""
    model, spec, x_val, y_val = _digits_model()
    result = export.export_model(
        model, tmp_path, name="digits", preprocessing=spec, precision="bfloat16"
    )
    fn = tf.saved_model.load(result.path).signatures["serving_default"]
    p16 = fn(image=tf.constant(x_val))["probabilities"].numpy()
    p32 = _keras_probabilities(model, x_val, spec)
    accuracy = (p32.argmax(-1) == y_val).mean()
    same = p32.argmax(-1) == p16.argmax(-1)
    diff = np.abs(p32 - p16).max()
    top2 = np.sort(p32, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    print(
        f"digits: float32 accuracy {accuracy:.4f}, top-1 agreement {same.mean():.4f} "
        f"({(~same).sum()} of {len(same)} differ, float32 top-2 margins {margin[~same]}), "
        f"max |dp| {diff:.3g}"
    )
    # a model that separates the classes (0.967 with 2 intra-op threads, 0.892 with 1: the
    # thread count changes the float32 sums of training)
    assert accuracy >= 0.85 and len(y_val) == 360
    assert diff <= BF16_ATOL
    # bfloat16 rounding (|dp| <= BF16_ATOL) can only swap two classes closer than 2 x BF16_ATOL:
    # every image the float32 model is surer about keeps its class.
    assert same[margin > 2 * BF16_ATOL].all()
    # Overall: issue 31's goal is >= 99.5 % (at most 1 of 360); measured 100 % with this
    # training (2 epochs; 99.44 % after 4: 2 near-ties that float32 gets wrong, margins 0.018
    # and 0.003). Asserted: at most 1 %, and the accuracy moves by at most those images.
    assert same.mean() >= 0.99
    assert abs((p16.argmax(-1) == y_val).mean() - accuracy) <= (~same).mean()


@pytest.mark.slow
def test_bfloat16_se_resnet50_export_keeps_the_top5(tmp_path):
    """SE-ResNet-50 (the full architecture, 1000 classes, random weights) at 64x64 rather than
    224x224 (the depth and widths are what bfloat16 rounding accumulates over; 12x fewer FLOPs).
    The float32 side is the Keras model with the export's preprocessing (what a float32 export
    serves; its export took 15 s more)."""
    keras.utils.set_random_seed(0)
    model = models.get("se_resnet50", input_shape=(64, 64, 3))
    images = _images(8, seed=13, size=(64, 64))
    result = export.export_model(model, tmp_path, name="r50", precision="bfloat16")
    fn = tf.saved_model.load(result.path).signatures["serving_default"]
    top5 = {
        "bfloat16": fn(image=tf.constant(images))["probabilities"].numpy(),
        "float32": _keras_probabilities(model, images, result.preprocessing),
    }
    top5 = {precision: np.argsort(-out, axis=-1)[:, :5] for precision, out in top5.items()}
    overlap = [len(set(a) & set(b)) for a, b in zip(top5["float32"], top5["bfloat16"])]
    print(f"SE-ResNet-50 64x64: top-5 overlap per image {overlap}")
    assert np.mean(overlap) >= 4.5 and min(overlap) >= 3


@pytest.mark.slow
def test_dynamic_size_resizes_inside_the_graph(tmp_path):
    model = models.get("se_resnet18", input_shape=(H, W, C), classes=3)
    result = export.export_model(model, tmp_path, name="dyn", dynamic_size=True, preprocessing=SPEC)
    assert result.signatures["serving_default"]["inputs"]["image"] == ("uint8", [-1, -1, -1, C])
    loaded = tf.saved_model.load(result.path)
    for size in ((48, 40), (H, W)):
        images = _images(2, seed=4, size=size)
        served = loaded.signatures["serving_default"](image=tf.constant(images))
        # Training's evaluation pipeline: bilinear resize, back to 0..255 pixels, normalize.
        resized = tf.image.resize(images, (H, W), method="bilinear").numpy()
        resized = np.clip(np.round(resized), 0, 255)
        reference = _keras_probabilities(model, resized, SPEC)
        assert np.abs(served["probabilities"].numpy() - reference).max() <= ATOL, size


# ---------------------------------------------------------------------- request checks
def _invalid_argument(fn, value):
    """The InvalidArgumentError message of ``fn(image=value)`` (fails if the call succeeds)."""
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn(image=tf.constant(value))
    return info.value.message


@pytest.mark.parametrize(
    "shape",
    [(2, H, W, 1), (2, H, W, 4), (2, H + 1, W, C), (2, H, W - 8, C), (H, W, C), (1, 2, H, W, C)],
    ids=["1_channel", "4_channels", "height", "width", "rank_3", "rank_5"],
)
def test_serving_signature_refuses_a_wrong_image_shape_inside_the_graph(served, shape):
    """A request TF Serving would pass straight to the graph: the graph names what is wrong."""
    received = f"Received: image.shape=[{', '.join(str(d) for d in shape)}]"
    for signature, dtype in (
        ("serving_default", np.uint8),
        ("excitations", np.uint8),
        ("serving_preprocessed", np.float32),
    ):
        message = _invalid_argument(served.loaded.signatures[signature], np.zeros(shape, dtype))
        assert f"`image` must have shape [batch, {H}, {W}, {C}]" in message, message
        assert received in message, message


def test_empty_batch_gives_empty_outputs_of_the_right_shapes(served):
    exported = served
    signatures = exported.loaded.signatures
    out = signatures["serving_default"](image=tf.zeros((0, H, W, C), tf.uint8))
    shapes = {k: (v.dtype, tuple(v.shape)) for k, v in out.items()}
    assert shapes == {
        "probabilities": (tf.float32, (0, CLASSES)),
        "class_id": (tf.int64, (0,)),
        "top_k_probabilities": (tf.float32, (0, 2)),
        "top_k_class_ids": (tf.int64, (0, 2)),
    }
    out = signatures["serving_preprocessed"](image=tf.zeros((0, H, W, C), tf.float32))
    assert tuple(out["probabilities"].shape) == (0, CLASSES)
    gates = signatures["excitations"](image=tf.zeros((0, H, W, C), tf.uint8))
    se_layers = [layer for layer in exported.model.layers if isinstance(layer, SqueezeExcite)]
    assert {k: tuple(v.shape) for k, v in gates.items()} == {
        layer.name: (0, layer.channels) for layer in se_layers
    }


@pytest.mark.slow
def test_dynamic_size_signature_checks_rank_and_channels_only(tmp_path):
    model = models.get("se_resnet18", input_shape=(H, W, C), classes=3)
    result = export.export_model(model, tmp_path, name="dyn", dynamic_size=True)
    fn = tf.saved_model.load(result.path).signatures["serving_default"]
    for shape in ((2, 20, 50, 1), (20, 50, C), (2, 0, 50, C)):
        message = _invalid_argument(fn, np.zeros(shape, np.uint8))
        assert f"`image` must have shape [batch, any, any, {C}] (uint8" in message, message
        assert f"Received: image.shape=[{', '.join(str(d) for d in shape)}]" in message
    assert fn(image=tf.zeros((2, 20, 50, C), tf.uint8))["probabilities"].shape == (2, 3)
    assert fn(image=tf.zeros((0, 20, 50, C), tf.uint8))["probabilities"].shape == (0, 3)
    assert "input  image: uint8 [-1, -1, -1, 3] (checked in the graph)" in export.format_result(
        result
    )


# ---------------------------------------------------------------------- CLI, crashes
@pytest.mark.integration
def test_cli_killed_export_leaves_no_version_then_rerun_succeeds(exported, tmp_path, capsys):
    base = str(tmp_path / "models")
    model_dir = os.path.join(base, "se_resnet18")
    # A real export process, SIGKILLed by itself right after the SavedModel is written into
    # its temporary directory (the step after it, write_extras, is replaced by the kill).
    script = textwrap.dedent(
        """
        import os, signal, sys
        from keras_se.export import exporter

        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)

        exporter.write_extras = killed
        exporter.export_model(sys.argv[1], sys.argv[2])
        """
    )
    proc = prefork.run(
        [sys.executable, "-c", script, exported.run_dir, base],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    temps = _temporaries(model_dir)
    assert len(temps) == 1, temps
    partial = temps[0]
    assert os.path.exists(os.path.join(model_dir, partial, "saved_model.pb"))
    # A poller sees no version; the partial SavedModel lies only in the temporary directory.
    assert _versions(model_dir) == []
    assert _temporaries(model_dir) == [partial]
    assert not os.path.exists(os.path.join(base, "models.config"))

    result = _cli(["export", exported.run_dir, "--base", base, "--name", "se_resnet18"], capsys)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _versions(model_dir) == ["1"] and _temporaries(model_dir) == []
    out = result.stdout
    assert f"Exported se_resnet18 version 1 to {os.path.join(model_dir, '1')}" in out
    assert "signature serving_default:" in out
    assert "input  image: uint8 [-1, 32, 32, 3]" in out
    assert f"output probabilities: float32 [-1, {CLASSES}]" in out
    assert "output class_id: int64 [-1]" in out
    assert "removed stale temporary directories" in out and partial in out


def _cli(argv, capsys):
    return run_main(capsys, *argv)


def _unwritable_base(tmp_path):
    if os.geteuid() != 0:
        ro = tmp_path / "readonly"
        ro.mkdir(mode=0o555)
        return str(ro / "models")
    # Root ignores permission bits; sysfs refuses new directories even to root.
    candidate = "/sys/keras_se_models"
    try:
        os.mkdir(candidate)
    except OSError:
        return candidate
    os.rmdir(candidate)
    pytest.skip("no unwritable directory available as root")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("missing", marks=pytest.mark.slow),
        "not_a_model",
        "truncated_model",
        "dir_without_model",
        "no_image_input",
        pytest.param("feature_extractor", marks=pytest.mark.slow),
        pytest.param("unwritable_base", marks=pytest.mark.slow),
        pytest.param("base_is_file", marks=pytest.mark.slow),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    base = str(tmp_path / "models")
    source = str(tmp_path / "run")
    needle = "source="
    if case == "not_a_model":
        source = str(tmp_path / "junk.keras")
        with open(source, "w") as f:
            f.write("not a zip")
        needle = "not a readable Keras file: not a zip archive"
    elif case == "truncated_model":
        # A real .keras file cut short (an interrupted copy): Keras itself says "File not found".
        model = models.get("se_resnet18", input_shape=(H, W, C), classes=3)
        model.save(str(tmp_path / "full.keras"))
        data = (tmp_path / "full.keras").read_bytes()
        os.remove(tmp_path / "full.keras")
        source = str(tmp_path / "cut.keras")
        with open(source, "wb") as f:
            f.write(data[: len(data) // 2])
        needle = "not a readable Keras file"
    elif case == "dir_without_model":
        os.makedirs(source)
    elif case == "no_image_input":
        inputs = keras.Input((10,), name="features")
        source = str(tmp_path / "tabular.keras")
        keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs)).save(source)
        needle = "exactly one image input"
    elif case == "feature_extractor":
        model = models.get("se_resnet18", input_shape=(H, W, C), include_top=False, pooling="avg")
        source = str(tmp_path / "features.keras")
        model.save(source)
        needle = "must end in a classifier"
    else:
        model = models.get("se_resnet18", input_shape=(H, W, C), classes=3)
        source = str(tmp_path / "net.keras")
        model.save(source)
        needle = "base="
        if case == "unwritable_base":
            base = _unwritable_base(tmp_path)
            needle = "not writable"
        else:
            base = str(tmp_path / "a_file")
            with open(base, "w") as f:
                f.write("x")
    before = sorted(os.listdir(tmp_path))
    result = _cli(["export", source, "--base", base], capsys)
    assert_usage_error(result, needle)
    assert sorted(os.listdir(tmp_path)) == before  # nothing partial written
    assert result.stdout == ""


def test_cli_existing_version_is_refused_and_untouched(exported, capsys):
    version_dir = exported.result.path
    stamp = os.stat(os.path.join(version_dir, "saved_model.pb")).st_mtime_ns
    model_dir = os.path.dirname(version_dir)
    before = sorted(os.listdir(model_dir))
    result = _cli(["export", exported.run_dir, "--base", exported.base, "--version", "1"], capsys)
    assert_usage_error(result, "Version 1 of 'se_resnet18' already exists")
    assert sorted(os.listdir(model_dir)) == before
    assert os.stat(os.path.join(version_dir, "saved_model.pb")).st_mtime_ns == stamp


def test_run_directory_of_a_newer_format_is_refused_before_anything_is_written(exported, tmp_path):
    """The run's config.json is read through RunDir (its format-version check included: a
    newer keras_se's directory is refused before anything is written). Served names:
    test_sources.py."""
    run_dir = str(tmp_path / "newer")
    shutil.copytree(os.path.join(exported.root, "run"), run_dir)
    config_path = os.path.join(run_dir, "config.json")
    config = json.load(open(config_path))
    json.dump({**config, "format_version": 99}, open(config_path, "w"))
    base = str(tmp_path / "models")
    with pytest.raises(UsageError, match="format version 99.*Received: source="):
        export.export_model(run_dir, base)
    assert not os.path.exists(base)
