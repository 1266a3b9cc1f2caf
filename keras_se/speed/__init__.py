"""Every speed path of keras_se, in one place, applied to a model where speed matters.

keras_se's builders make the textbook graph (Keras's layers plus `keras_se.SqueezeExcite`):
that graph is what is saved, exported, analysed, converted and fine-tuned. This package
holds everything that makes it faster, and no other module of keras_se knows what is in
it: the trainer and the benchmarks call `accelerate` on a built model and run its fast
twin, which shares the textbook model's variables.

* `accelerate` (`keras_se.speed.rewrite`): the rewrite, and `bottleneck_tails`, what it fuses.
* `BatchNormSqueezeExcite` (`keras_se.speed.tail`): ``SE(BN(x))`` as one affine pass.
* `PointwiseConv2D`, `GroupedConv2D`, `FusedBatchNormalization` (`keras_se.speed.fast_layers`):
  Keras layers with TensorFlow kernels.
* `keras_se.speed.kernels`: the TensorFlow ops and custom gradients behind them.
* `load_fused_weights`: weights files of releases that built the fused tail into models.

Example:
    >>> from keras_se import models, speed
    >>> model = models.get("se_resnet50", input_shape=(64, 64, 3), classes=10)
    >>> fast = speed.accelerate(model)
    >>> sorted({type(layer).__name__ for layer in fast.layers} - {
    ...     type(layer).__name__ for layer in model.layers})
    ['BatchNormSqueezeExcite', 'FusedBatchNormalization', 'PointwiseConv2D', 'Squeeze']
"""

from keras_se.speed.fast_layers import FusedBatchNormalization, GroupedConv2D, PointwiseConv2D
from keras_se.speed.rewrite import accelerate, bottleneck_tails, load_fused_weights
from keras_se.speed.tail import BatchNormSqueezeExcite

__all__ = [
    "BatchNormSqueezeExcite",
    "FusedBatchNormalization",
    "GroupedConv2D",
    "PointwiseConv2D",
    "accelerate",
    "bottleneck_tails",
    "load_fused_weights",
]
