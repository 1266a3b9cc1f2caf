"""Model-surface argument errors (keras_se/models/common.py) and the import direction.

The import direction (layers → blocks → models → training/... → cli): the modules
below the training code import nothing above themselves, at module level or inside
functions; read from their source with `ast`, independently of what runs.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

from keras_se import models

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


#: Each low module and the keras_se modules it may import (prefixes).
ALLOWED = {
    "keras_se/layers.py": ("keras_se_core",),
    "keras_se/blocks.py": ("keras_se.layers", "keras_se_core"),
    "keras_se/weights.py": ("keras_se.layers", "keras_se_core"),
}
MODELS_ALLOWED = ("keras_se.models", "keras_se.blocks", "keras_se.layers", "keras_se.weights",
                  "keras_se_core")  # fmt: skip


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
