"""Model-surface argument errors (keras_se/models/common.py) and the import direction.

The import direction (layers → blocks → models → training/... → cli): the modules
below the training code import nothing above themselves, at module level or inside
functions; read from their source with `ast`, independently of what runs.
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import keras
import numpy as np
import pytest

from keras_se import models
from tests.conftest import forward

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("builder", [models.SEResNet18, models.SEResNet20, models.SEInceptionV3])
def test_missing_weights_file_says_it_does_not_exist(builder):
    with pytest.raises(ValueError) as info:
        builder(weights="missing.h5")
    message = str(info.value)
    assert "does not exist" in message and "weights='missing.h5'" in message
    assert "`weights`" in message


def test_input_too_small_for_the_imagenet_stem_names_the_stem_that_works():
    with pytest.raises(ValueError) as info:
        models.SEResNet50(input_shape=(16, 16, 3), stem="imagenet")
    message = str(info.value)
    assert "stem='imagenet'" in message and "stem='cifar'" in message
    assert "at least 32x32" in message and "input_shape=(16, 16, 3)" in message
    assert models.SEResNet50(input_shape=(16, 16, 3), stem="cifar", classes=3).output_shape == (
        None, 3
    )  # fmt: skip


@pytest.mark.parametrize("builder", [models.SEResNet18, models.ResNet20, models.InceptionV3])
@pytest.mark.parametrize("shape", [(32, 32, 0), (32, 0, 3), (32, 32, -1)])
def test_zero_or_negative_sizes_are_refused_at_build(builder, shape):
    with pytest.raises(ValueError) as info:
        builder(input_shape=shape)
    assert "`input_shape`" in str(info.value) and f"input_shape={shape!r}" in str(info.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(se_ratio=-1), "se_ratio=-1"),
        (dict(se_ratio=True), "se_ratio=True"),
        (dict(se_mode="inside"), "se_mode='inside'"),
        (dict(pooling="sum", include_top=False), "pooling='sum'"),
        (dict(classes=2.5), "classes=2.5"),
        (dict(include_top=1), "include_top=1"),
    ],
)
def test_shared_checks_name_the_argument(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        models.SEResNet20(**kwargs)


def test_every_builder_is_a_plain_function_with_its_whole_signature():
    """Real ``def``s (no synthesised signature): keyword-only arguments, the registry name
    as the default ``name``, ``se`` from the ``se_ratio`` default."""
    from keras_se_core.choices import DEFAULT_RATIO

    for name in models.names():
        builder = models.builder(name)
        assert inspect.isfunction(builder) and builder.__code__.co_name == builder.__name__
        assert "__signature__" not in vars(builder) and not hasattr(builder, "__wrapped__")
        params = inspect.signature(builder).parameters
        assert all(p.kind is p.KEYWORD_ONLY for p in params.values()), name
        assert params["name"].default == name == builder.registry_name
        assert builder.se == (params["se_ratio"].default == DEFAULT_RATIO), name
    assert list(inspect.signature(models.SEResNet50).parameters) == [
        "include_top", "weights", "input_tensor", "input_shape", "pooling", "classes",
        "classifier_activation", "name", "se_ratio", "features_only", "se_mode", "se_kwargs",
        "stride_in_1x1", "stem", "stem_pool",
    ]  # fmt: skip
    assert inspect.signature(models.SEWideResNet16_8).parameters["dropout"].default == 0.0
    assert inspect.signature(models.ResNet20).parameters["classes"].default == 10
    with pytest.raises(TypeError, match="positional"):
        models.SEResNet18((32, 32, 3))


#: Each low module and the keras_se modules it may import (prefixes).
ALLOWED = {
    "keras_se/layers.py": ("keras_se_core",),
    "keras_se/blocks.py": ("keras_se.layers", "keras_se_core"),
    "keras_se/weights.py": ("keras_se.layers", "keras_se.state_dicts", "keras_se_core"),
    "keras_se/state_dicts.py": ("keras_se_core",),
}
MODELS_ALLOWED = ("keras_se.models", "keras_se.blocks", "keras_se.layers", "keras_se.weights",
                  "keras_se.state_dicts", "keras_se_core")  # fmt: skip


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            if node.module == "keras_se":  # from keras_se import weights
                yield from (f"keras_se.{alias.name}" for alias in node.names)


def test_lower_modules_never_import_higher_ones():
    files = dict(ALLOWED)
    files.update({
        str(p.relative_to(ROOT)): MODELS_ALLOWED for p in (ROOT / "keras_se/models").glob("*.py")
    })  # fmt: skip
    wrong = []
    for rel, allowed in files.items():
        for module in _imports(ROOT / rel):
            if not module.startswith("keras_se") or module == "keras_se":
                continue
            if not module.startswith(allowed):
                wrong.append(f"{rel} imports {module}")
    assert not wrong, wrong


# ---------------------------------------------------------------- features_only
#: name, builder kwargs, expected pyramid {key: (H, W, C)} (closed forms: stride 2**k,
#: stage widths; Inception-v3 at 75x75 through its valid paddings 37→35→17→15 | 7 | 3 | 1),
#: and the layer of the full model each level must equal.
FEATURE_CASES = [
    (
        "se_resnet18",
        dict(input_shape=(64, 64, 3)),
        {"P2": (16, 16, 64), "P3": (8, 8, 128), "P4": (4, 4, 256), "P5": (2, 2, 512)},
        {f"P{s}": f"conv{s}_block2_out" for s in range(2, 6)},
    ),
    (
        "se_resnet18",  # the CIFAR stem keeps stride 1: levels 0-3
        dict(input_shape=(32, 32, 3)),
        {"P0": (32, 32, 64), "P1": (16, 16, 128), "P2": (8, 8, 256), "P3": (4, 4, 512)},
        {f"P{s - 2}": f"conv{s}_block2_out" for s in range(2, 6)},
    ),
    (
        "se_resnext26_32x4d",
        dict(input_shape=(64, 64, 3)),
        {"P2": (16, 16, 256), "P3": (8, 8, 512), "P4": (4, 4, 1024), "P5": (2, 2, 2048)},
        {f"P{s}": f"conv{s}_block2_out" for s in range(2, 6)},
    ),
    (
        "se_resnet20_cifar",
        dict(input_shape=(32, 32, 3)),
        {"P0": (32, 32, 16), "P1": (16, 16, 32), "P2": (8, 8, 64)},
        {f"P{s - 2}": f"conv{s}_block3_out" for s in range(2, 5)},
    ),
    (
        "se_wrn16_8",  # pre-activation: the last level is after post_bn's ReLU
        dict(input_shape=(16, 16, 3)),
        {"P0": (16, 16, 128), "P1": (8, 8, 256), "P2": (4, 4, 512)},
        {"P0": "conv2_block2_out", "P1": "conv3_block2_out"},
    ),
    (
        "se_inception_v3",
        dict(input_shape=(75, 75, 3)),
        {"P2": (15, 15, 192), "P3": (7, 7, 288), "P4": (3, 3, 768), "P5": (1, 1, 2048)},
        {"P2": "activation_4", "P3": "mixed2_se", "P4": "mixed7_se", "P5": "mixed10_se"},
    ),
]


def _shapes(model):
    return {key: tuple(tensor.shape[1:]) for key, tensor in model.output.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, kwargs, expected, layers",
    FEATURE_CASES,
    ids=[f"{c[0]}-{c[1]['input_shape'][0]}" for c in FEATURE_CASES],
)
def test_features_only_outputs_the_full_models_stage_maps(name, kwargs, expected, layers, tmp_path):
    full = models.get(name, classes=5, **kwargs)
    path = str(tmp_path / "full.weights.h5")
    full.save_weights(path)  # a file with the classifier: loads with include_top=True
    backbone = models.get(name, classes=5, features_only=True, weights=path, **kwargs)
    assert _shapes(backbone) == expected
    assert list(backbone.output) == sorted(expected, key=lambda k: int(k[1:]))
    assert not any(layer.name == "predictions" for layer in backbone.layers)

    last = max(expected, key=lambda k: int(k[1:]))
    reference = keras.Model(
        full.input,
        {**{k: full.get_layer(n).output for k, n in layers.items()},
         last: full.get_layer("avg_pool").input},  # the map the classifier pools
    )  # fmt: skip
    x = np.random.default_rng(0).uniform(-1, 1, (2, *kwargs["input_shape"])).astype("float32")
    got, want = forward(backbone, x), forward(reference, x)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_features_only_defaults_to_any_input_size_and_round_trips(tmp_path):
    backbone = models.SEResNet18(features_only=True)
    assert backbone.input.shape == (None, None, None, 3)
    for size in ((64, 64), (96, 64)):
        out = forward(backbone, np.zeros((1, *size, 3), "float32"))
        assert out["P5"].shape == (1, size[0] // 32, size[1] // 32, 512)
        assert out["P2"].shape == (1, size[0] // 4, size[1] // 4, 64)
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    want, got = forward(backbone, x), forward(loaded, x)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("builder", [models.SEResNet18, models.SEResNet20, models.SEInceptionV3])
def test_features_only_bad_arguments_name_the_argument(builder):
    with pytest.raises(ValueError, match=r"`pooling`.*pooling='avg'"):
        builder(features_only=True, pooling="avg")
    with pytest.raises((ValueError, TypeError), match=r"features_only='yes'"):
        builder(features_only="yes")
