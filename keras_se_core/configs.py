"""`TrainConfig`: every setting of a training run, its checks and its command-line flags.

Each field carries its own help text, flag and check (``dataclasses.field`` metadata),
so ``keras-se train``'s flags, `TrainConfig.validate` and ``config.json`` are derived
from one declaration: adding a setting is adding a field. Stdlib only: the launcher
builds the parser from these fields before Keras is imported.

The paper's recipe (Hu et al., 2018, Sec. 5): SGD momentum 0.9, learning rate 0.6 for
a global batch of 1024 scaled linearly (``lr = 0.6 * global_batch / 1024``), weight
decay 1e-4, divided by 10 every 30 epochs.

Example:
    >>> config = TrainConfig(model="se_resnet18", epochs=2, batch_size=256)
    >>> config.peak_learning_rate()
    0.15
    >>> TrainConfig(epochs=0).validate()
    Traceback (most recent call last):
    ...
    keras_se_core.errors.UsageError: `epochs` must be a positive integer. Received: epochs=0
"""

from __future__ import annotations

import dataclasses
import functools

from keras_se_core import choices
from keras_se_core import validation as v

#: Flag groups of ``keras-se train`` / ``tune``, in help order.
GROUPS = (
    "model and data",
    "fine-tuning",
    "recipe (defaults follow the paper)",
    "checkpoints and logs",
    "hardware",
)
_DATA, _FINETUNE, _RECIPE, _CKPT, _HW = GROUPS

#: Settings that may change between a run and its resume (they do not change what is computed).
RESUMABLE_CHANGES = (
    "out",
    "epochs",
    "checkpoint_every",
    "keep_checkpoints",
    "log_excitations",
    "cluster_timeout",
)


def _setting(default, help, *, group, check=None, flag=None, metavar=None, cli=True, const=None):
    """A dataclass field with its help text, flag group, check and optional flag name.

    ``const``: the flag's value may be omitted (``--flag`` alone means ``const``).
    """
    return dataclasses.field(
        default=default,
        metadata=dict(
            help=help, group=group, check=check, flag=flag, metavar=metavar, cli=cli, const=const
        ),
    )


_positive_int = v.check_positive_int
_non_negative_int = functools.partial(v.check_int, minimum=0)
_positive_number = v.check_positive_number
_fraction = functools.partial(v.check_number, minimum=0, maximum=1, inclusive=(True, False))
_non_negative = functools.partial(v.check_number, minimum=0)


def _image_size(name, value):
    return v.check_int(name, value, minimum=8, what="an integer >= 8")


def _choice(options):
    return functools.partial(v.check_choice, choices=tuple(options))


def _text(name, value):
    if not isinstance(value, str) or not value:
        raise v.UsageError(f"`{name}` must be a non-empty string. Received: {name}={value!r}")
    return value


@dataclasses.dataclass
class TrainConfig:
    """All settings of a training run (saved as ``config.json``); one field = one flag.

    See each field's help (``keras-se train --help`` prints them). The learning rate
    defaults to the paper's linear scaling, ``0.6 * batch_size / 1024``.

    Example:
        >>> config = TrainConfig(model="se_resnet50", batch_size=256, epochs=100)
        >>> config.peak_learning_rate(), config.schedule, config.weight_decay
        (0.15, 'step', 0.0001)
        >>> TrainConfig.from_dict(config.to_dict()) == config
        True
    """

    model: str = _setting(
        "se_resnet18",
        "registry name (see `keras-se info`), a .keras file (continue or fine-tune a saved model), "
        "or a factory package.module:function(input_shape=, classes=) returning a Keras model "
        "(keras.applications.ResNet50 works too)",
        group=_DATA,
        check=_text,
    )
    dataset: str = _setting(
        "digits",
        "'digits' (embedded, offline), a TFDS name (cifar10, imagenette/320px, tf_flowers, "
        "imagenet2012, ...) or an image folder root/<train|val>/<class>/*.png",
        group=_DATA,
        check=_text,
    )
    out: str = _setting(
        "runs/train",
        "run directory (rerun the same command to resume)",
        group=_DATA,
        check=_text,
        cli=False,  # added by each subcommand with its own default
    )
    data_dir: str | None = _setting(None, "TFDS data directory", group=_DATA)
    manual_dir: str | None = _setting(
        None, "TFDS manual download directory (imagenet2012)", group=_DATA
    )
    image_size: int | None = _setting(
        None, "model input size (default: the dataset's; digits 32)", group=_DATA, check=_image_size
    )
    se_ratio: float | None = _setting(
        None, "override the SE reduction ratio r", group=_DATA, check=_positive_number
    )
    model_kwargs: dict = dataclasses.field(default_factory=dict, metadata=dict(cli=False))
    weights: str | None = _setting(
        None,
        "fine-tune from pretrained weights: a named source (timm/...), a timm state dict, a "
        ".weights.h5 or a .keras file; the backbone loads and the classifier starts fresh when the "
        "class count differs; the weights' preprocessing (mean/std) is used",
        group=_FINETUNE,
        check=_text,
    )
    freeze_epochs: int = _setting(
        0,
        "train only the classifier for the first N epochs (backbone frozen, its BatchNorm in "
        "inference mode), then everything",
        group=_FINETUNE,
        check=_non_negative_int,
    )
    freeze_bn: bool = _setting(
        False,
        "keep every BatchNorm's statistics and affine parameters fixed for the whole run "
        "(convolutions and SE gates train)",
        group=_FINETUNE,
        check=v.check_bool,
    )
    retrofit: bool = _setting(
        False,
        "insert SE blocks (identity-initialised gates) before every residual addition of the "
        "model (after --weights), then train: add SE to a pretrained plain network",
        group=_FINETUNE,
        check=v.check_bool,
    )

    epochs: int = _setting(10, "number of epochs", group=_RECIPE, check=_positive_int)
    batch_size: int = _setting(
        64, "GLOBAL batch size, split evenly over replicas", group=_RECIPE, check=_positive_int
    )
    learning_rate: float | None = _setting(
        None,
        "peak learning rate; default 0.6 * batch_size / 1024 (the paper's scaling), a tenth "
        "of that when fine-tuning (--weights)",
        group=_RECIPE,
        check=_positive_number,
        flag="--lr",
    )
    momentum: float = _setting(0.9, "SGD momentum", group=_RECIPE, check=_fraction)
    weight_decay: float = _setting(
        1e-4, "decoupled weight decay", group=_RECIPE, check=_non_negative
    )
    schedule: str = _setting(
        "step",
        "step: x0.1 every --step-epochs; cosine: with --warmup-epochs; multistep: x0.1 at 50 %% "
        "and 75 %% of the epochs (CIFAR)",
        group=_RECIPE,
        check=_choice(choices.SCHEDULES),
    )
    step_epochs: int = _setting(
        30, "epochs between step decays", group=_RECIPE, check=_positive_int
    )
    warmup_epochs: int = _setting(
        0, "linear warmup epochs (cosine)", group=_RECIPE, check=_non_negative_int
    )
    label_smoothing: float = _setting(
        0.0, "cross-entropy label smoothing", group=_RECIPE, check=_fraction
    )
    steps_per_epoch: int | None = _setting(
        None, "cap on training steps per epoch", group=_RECIPE, check=_positive_int
    )
    validation_steps: int | None = _setting(
        None,
        "cap on validation batches per evaluation (the first N global batches of the split, "
        "as Keras's validation_steps); default: the whole split",
        group=_RECIPE,
        check=_positive_int,
    )
    seed: int = _setting(
        0, "seeds weights, data order and augmentation", group=_RECIPE, check=v.check_int
    )

    checkpoint_every: int | None = _setting(
        None,
        "also checkpoint every N training steps inside an epoch (a rerun resumes at the next "
        "step); default: at epoch ends only",
        group=_CKPT,
        check=_positive_int,
        metavar="STEPS",
    )
    keep_checkpoints: int = _setting(
        3, "step checkpoints kept (the oldest are deleted)", group=_CKPT, check=_positive_int
    )
    log_excitations: int | None = _setting(
        None,
        "analyse the SE blocks after every N-th epoch (N=1 without a value) on a fixed validation "
        "sample (50 images per class): TensorBoard histograms, scalars and figures, and "
        "excitations/epoch_K.json",
        group=_CKPT,
        check=_positive_int,
        metavar="N",
        const=1,
    )

    strategy: str = _setting(
        "auto",
        "auto: multi-worker when TF_CONFIG names >1 worker, mirrored with >1 GPU, else one device",
        group=_HW,
        check=_choice(choices.STRATEGIES),
    )
    tpu: str | None = _setting(None, "TPU address for --strategy tpu", group=_HW)
    cluster_timeout: float = _setting(
        600.0,
        "multi-worker: seconds to wait for every task of TF_CONFIG's cluster to start; then "
        "one line names the workers that never connected (exit 2)",
        group=_HW,
        check=_positive_number,
        metavar="SECONDS",
    )
    cpu_devices: int | None = _setting(
        None,
        "split the CPU into N logical devices (try --strategy mirrored without GPUs)",
        group=_HW,
        check=_positive_int,
    )
    sync_bn: bool = _setting(
        False, "synchronise BatchNorm statistics across replicas", group=_HW, check=v.check_bool
    )
    mixed_precision: str | None = _setting(
        None,
        "mixed precision (float32 head)",
        group=_HW,
        check=_choice(choices.PRECISIONS),
    )
    jit_compile: bool = _setting(
        False, "compile the training step with XLA", group=_HW, check=v.check_bool
    )

    def peak_learning_rate(self):
        """The learning rate, or the paper's linear scaling of 0.6 at batch 1024."""
        if self.learning_rate is not None:
            return self.learning_rate
        peak = choices.REFERENCE_LR * self.batch_size / choices.REFERENCE_BATCH
        # Fine-tuning pretrained weights: a tenth (the transfer-learning guide's "low rate").
        return peak * choices.FINE_TUNE_LR_FACTOR if self.weights else peak

    def validate(self):
        """Raises `UsageError` naming the first bad setting; returns ``self``."""
        for field in dataclasses.fields(self):
            check = field.metadata.get("check")
            value = getattr(self, field.name)
            if check is not None and value is not None:
                check(field.name, value)
        if self.freeze_epochs and self.freeze_epochs >= self.epochs:
            raise v.UsageError(
                f"`freeze_epochs` must be smaller than `epochs` ({self.epochs}): the backbone "
                f"trains after them. Received: freeze_epochs={self.freeze_epochs}"
            )
        if not isinstance(self.model_kwargs, dict):
            raise v.UsageError(
                f"`model_kwargs` must be a dict. Received: model_kwargs={self.model_kwargs!r}"
            )
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A config from ``to_dict()`` output; keys of older versions' configs are accepted."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise v.UsageError(
                f"Unknown training settings {unknown}: written by a newer keras_se? "
                f"Received: {dict((k, values[k]) for k in unknown)!r}"
            )
        return cls(**values)

    @classmethod
    def cli_fields(cls):
        """The fields that are command-line flags, in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]

    @classmethod
    def from_args(cls, args):
        """The config whose CLI fields come from parsed ``keras-se train``/``tune`` flags."""
        return cls(**{f.name: getattr(args, f.name) for f in cls.cli_fields()}, out=args.out)
