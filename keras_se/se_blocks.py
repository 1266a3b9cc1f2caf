"""The SE blocks of a model: finding them, and reading what each one computes.

Hu et al. (2018): an SE block (Section 3) squeezes the feature maps ``U`` into channel
descriptors ``z`` (global pooling), excites them into per-channel gates ``s`` and rescales
``X~ = s · U``. This module finds the SE layers of any Keras model (every `SqueezeExcite`,
or any layer with the `keras_se.layers.SEGate` interface: ``features``, ``feature_input``,
``excitation``) and names them as the paper does (``SE_3_4``: stage 3, block 4, from the
``conv{stage}_block{index}`` names of `keras_se.models.naming` where every SE layer has one);
`excitation_model` reads every block's gates in one forward pass (the input of the
statistics of `keras_se.analysis`, Section 7.2); `walkthrough` records ``U``, ``z``, ``s`` and
``X~`` of one block on one image. Every public name is re-exported by `keras_se.analysis`.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_se.layers import SEGate
from keras_se.models.naming import parse_unit_name
from keras_se_core.errors import UsageError


# --------------------------------------------------------------------------- blocks
@dataclasses.dataclass(frozen=True)
class SEBlock:
    """One SE layer (a `SEGate`) of a model and where it sits.

    Attributes:
        name: the layer name.
        stage: the stage number: ``s`` of ``conv{s}_block{i}`` when every SE layer's
            name has that pattern (keras_se and keras.applications ResNets, so the
            paper's SE_2_3 is stage 2, index 3); otherwise stages are the runs of SE
            blocks at the same spatial resolution, numbered from 1 in network order.
        index: position within the stage, from 1.
        depth: position among all SE blocks in network order, from 1.
        channels: number of channels the block gates.
        layer: the SE layer itself (a `SqueezeExcite`, or any other `SEGate`).

    Example:
        >>> from keras_se import models
        >>> blocks = find_se_blocks(models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3))
        >>> blocks[3], blocks[3].label
        (SEBlock(name='conv3_block1_se', stage=3, index=1, depth=4, channels=32), 'SE_3_1')
    """

    name: str
    stage: int
    index: int
    depth: int
    channels: int
    layer: SEGate = dataclasses.field(repr=False, compare=False)

    @property
    def label(self):
        """The paper's short name, e.g. ``SE_3_4``."""
        return f"SE_{self.stage}_{self.index}"


def _spatial_shape(layer):
    shape = tuple(layer.feature_input.shape)
    return shape[1:-1] if layer.data_format == "channels_last" else shape[2:]


def _has_se(model):
    return any(
        isinstance(layer, SEGate) or (isinstance(layer, keras.Model) and _has_se(layer))
        for layer in model.layers
    )


def _nested_se_models(model):
    return [
        layer.name for layer in model.layers if isinstance(layer, keras.Model) and _has_se(layer)
    ]


def _places(layers):
    """``(stage, index)`` of each SE layer: from its unit's name, else by spatial resolution."""
    units = [parse_unit_name(layer.name) for layer in layers]
    if all(units):  # keras_se and keras.applications ResNets: conv{stage}_block{index}
        return [tuple(unit) for unit in units]
    places, stage, index, previous = [], 0, 0, object()
    for layer in layers:
        spatial = _spatial_shape(layer)
        if spatial != previous:
            stage, index, previous = stage + 1, 0, spatial
        index += 1
        places.append((stage, index))
    return places


def _by_stage(blocks):
    """``{stage: [blocks]}`` in network order."""
    stages = {}
    for block in blocks:
        stages.setdefault(block.stage, []).append(block)
    return stages


def find_se_blocks(model):
    """The SE layers (`SEGate`) of ``model`` in network order, as `SEBlock` records.

    Layers are found by type, whatever their names (registry models, models from
    `keras_se.add_squeeze_excite`, hand-built models).

    Args:
        model: a functional or Sequential ``keras.Model``.

    Returns:
        A list of `SEBlock`, shallowest first.

    Raises:
        ValueError: when the model has no SE layer at its top level.

    Example:
        >>> from keras_se import models
        >>> blocks = find_se_blocks(models.get("se_resnet18", input_shape=(32, 32, 3), classes=10))
        >>> [(b.name, b.stage, b.index, b.depth) for b in blocks][:3]
        [('conv2_block1_se', 2, 1, 1), ('conv2_block2_se', 2, 2, 2), ('conv3_block1_se', 3, 1, 3)]
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model. Received: model={model!r}")
    layers = [layer for layer in model.layers if isinstance(layer, SEGate)]
    if not layers:
        nested = _nested_se_models(model)
        hint = (
            f" Its nested model(s) {', '.join(nested)} hold SqueezeExcite layers: analyse "
            "that model itself."
            if nested
            else " Add SE blocks with keras_se.add_squeeze_excite or use an se_* registry model."
        )
        raise UsageError(
            f"`model` has no SqueezeExcite layers to analyse.{hint} Received: model={model.name!r}"
        )
    return [
        SEBlock(
            name=layer.name,
            stage=stage,
            index=index,
            depth=depth,
            channels=int(layer.channels),
            layer=layer,
        )
        for depth, (layer, (stage, index)) in enumerate(zip(layers, _places(layers)), start=1)
    ]


def default_blocks(blocks):
    """The paper's selection: the last block of each stage, then the final blocks.

    Hu et al. draw SE_2_3, SE_3_4, SE_4_6 (last of stages 2–4) and SE_5_1, SE_5_2,
    SE_5_3 (the last stage) for SE-ResNet-50; in general: the last block of every
    stage but the last, then the last stage's final (up to) three blocks.

    Args:
        blocks: `SEBlock` records (or `BlockStatistics`) in network order.

    Returns:
        The selected subset, in network order.

    Example:
        >>> from keras_se import models
        >>> blocks = find_se_blocks(models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3))
        >>> [b.label for b in default_blocks(blocks)]
        ['SE_2_3', 'SE_3_3', 'SE_4_1', 'SE_4_2', 'SE_4_3']
    """
    stages = _by_stage(blocks)
    order = list(stages)
    chosen = [stages[s][-1] for s in order[:-1]] + stages[order[-1]][-3:]
    return sorted(chosen, key=lambda b: b.depth)


def select_blocks(blocks, selection=None):
    """Resolves a user's block selection against ``blocks``.

    Args:
        blocks: `SEBlock` records (or `BlockStatistics`) in network order.
        selection: None or ``"all"`` (every block), ``"default"`` (`default_blocks`),
            or a list of layer names, paper labels (``"SE_3_2"``) or depths (int, from 1).

    Returns:
        The selected blocks in network order, without duplicates.

    Raises:
        ValueError: naming the first unknown entry and the known names.

    Example:
        >>> from keras_se import models
        >>> blocks = find_se_blocks(models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3))
        >>> [b.name for b in select_blocks(blocks, ["SE_3_2", 1])]
        ['conv2_block1_se', 'conv3_block2_se']
    """
    if selection is None or selection == "all":
        return list(blocks)
    if selection == "default":
        return default_blocks(blocks)
    if isinstance(selection, (str, int)):
        selection = [selection]
    by_name = {b.name: b for b in blocks}
    by_label = {b.label: b for b in blocks}
    by_depth = {b.depth: b for b in blocks}
    chosen = []
    for item in selection:
        key = item.strip() if isinstance(item, str) else item
        block = None
        if isinstance(key, str):
            block = by_name.get(key) or by_label.get(key)
            if block is None and key.isdigit():
                block = by_depth.get(int(key))
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            block = by_depth.get(int(key))
        if block is None:
            names = ", ".join(b.name for b in blocks)
            raise UsageError(
                f"`blocks` names an unknown SE block (give layer names, SE_<stage>_<index> "
                f"labels or depths 1..{len(blocks)}; known: {names}). Received: blocks={item!r}"
            )
        if block not in chosen:
            chosen.append(block)
    return sorted(chosen, key=lambda b: b.depth)


# --------------------------------------------------------------------------- gates
class _ExcitationProbe(keras.layers.Layer):
    """Outputs the gate ``s`` (float32, (B, C)) of one SE layer for that layer's input.

    A transient layer for the analysis model only (never saved); it reuses the SE
    layer's own `SEGate.excitation`, so the analysis sees exactly its gate.
    """

    def __init__(self, se_layer, **kwargs):
        super().__init__(**kwargs)
        self.se_layer = se_layer

    def call(self, inputs):
        return ops.cast(self.se_layer.excitation(inputs), "float32")

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape[0], (list, tuple)) else input_shape
        return (shape[0], self.se_layer.channels)  # for x and for [x, means]


def excitation_model(model, blocks=None):
    """A model from ``model``'s input to the excitations of the given SE blocks.

    One forward pass gives every block's gate (a list of ``(batch, channels)``
    float32 arrays), in the order of ``blocks``.

    Args:
        model: a keras.Model with SE layers and one input.
        blocks: `SEBlock` records (default: all of `find_se_blocks`).

    Returns:
        A ``keras.Model``.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> probe = excitation_model(model, find_se_blocks(model)[:2])
        >>> [g.shape for g in probe.predict(np.zeros((4, 16, 16, 3), "float32"), verbose=0)]
        [(4, 16), (4, 16)]
    """
    blocks = find_se_blocks(model) if blocks is None else list(blocks)
    if len(model.inputs) != 1:
        raise UsageError(
            f"`model` must have exactly one (image) input. Received: {len(model.inputs)} inputs"
        )
    outputs = []
    for block in blocks:
        try:
            tensor = block.layer.input
        except (AttributeError, ValueError) as err:
            raise UsageError(
                "SE layers used more than once (shared) cannot be analysed. "
                f"Received: layer {block.name!r}"
            ) from err
        outputs.append(_ExcitationProbe(block.layer, name=f"{block.name}_excitation")(tensor))
    return keras.Model(model.inputs, outputs, name=f"{model.name}_excitations")


# --------------------------------------------------------------------------- one image
@dataclasses.dataclass
class Walkthrough:
    """One SE block on one image, step by step (Section 3 of the paper), channels last.

    Attributes:
        block: the `SEBlock`.
        image: ``(H, W, 3)`` the preprocessed model input.
        features: ``(h, w, C)`` U, the feature maps entering the block.
        squeeze: ``(C,)`` z, U pooled over space (the layer's ``squeeze``: avg or max).
        excitation: ``(C,)`` s, the gate.
        scaled: ``(h, w, C)`` X~ = s · U, the block's output as the model computes it.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> image = np.random.default_rng(0).random((16, 16, 3), dtype="float32")
        >>> step = walkthrough(model, image, block="SE_3_3")
        >>> step.features.shape, step.squeeze.shape, step.excitation.shape, step.scaled.shape
        ((8, 8, 32), (32,), (32,), (8, 8, 32))
    """

    block: SEBlock
    image: np.ndarray
    features: np.ndarray
    squeeze: np.ndarray
    excitation: np.ndarray
    scaled: np.ndarray


def walkthrough(model, image, *, block=None):
    """Runs one image through ``model`` and records U, z, s and X~ of one SE block.

    Args:
        model: a keras.Model with SE layers.
        image: one preprocessed image ``(H, W, C)`` (or a batch of one).
        block: layer name, ``SE_<stage>_<index>`` label or depth of the SE block;
            None picks `default_walkthrough_block`.

    Returns:
        A `Walkthrough`.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
        >>> w = walkthrough(model, np.random.rand(16, 16, 3).astype("float32"), block="conv3_block1_se")
        >>> w.features.shape, w.excitation.shape
        ((8, 8, 128), (128,))
    """
    blocks = find_se_blocks(model)
    chosen = (
        default_walkthrough_block(blocks) if block is None else select_blocks(blocks, [block])[0]
    )
    image = np.asarray(ops.convert_to_numpy(image), "float32")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[0] != 1:
        raise UsageError(
            f"`image` must be one image (H, W, C) or a batch of one. Received: shape {image.shape}"
        )
    layer = chosen.layer
    probe = keras.Model(model.inputs, [layer.input, layer.output])
    inputs, scaled = probe.predict_on_batch(image)
    scaled = np.asarray(scaled, "float32")
    # U, the map the gate scales, as the layer defines it (SEGate.features: a SqueezeExcite's input).
    features = np.asarray(ops.convert_to_numpy(layer.features(inputs)), "float32")
    excitation = np.asarray(ops.convert_to_numpy(layer.excitation(inputs)), "float32")[0]
    channels_first = layer.data_format == "channels_first"
    if channels_first:  # (1, C, h, w) -> (1, h, w, C)
        features = np.moveaxis(features, 1, -1)
        scaled = np.moveaxis(scaled, 1, -1)
    axes = tuple(range(1, features.ndim - 1))
    pooled = features.mean(axis=axes) if layer.squeeze == "avg" else features.max(axis=axes)
    shown = image[0]
    if keras.config.image_data_format() == "channels_first" and shown.shape[0] in (1, 3):
        shown = np.moveaxis(shown, 0, -1)
    return Walkthrough(
        block=chosen,
        image=shown,
        features=features[0],
        squeeze=pooled[0],
        excitation=excitation,
        scaled=scaled[0],
    )


def default_walkthrough_block(blocks):
    """The block drawn by default in the per-image walkthrough: the last of the second stage.

    A middle block: its feature maps are still large enough to look at (16x16 on a
    32x32 CIFAR-stem ResNet) and its gates already differ between channels. A model
    with one stage gets its last block.

    Example:
        >>> from keras_se import models
        >>> blocks = find_se_blocks(models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3))
        >>> default_walkthrough_block(blocks).label
        'SE_3_3'
    """
    stages = _by_stage(blocks)
    order = list(stages)
    return stages[order[1] if len(order) > 1 else order[0]][-1]
