"""What a training run trains: its checked config, its model and its learning-rate schedule.

`keras_se.training.Trainer` calls these before its first step (and re-exports them):

* `check_config`: `TrainConfig.validate` plus the model and weights sources;
* `build_model`: the model for the dataset (`keras_se.finetune.build`: registry, file or
  factory; weights; retrofit), its classifier in float32 under mixed precision
  (`with_float32_head`), every BatchNorm synchronised across replicas with ``sync_bn``
  (`synchronize_batchnorm`);
* `learning_rate_schedule`: the paper's step decay, cosine with warm-up, or CIFAR multistep.

Example:
    >>> from keras_se_core.configs import TrainConfig
    >>> schedule = learning_rate_schedule(TrainConfig(epochs=90, batch_size=256), 100)
    >>> round(float(schedule(0)), 4), round(float(schedule(3100)), 5)
    (0.15, 0.015)
"""

from __future__ import annotations

import keras

from keras_se import finetune
from keras_se_core import choices
from keras_se_core.errors import UsageError


def check_config(config):
    """`TrainConfig.validate` plus ``--model`` (`finetune.model_source`); returns ``config``."""
    config.validate()
    finetune.model_source(config.model)
    if config.weights:
        from keras_se.models.pretrained import check_weights_source

        try:
            check_weights_source(config.weights)
        except ValueError as err:
            raise UsageError(" ".join(str(err).split())) from err
    return config


def learning_rate_schedule(config, steps_per_epoch):
    """The paper's step decay, cosine (with linear warm-up) or CIFAR multistep, in optimizer steps."""
    peak = config.peak_learning_rate()
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup else peak,
            decay_steps=max(total - warmup, 1),
            warmup_target=peak if warmup else None,
            warmup_steps=warmup,
        )
    if config.schedule == "multistep":
        epochs = sorted({int(config.epochs * m) for m in choices.MULTISTEP_MILESTONES} - {0})
    else:
        epochs = range(config.step_epochs, config.epochs, config.step_epochs)
    boundaries = [e * steps_per_epoch for e in epochs]
    if not boundaries:
        return peak
    values = [peak * (0.1**i) for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _clone_layers(model, change):
    """``model`` rebuilt with ``change(layer, config)`` applied to each layer's config."""

    def clone(layer):
        config = layer.get_config()
        change(layer, config)
        return layer.__class__.from_config(config)

    cloned = keras.models.clone_model(model, clone_function=clone)
    cloned.set_weights(model.get_weights())  # pretrained weights (--weights) survive the clone
    return cloned


def build_model(config, info, *, verbose=0):
    """The model for the dataset (`finetune.build`: registry, file or factory; weights;
    retrofit); logits in float32 under mixed precision. Returns ``(model, preprocessing)``
    with the weights' `Preprocessing` (or None)."""
    model, preprocessing = finetune.build(config, info, verbose=verbose)
    if config.mixed_precision:
        model = with_float32_head(model)
    if config.sync_bn:
        model = synchronize_batchnorm(model)
    return model, preprocessing


def with_float32_head(model):
    """``model`` with its ``predictions`` layer in float32 (softmax in float16 loses precision)."""
    head = next((layer for layer in model.layers if layer.name == "predictions"), None)
    if head is None or head.dtype_policy.compute_dtype == "float32":
        return model
    return _clone_layers(
        model, lambda layer, c: c.update(dtype="float32") if layer is head else None
    )


def synchronize_batchnorm(model):
    """``model`` with every BatchNorm computing cross-replica statistics."""
    return _clone_layers(
        model,
        lambda layer, c: (
            c.update(synchronized=True)
            if isinstance(layer, keras.layers.BatchNormalization)
            else None
        ),
    )
