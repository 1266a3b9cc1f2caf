"""Excitation statistics of SE blocks: the paper's "role of excitation" analysis.

Hu et al. (2018), Section 7.2 ("Role of Excitation"): the average excitation of each
channel, per class, over images of a few classes, for SE blocks at increasing depth.
The paper finds nearly class-independent excitations in early blocks and increasingly
class-specific ones in deeper blocks (with the last blocks of SE-ResNet-50 saturating
near 1). This module measures it for any Keras model with SE layers (every `SqueezeExcite`,
or any layer with the `keras_se.layers.SEGate` interface), found by `find_se_blocks`.

The excitations ``s`` of every SE block are computed in one pass per batch (one
multi-output model whose outputs are the gates) and folded into streaming per-class
moments (count, mean and sum of squared deviations per channel, float64, merged
batch by batch with Chan et al.'s parallel update), so nothing of size
``images × channels`` is held in memory and the statistics below are exact.

Class-specificity of a block (the correlation ratio η², per channel, averaged):

    η²_j = Σ_c n_c (μ_cj − μ_j)² / Σ_i (s_ij − μ_j)²

for channel ``j``, where ``s_ij`` is the excitation of image ``i``, ``μ_cj`` the mean
over the ``n_c`` images of class ``c`` and ``μ_j`` the mean over all images: the
share of the variance of the channel's excitation that lies between the class means.
η²_j is in [0, 1]: 0 means knowing the class does not change the channel's expected
excitation (a class-agnostic channel), 1 means the excitation is fully determined by
the class (identical within a class, different across classes). A block's
``specificity`` is the mean of η²_j over the channels whose excitation varies at all
(variance above 1e-12: exactly saturated gates carry no information); it is None
(NaN) when no channel varies. With few images per class η² is biased upwards (about
``(classes − 1) / (images − 1)`` for pure noise), so compare blocks measured on the
same images.
"""

from __future__ import annotations

import dataclasses
import math

import keras
import numpy as np
from keras import ops

# The SE blocks and their probes live in keras_se.se_blocks; re-exported as this module's API.
from keras_se.se_blocks import (
    SEBlock,
    Walkthrough,
    default_blocks,
    default_walkthrough_block,
    excitation_model,
    find_se_blocks,
    select_blocks,
    walkthrough,
)
from keras_se_core.errors import UsageError
from keras_se_core.fileio import write_json
from keras_se_core.validation import check_optional, check_positive_int

__all__ = [
    "VARIANCE_TOL",
    "SPECIFICITY_DEFINITION",
    "SEBlock",
    "find_se_blocks",
    "default_blocks",
    "select_blocks",
    "excitation_model",
    "BlockStatistics",
    "ExcitationAnalysis",
    "analyze_excitations",
    "analyze_gates",
    "Walkthrough",
    "walkthrough",
    "default_walkthrough_block",
]

#: Channels whose excitation variance is at or below this are left out of the mean η².
VARIANCE_TOL = 1e-12
SPECIFICITY_DEFINITION = (
    "mean over channels (with nonzero variance) of the correlation ratio "
    "eta^2 = sum_c n_c (mu_c - mu)^2 / sum_i (s_i - mu)^2, in [0, 1]: "
    "0 = class-agnostic excitations, 1 = excitations determined by the class"
)


# --------------------------------------------------------------------------- statistics
class _ClassMoments:
    """Per-class count, mean and sum of squared deviations of (C,) vectors, streamed.

    Batches are merged with the parallel update of Chan, Golub and LeVeque (1979),
    which stays exact in float64 where ``Σ s² − n μ²`` would cancel for gates near 1.
    """

    def __init__(self, channels, num_classes=0):
        self.channels = channels
        self.count = np.zeros(num_classes, "float64")
        self.mean = np.zeros((num_classes, channels), "float64")
        self.m2 = np.zeros((num_classes, channels), "float64")

    def _grow(self, num_classes):
        extra = num_classes - len(self.count)
        if extra > 0:
            self.count = np.concatenate([self.count, np.zeros(extra)])
            self.mean = np.concatenate([self.mean, np.zeros((extra, self.channels))])
            self.m2 = np.concatenate([self.m2, np.zeros((extra, self.channels))])

    def update(self, values, labels):
        values = np.asarray(values, "float64")  # (B, C)
        self._grow(int(labels.max()) + 1)
        onehot = np.zeros((len(labels), len(self.count)))
        onehot[np.arange(len(labels)), labels] = 1.0  # (B, K)
        n_b = onehot.sum(axis=0)  # (K,)
        present = n_b > 0
        mean_b = np.zeros_like(self.mean)
        mean_b[present] = (onehot.T @ values)[present] / n_b[present, None]
        m2_b = onehot.T @ (values - mean_b[labels]) ** 2  # (K, C)
        n = self.count + n_b
        delta = mean_b - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.where(n > 0, n_b / n, 0.0)[:, None]
            cross = np.where(n > 0, self.count * n_b / n, 0.0)[:, None]
        self.mean = self.mean + delta * weight
        self.m2 = self.m2 + m2_b + delta**2 * cross
        self.count = n


@dataclasses.dataclass
class BlockStatistics:
    """The excitation statistics of one SE block over a dataset.

    Attributes:
        name, stage, index, depth, channels: as in `SEBlock`.
        class_counts: ``(K,)`` images per class.
        class_means: ``(K, C)`` mean excitation per class and channel (NaN for a
            class without images).
        mean: ``(C,)`` mean excitation over all images.
        std: ``(C,)`` standard deviation over all images.
        channel_specificity: ``(C,)`` η² per channel (NaN where the excitation is constant).
        specificity: the block's class-specificity, the mean of ``channel_specificity``
            over varying channels, in [0, 1] (NaN when no channel varies).
        class_spread: how far the class means are from the overall mean, in excitation
            units: ``sqrt(mean_j Σ_c n_c (μ_cj − μ_j)² / N)`` (the root mean square over
            channels of the between-class standard deviation). η² is scale-free; this
            says whether the class differences are large in absolute terms.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> images = np.random.default_rng(0).random((12, 16, 16, 3), dtype="float32")
        >>> result = analyze_excitations(model, (images, np.arange(12) % 3),
        ...                              class_names=["a", "b", "c"], verbose=0)
        >>> stats = result.block("SE_4_3")
        >>> stats.name, stats.class_means.shape, stats.mean.shape
        ('conv4_block3_se', (3, 64), (64,))
    """

    name: str
    stage: int
    index: int
    depth: int
    channels: int
    class_counts: np.ndarray
    class_means: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    channel_specificity: np.ndarray
    specificity: float
    class_spread: float = float("nan")

    @property
    def label(self):
        return f"SE_{self.stage}_{self.index}"

    def to_dict(self):
        return {
            "name": self.name,
            "label": self.label,
            "stage": self.stage,
            "index": self.index,
            "depth": self.depth,
            "channels": self.channels,
            "specificity": _json_float(self.specificity),
            "class_spread": _json_float(self.class_spread),
            "mean": _json_list(self.mean),
            "std": _json_list(self.std),
            "channel_specificity": _json_list(self.channel_specificity),
            "class_means": [_json_list(row) for row in self.class_means],
        }

    @classmethod
    def from_dict(cls, data, class_counts):
        def arr(values):
            return np.array([np.nan if v is None else v for v in values], "float64")

        return cls(
            name=data["name"],
            stage=int(data["stage"]),
            index=int(data["index"]),
            depth=int(data["depth"]),
            channels=int(data["channels"]),
            class_counts=np.asarray(class_counts, "float64"),
            class_means=np.stack([arr(row) for row in data["class_means"]]),
            mean=arr(data["mean"]),
            std=arr(data["std"]),
            channel_specificity=arr(data["channel_specificity"]),
            specificity=np.nan if data["specificity"] is None else float(data["specificity"]),
            class_spread=np.nan
            if data.get("class_spread") is None
            else float(data["class_spread"]),
        )


def _json_float(value, digits=6):
    value = float(value)
    return None if math.isnan(value) else round(value, digits)


def _json_list(values, digits=6):
    return [_json_float(v, digits) for v in np.asarray(values).ravel()]


def _finalize(block, moments, num_classes):
    moments._grow(num_classes)
    count, means, m2 = moments.count, moments.mean, moments.m2
    total = count.sum()
    mean = (count[:, None] * means).sum(axis=0) / total  # (C,)
    between = (count[:, None] * (means - mean) ** 2).sum(axis=0)
    total_ss = between + m2.sum(axis=0)
    varies = total_ss / total > VARIANCE_TOL
    eta2 = np.full(block.channels, np.nan)
    eta2[varies] = np.clip(between[varies] / total_ss[varies], 0.0, 1.0)
    class_means = np.where(count[:, None] > 0, means, np.nan)
    return BlockStatistics(
        name=block.name,
        stage=block.stage,
        index=block.index,
        depth=block.depth,
        channels=block.channels,
        class_counts=count.copy(),
        class_means=class_means,
        mean=mean,
        std=np.sqrt(total_ss / total),
        channel_specificity=eta2,
        specificity=float(np.mean(eta2[varies])) if varies.any() else float("nan"),
        class_spread=float(np.sqrt(np.mean(between / total))),
    )


@dataclasses.dataclass
class ExcitationAnalysis:
    """The result of `analyze_excitations`: statistics per SE block, in network order.

    Attributes:
        model_name: the analysed model's name.
        class_names: one name per class index.
        class_counts: ``(K,)`` images per class.
        num_images: images analysed.
        blocks: `BlockStatistics` per analysed SE block.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet20_cifar", input_shape=(16, 16, 3), classes=3)
        >>> images = np.random.default_rng(0).random((12, 16, 16, 3), dtype="float32")
        >>> result = analyze_excitations(model, (images, np.arange(12) % 3),
        ...                              class_names=["a", "b", "c"], verbose=0)
        >>> result.num_images, result.class_counts.tolist(), len(result.blocks)
        (12, [4.0, 4.0, 4.0], 9)
    """

    model_name: str
    class_names: list
    class_counts: np.ndarray
    num_images: int
    blocks: list

    def block(self, name):
        """The `BlockStatistics` of the block with layer name (or label) ``name``."""
        for stats in self.blocks:
            if name in (stats.name, stats.label):
                return stats
        raise UsageError(
            f"No analysed SE block named {name!r}; known: {', '.join(b.name for b in self.blocks)}"
        )

    def to_dict(self):
        return {
            "model": self.model_name,
            "num_images": self.num_images,
            "class_names": list(self.class_names),
            "class_counts": [int(c) for c in self.class_counts],
            "specificity_definition": SPECIFICITY_DEFINITION,
            "blocks": [b.to_dict() for b in self.blocks],
        }

    def save_json(self, path):
        """Writes `to_dict` as JSON to ``path`` (atomically); returns the path."""
        write_json(path, self.to_dict(), indent=1, allow_nan=False)
        return path

    @classmethod
    def from_dict(cls, data):
        counts = np.asarray(data["class_counts"], "float64")
        return cls(
            model_name=data["model"],
            class_names=list(data["class_names"]),
            class_counts=counts,
            num_images=int(data["num_images"]),
            blocks=[BlockStatistics.from_dict(b, counts) for b in data["blocks"]],
        )

    def format_table(self):
        """A short text table: block, label, depth, channels, specificity, class spread."""
        width = max(len("block"), *(len(b.name) for b in self.blocks))
        lines = [
            f"{'block':<{width}}  {'label':<8} {'depth':>5} {'channels':>8} "
            f"{'specificity':>11} {'spread':>7}"
        ]
        for b in self.blocks:
            spec = "n/a" if math.isnan(b.specificity) else f"{b.specificity:.4f}"
            spread = "n/a" if math.isnan(b.class_spread) else f"{b.class_spread:.4f}"
            lines.append(
                f"{b.name:<{width}}  {b.label:<8} {b.depth:>5} {b.channels:>8} {spec:>11} {spread:>7}"
            )
        return "\n".join(lines)


def probe_gates(probe, images, *, pad_to=None):
    """The gates ``s`` of a batch of ``images`` from an `excitation_model` probe: one
    ``(N, C)`` NumPy array per block.

    A batch shorter than ``pad_to`` is padded with copies of its first image, whose gates are
    dropped, so that the probe runs on one batch shape and is traced once (a short last batch
    traced it again: 1.1 → 0.6 s for the first analysis of a CIFAR SE-ResNet-20). Images are
    independent in inference mode.
    """
    count = len(images)
    if pad_to is not None and count < pad_to:
        images = np.concatenate([images, np.repeat(images[:1], pad_to - count, axis=0)])
    gates = probe.predict_on_batch(images)
    if not isinstance(gates, (list, tuple)):
        gates = [gates]
    return [np.asarray(gate)[:count] for gate in gates]


def _batches(data, batch_size):
    """Yields ``(images, labels)`` batches from a dataset, an iterable or an array pair."""
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        images, labels = data
        if len(images) != len(labels):
            raise UsageError(
                f"`data` images and labels differ in length: {len(images)} vs {len(labels)}"
            )
        for start in range(0, len(images), batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]
        return
    for element in data:
        if not (isinstance(element, (tuple, list)) and len(element) == 2):
            raise UsageError(
                "`data` must yield (images, labels) batches; the labels are needed for the "
                f"per-class statistics. Received an element of type {type(element).__name__}"
            )
        yield element


def _num_batches(data, batch_size):
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape"):
        return math.ceil(len(data[0]) / batch_size)
    cardinality = getattr(data, "cardinality", None)
    if cardinality is not None:
        n = int(cardinality())
        return n if n >= 0 else None
    try:
        return len(data)
    except TypeError:
        return None


def _labels_to_indices(labels):
    labels = np.asarray(ops.convert_to_numpy(labels))
    if labels.ndim == 2 and labels.shape[1] > 1:  # one-hot
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise UsageError("`data` labels must be integer class indices or one-hot vectors.")
    return labels.astype("int64")


def analyze_excitations(
    model,
    data,
    *,
    blocks=None,
    class_names=None,
    batch_size=64,
    max_images=None,
    verbose=1,
):
    """Per-class excitation statistics and class-specificity of a model's SE blocks.

    Args:
        model: a keras.Model with SE layers (any names; see `find_se_blocks`).
        data: a ``tf.data.Dataset`` (or any iterable) of ``(images, labels)`` batches,
            already preprocessed for the model (e.g. `keras_se.data.make_dataset` with
            ``training=False``), or a pair of arrays ``(images, labels)``.
            Labels are class indices (or one-hot rows).
        blocks: which SE blocks: None/``"all"``, ``"default"`` or a list (see `select_blocks`).
        class_names: names of the classes; their number fixes the class count, and a
            label outside ``[0, len(class_names))`` is an error. None: ``"0", "1", ...``
            up to the largest label seen.
        batch_size: batch size when ``data`` is an array pair.
        max_images: stop after this many images (None: the whole dataset).
        verbose: 1 shows a progress bar (`keras.utils.Progbar`), 0 is silent.

    Returns:
        An `ExcitationAnalysis`.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
        >>> x = np.random.rand(12, 16, 16, 3).astype("float32")
        >>> y = np.arange(12) % 3
        >>> result = analyze_excitations(model, (x, y), verbose=0)
        >>> [b.name for b in result.blocks][:2], result.blocks[0].class_means.shape
        (['conv2_block1_se', 'conv2_block2_se'], (3, 64))
        >>> 0.0 <= result.blocks[0].specificity <= 1.0
        True
    """
    max_images = check_optional(check_positive_int, "max_images", max_images)
    batch_size = check_positive_int("batch_size", batch_size)
    chosen = select_blocks(find_se_blocks(model), blocks)
    num_classes = len(class_names) if class_names is not None else 0
    probe = excitation_model(model, chosen)
    moments = [_ClassMoments(b.channels, num_classes) for b in chosen]
    target = _num_batches(data, batch_size)
    if max_images is not None and isinstance(data, tuple) and target is not None:
        target = min(target, math.ceil(max_images / batch_size))
    progbar = keras.utils.Progbar(target, unit_name="batch") if verbose else None
    seen = step = 0
    pad_to = None
    for images, labels in _batches(data, batch_size):
        labels = _labels_to_indices(labels)
        if max_images is not None and seen + len(labels) > max_images:
            keep = max_images - seen
            images, labels = images[:keep], labels[:keep]
        if len(labels) == 0:
            break
        if labels.min() < 0 or (class_names is not None and labels.max() >= num_classes):
            bad = labels.min() if labels.min() < 0 else labels.max()
            raise UsageError(
                f"A label is outside the class range [0, {num_classes}) of `class_names`. "
                f"Received: label={int(bad)}"
            )
        if step == 0:  # every batch runs at the first one's size: the probe is traced once
            pad_to = len(labels)
        for acc, gate in zip(moments, probe_gates(probe, images, pad_to=pad_to)):
            acc.update(gate, labels)
        seen += len(labels)
        step += 1
        if progbar is not None:
            progbar.update(step)
        if max_images is not None and seen >= max_images:
            break
    if progbar is not None and step != target:  # stopped early, or no known length
        progbar.update(step, finalize=True)
    if seen == 0:
        raise UsageError("`data` yielded no images to analyse.")
    num_classes = max(num_classes, *(len(m.count) for m in moments))
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    stats = [_finalize(b, m, num_classes) for b, m in zip(chosen, moments)]
    return ExcitationAnalysis(
        model_name=model.name,
        class_names=list(class_names),
        class_counts=stats[0].class_counts,
        num_images=seen,
        blocks=stats,
    )


def analyze_gates(model_name, blocks, gates, labels, *, class_names):
    """The `ExcitationAnalysis` of excitations already computed, one ``(N, C)`` array per block.

    For callers that run the `excitation_model` themselves and keep the gates (e.g. to
    draw their histograms, as `keras_se.excitation_log` does during training): the same
    statistics as `analyze_excitations` on the same images, without a second pass.

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
        >>> blocks = find_se_blocks(model)
        >>> x, y = np.random.rand(6, 16, 16, 3).astype("float32"), np.arange(6) % 3
        >>> gates = excitation_model(model, blocks).predict_on_batch(x)
        >>> analyze_gates(model.name, blocks, gates, y, class_names=["a", "b", "c"]).num_images
        6
    """
    labels = _labels_to_indices(labels)
    stats = []
    for block, gate in zip(blocks, gates):
        moments = _ClassMoments(block.channels, len(class_names))
        moments.update(np.asarray(gate), labels)
        stats.append(_finalize(block, moments, len(class_names)))
    return ExcitationAnalysis(
        model_name=model_name,
        class_names=list(class_names),
        class_counts=stats[0].class_counts,
        num_images=len(labels),
        blocks=stats,
    )
