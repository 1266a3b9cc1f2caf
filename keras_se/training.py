"""Training SE networks with tf.distribute: one device, many GPUs, many hosts, TPU.

The paper's recipe (Section 5 / shared/PAPER.md): SGD momentum 0.9, learning rate
0.6 for a global batch of 1024 scaled linearly (``lr = 0.6 * global_batch / 1024``),
weight decay 1e-4, divided by 10 every 30 epochs.

One code path serves every strategy: a custom training step run with
``strategy.run`` and reduced with ``strategy.reduce`` (Keras 3 ``model.fit`` fails
under ``MultiWorkerMirroredStrategy``, keras-team/keras#20585), on a Keras model and
optimizer built inside ``strategy.scope()``. Progress, metrics, checkpoints and
resume are the same for all strategies.

Run directory (``--out``)::

    config.json               everything needed to reproduce the run
    checkpoints/              tf.train checkpoints (model, optimizer, epoch), one per epoch
    history.csv, history.json one row per completed epoch
    logs/                     TensorBoard scalars
    model.keras               the final model, model.preprocessing.json beside it
    summary.json              final accuracy, parameters, time

Resume: rerunning the same command on the same ``--out`` restores the last
checkpoint and continues with the next epoch. The history is written before the
checkpoint and trimmed to the checkpoint's epoch on restore, so each epoch appears
exactly once. Epoch ``k``'s data order and augmentation depend only on
``(seed, k)`` (`keras_se.data.make_dataset`), so a resumed run computes what the
uninterrupted run computes.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from keras_se import data as data_lib
from keras_se import models
from keras_se.layers import BatchNormSqueezeExcite
from keras_se.utils import model_stats

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
SCHEDULES = ("step", "cosine")
PRECISIONS = (None, "float16", "bfloat16")
REFERENCE_BATCH, REFERENCE_LR = 1024, 0.6


@dataclasses.dataclass
class TrainConfig:
    """All settings of a training run (saved as ``config.json``).

    Attributes:
        model: registry name (``keras_se.models.names()``).
        dataset: ``"digits"`` (embedded), a TFDS name, or an image folder path.
        out: run directory.
        epochs: number of epochs.
        batch_size: GLOBAL batch size, split evenly over replicas.
        learning_rate: peak learning rate; None → ``0.6 * batch_size / 1024``.
        momentum, weight_decay: SGD settings (paper: 0.9, 1e-4).
        schedule: ``"step"`` (×0.1 every ``step_epochs``) or ``"cosine"``.
        step_epochs: epochs between step decays (paper: 30).
        warmup_epochs: linear warmup (cosine schedule).
        label_smoothing: cross-entropy label smoothing.
        mixed_precision: None, ``"float16"`` or ``"bfloat16"``; the head stays float32.
        jit_compile: compile the training step with XLA.
        strategy: one of ``STRATEGIES``.
        sync_bn: synchronise BatchNorm statistics across replicas.
        seed: seeds weights, data order and augmentation.
        image_size: model input size (default: the dataset's, 32 for digits).
        se_ratio: override the model's SE reduction ratio.
        model_kwargs: extra builder arguments.
        data_dir, manual_dir: TFDS directories.
        steps_per_epoch: cap on steps per epoch (None: the whole training split).
        tpu: TPU address for ``strategy="tpu"``.
        cpu_devices: split the CPU into this many logical devices (to run
            ``strategy="mirrored"`` without GPUs, e.g. for tests); must be set
            before TensorFlow initialises its devices.
    """

    model: str = "se_resnet18"
    dataset: str = data_lib.DIGITS
    out: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "step"
    step_epochs: int = 30
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    mixed_precision: str | None = None
    jit_compile: bool = False
    strategy: str = "auto"
    sync_bn: bool = False
    seed: int = 0
    image_size: int | None = None
    se_ratio: float | None = None
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    data_dir: str | None = None
    manual_dir: str | None = None
    steps_per_epoch: int | None = None
    tpu: str | None = None
    cpu_devices: int | None = None

    def peak_learning_rate(self):
        if self.learning_rate is not None:
            return self.learning_rate
        return REFERENCE_LR * self.batch_size / REFERENCE_BATCH

    def validate(self):
        """Raises ValueError naming the first bad setting."""
        if self.model not in models.names():
            try:
                models.builder(self.model)
            except ValueError as err:  # re-worded with the flag's name, keeping the close matches
                message = str(err).replace(
                    f"Received: name={self.model!r}", f"Received: model={self.model!r}"
                )
                raise ValueError(message) from None
        for name in ("epochs", "batch_size", "step_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        for name in ("warmup_epochs",):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"`{name}` must be a non-negative integer. Received: {name}={value!r}"
                )
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(
                f"`steps_per_epoch` must be positive. Received: steps_per_epoch={self.steps_per_epoch!r}"
            )
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate!r}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={self.momentum!r}")
        if self.weight_decay < 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={self.weight_decay!r}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: label_smoothing={self.label_smoothing!r}"
            )
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"`schedule` must be one of {SCHEDULES}. Received: schedule={self.schedule!r}"
            )
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(
                f"`mixed_precision` must be one of {PRECISIONS}. Received: mixed_precision={self.mixed_precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"`strategy` must be one of {STRATEGIES}. Received: strategy={self.strategy!r}"
            )
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(
                f"`image_size` must be at least 8. Received: image_size={self.image_size!r}"
            )
        if self.cpu_devices is not None and self.cpu_devices < 1:
            raise ValueError(
                f"`cpu_devices` must be positive. Received: cpu_devices={self.cpu_devices!r}"
            )
        if self.se_ratio is not None and not self.se_ratio > 0:
            raise ValueError(f"`se_ratio` must be positive. Received: se_ratio={self.se_ratio!r}")

    def to_dict(self):
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- strategy
def tf_config_workers():
    """Number of workers named in ``TF_CONFIG`` (0 when unset)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def split_cpu(count):
    """Splits the first CPU into ``count`` logical devices (before TF initialises them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError as err:
        raise ValueError(
            "`cpu_devices` must be set before TensorFlow initialises its devices "
            f"(run it in a fresh process). Received: cpu_devices={count}"
        ) from err


def weights_digest(model):
    """SHA-256 of all model weights, to check that workers hold identical models."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def make_strategy(name="auto", *, tpu=None):
    """The tf.distribute strategy for ``name``.

    ``auto``: multi-worker when ``TF_CONFIG`` names more than one worker, mirrored
    when more than one GPU is visible, else one device (the first GPU or the CPU).
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if name == "auto":
        # Physical devices: listing logical ones would initialise the runtime, after
        # which MultiWorkerMirroredStrategy can no longer configure its collectives.
        if tf_config_workers() > 1:
            name = "multi-worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one-device"
    if name == "multi-worker":
        if tf_config_workers() < 1:
            raise ValueError(
                "`strategy='multi-worker'` needs TF_CONFIG with a cluster of workers (see README)."
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def strategy_name(strategy):
    """The ``--strategy`` name of a strategy object."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi-worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    return "one-device"


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0) or task_type is None


def worker_index(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 0
    return resolver.task_id or 0


# --------------------------------------------------------------------------- model + optimizer
def learning_rate_schedule(config, steps_per_epoch):
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
    boundaries = [
        e * steps_per_epoch for e in range(config.step_epochs, config.epochs, config.step_epochs)
    ]
    if not boundaries:
        return peak
    values = [peak * (0.1**i) for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def _synchronize_batchnorm(model):
    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.BatchNormalization | BatchNormSqueezeExcite):
            config["synchronized"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def build_model(config, info):
    """The registry model for the dataset, logits in float32 under mixed precision."""
    kwargs = dict(config.model_kwargs)
    kwargs.update(input_shape=tuple(info.image_shape), classes=info.num_classes)
    if config.se_ratio is not None:
        kwargs["se_ratio"] = config.se_ratio
    model = models.get(config.model, **kwargs)
    if config.mixed_precision:
        model = _with_float32_head(model)  # softmax in float16 loses precision
    if config.sync_bn:
        model = _synchronize_batchnorm(model)
    return model


def _with_float32_head(model):
    """Returns ``model`` with its ``predictions`` layer computing in float32."""
    try:
        head = model.get_layer("predictions")
    except ValueError:
        return model
    if head.dtype_policy.compute_dtype == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer.name == "predictions":
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


# --------------------------------------------------------------------------- run directory
def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=str)
    os.replace(tmp, path)


def _read_history(run_dir):
    path = os.path.join(run_dir, "history.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _write_history(run_dir, rows):
    _write_json(os.path.join(run_dir, "history.json"), rows)
    tmp = os.path.join(run_dir, "history.csv.tmp")
    with open(tmp, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, os.path.join(run_dir, "history.csv"))


def prepare_run_dir(config):
    """Creates ``config.out`` (or checks a resumable one); returns the path.

    A run directory holding a different configuration is an error, so a rerun of
    the same command resumes and a changed command never mixes two runs.
    """
    run_dir = os.path.abspath(config.out)
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as err:
        raise ValueError(
            f"`out` is not a writable directory. Received: out={config.out!r} ({err.strerror})"
        ) from err
    path = os.path.join(run_dir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f).get("train", {})
        mine = json.loads(json.dumps(config.to_dict(), default=str))
        ignore = {"out", "epochs"}  # extending the number of epochs continues a run
        differ = sorted(
            k for k in set(saved) | set(mine) if k not in ignore and saved.get(k) != mine.get(k)
        )
        if differ:
            raise ValueError(
                f"`out` holds a run with different settings ({', '.join(differ)}); use a new --out to start "
                f"another run. Received: out={config.out!r}"
            )
    return run_dir


# --------------------------------------------------------------------------- training
def train(config, *, verbose=1):
    """Trains ``config.model`` on ``config.dataset``; resumes from ``config.out``.

    Args:
        config: a `TrainConfig`.
        verbose: 1 for a progress bar per epoch, 0 for silence.

    Returns:
        The summary dict (also written to ``summary.json``).

    Example:
        >>> from keras_se.training import TrainConfig, train
        >>> summary = train(TrainConfig(model="se_resnet18", epochs=1, out="/tmp/run", steps_per_epoch=2))
        >>> sorted(summary)[:3]
        ['best_val_accuracy', 'epochs', 'images_per_second']
    """
    config.validate()
    run_dir = prepare_run_dir(config)
    # Devices and collectives must be configured before TensorFlow runs any op.
    if config.cpu_devices:
        split_cpu(config.cpu_devices)
    strategy = make_strategy(config.strategy, tpu=config.tpu)
    keras.utils.set_random_seed(config.seed)
    chief = is_chief(strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"`batch_size` must be divisible by the number of replicas ({replicas}). "
            f"Received: batch_size={config.batch_size}"
        )
    info, sources = data_lib.describe_dataset(
        config.dataset,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        image_size=config.image_size,
    )
    full_steps = info.train_size // config.batch_size
    if full_steps < 1:
        raise ValueError(
            f"`batch_size` is larger than the training split ({info.train_size} images). "
            f"Received: batch_size={config.batch_size}"
        )
    steps_per_epoch = min(full_steps, config.steps_per_epoch or full_steps)

    if chief:
        _write_json(
            os.path.join(run_dir, "config.json"),
            {
                "train": config.to_dict(),
                **{k: v for k, v in info.to_dict().items()},
                "model": config.model,
            },
        )

    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
    try:
        with strategy.scope():
            model = build_model(config, info)
            optimizer = keras.optimizers.SGD(
                learning_rate=learning_rate_schedule(config, steps_per_epoch),
                momentum=config.momentum,
                weight_decay=config.weight_decay or None,
            )
            if config.mixed_precision == "float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            optimizer.build(model.trainable_variables)
            epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        return _fit(
            config,
            info,
            sources,
            strategy,
            model,
            optimizer,
            epoch_var,
            run_dir,
            chief,
            steps_per_epoch,
            verbose,
        )
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _fit(
    config,
    info,
    sources,
    strategy,
    model,
    optimizer,
    epoch_var,
    run_dir,
    chief,
    steps_per_epoch,
    verbose,
):
    loss_fn = keras.losses.CategoricalCrossentropy(
        label_smoothing=config.label_smoothing, reduction=None
    )

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    if not chief:  # non-chief workers write to a scratch directory (the MWMS pattern)
        ckpt_dir = os.path.join(run_dir, f".worker_{worker_index(strategy)}_checkpoints")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=2)
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    history = _read_history(run_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
        done = int(epoch_var.numpy())
        history = [row for row in history if row["epoch"] <= done]
        if verbose and chief:
            print(f"Resuming {run_dir} after epoch {done} ({latest})")
    else:
        history = []
    start_epoch = int(epoch_var.numpy())

    def train_dataset(epoch):
        def fn(ctx):
            return data_lib.make_dataset(
                info,
                sources["train"],
                training=True,
                batch_size=config.batch_size,
                seed=config.seed,
                epoch=epoch,
                num_input_pipelines=ctx.num_input_pipelines,
                input_pipeline_id=ctx.input_pipeline_id,
                replicas_per_pipeline=ctx.num_replicas_in_sync // ctx.num_input_pipelines,
            ).take(steps_per_epoch * (ctx.num_replicas_in_sync // ctx.num_input_pipelines))

        return strategy.distribute_datasets_from_function(fn)

    val_dataset = data_lib.make_dataset(
        info, sources["validation"], training=False, batch_size=config.batch_size
    )

    def replica_step(images, labels):
        onehot = tf.one_hot(labels, info.num_classes)
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = loss_fn(onehot, tf.cast(probs, tf.float32))
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct

    @tf.function(jit_compile=config.jit_compile or None)
    def train_step(batch):
        loss_sum, correct = strategy.run(replica_step, args=batch)
        return (
            strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None),
        )

    @tf.function
    def eval_step(images, labels):
        probs = tf.cast(model(images, training=False), tf.float32)
        per_example = keras.losses.categorical_crossentropy(
            tf.one_hot(labels, info.num_classes), probs
        )
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32))
        return tf.reduce_sum(per_example), correct

    # BatchNorm moving statistics are updated per replica (Keras creates them without an
    # aggregation), so replicas and workers drift apart; averaging them at every epoch end
    # makes every worker hold, evaluate and save the same model.
    moving_stats = [v for v in model.non_trainable_variables if "moving" in v.path]

    @tf.function
    def sync_moving_stats():
        local = strategy.run(lambda: [tf.identity(v.value) for v in moving_stats])  # each replica's copy
        for variable, values in zip(moving_stats, local):
            variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None))

    writer = (
        tf.summary.create_file_writer(os.path.join(run_dir, "logs"))
        if chief
        else tf.summary.create_noop_writer()
    )
    stats = model_stats(model)
    images_per_epoch = steps_per_epoch * config.batch_size
    train_time = sum(row.get("time_s", 0.0) for row in history)
    for epoch in range(start_epoch, config.epochs):
        bar = keras.utils.Progbar(
            steps_per_epoch,
            stateful_metrics=["loss", "accuracy", "images/s"],
            verbose=verbose if chief else 0,
        )
        if verbose and chief:
            print(f"Epoch {epoch + 1}/{config.epochs}")
        loss_total = correct_total = 0.0
        start = time.perf_counter()
        step_times, last = [], start
        for step, batch in enumerate(train_dataset(epoch)):
            loss_sum, correct = train_step(batch)
            loss_total += float(loss_sum)
            correct_total += float(correct)  # float() waits for the step: the timing is real
            now = time.perf_counter()
            step_times.append(now - last)
            last = now
            seen = (step + 1) * config.batch_size
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.update(
                step + 1,
                [
                    ("loss", loss_total / seen),
                    ("accuracy", correct_total / seen),
                    ("images/s", rate),
                ],
            )
        elapsed = time.perf_counter() - start
        if strategy.num_replicas_in_sync > 1 and moving_stats:
            sync_moving_stats()
        val_loss = val_correct = 0.0
        for images, labels in val_dataset:
            loss_sum, correct = eval_step(images, labels)
            val_loss += float(loss_sum)
            val_correct += float(correct)
        row = {
            "epoch": epoch + 1,
            "loss": loss_total / images_per_epoch,
            "accuracy": correct_total / images_per_epoch,
            "val_loss": val_loss / info.val_size,
            "val_accuracy": val_correct / info.val_size,
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "images_per_second": images_per_epoch / elapsed,
            "time_s": elapsed,
            # median over the epoch's steps: excludes the first step's tracing/compilation
            "step_time_s": float(np.median(step_times[1:] or step_times)),
        }
        history.append(row)
        train_time += elapsed
        if verbose and chief:
            print(
                f"  val_loss {row['val_loss']:.4f} - val_accuracy {row['val_accuracy']:.4f} - "
                f"{row['images_per_second']:.0f} images/s"
            )
        with writer.as_default(step=epoch + 1):
            for key in (
                "loss",
                "accuracy",
                "val_loss",
                "val_accuracy",
                "learning_rate",
                "images_per_second",
            ):
                tf.summary.scalar(key, row[key])
        writer.flush()
        # History first, then the checkpoint: a crash in between redoes this epoch and
        # the restore trims the history back to the checkpoint's epoch.
        if chief:
            _write_history(run_dir, history)
        epoch_var.assign(epoch + 1)
        manager.save(checkpoint_number=epoch + 1)
    if not chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)

    summary = {
        "model": config.model,
        "dataset": info.name,
        "epochs": len(history),
        "final_val_accuracy": history[-1]["val_accuracy"] if history else None,
        "best_val_accuracy": max((r["val_accuracy"] for r in history), default=None),
        "params": stats.params,
        "macs": stats.macs,
        "train_time_s": train_time,
        "images_per_second": float(np.median([r["images_per_second"] for r in history]))
        if history
        else None,
        "steps_per_epoch": steps_per_epoch,
        "time_per_step_s": float(np.median([r["time_s"] for r in history])) / steps_per_epoch
        if history
        else None,
        "replicas": strategy.num_replicas_in_sync,
        "strategy": strategy_name(strategy),
        "run_dir": run_dir,
        "weights_sha256": weights_digest(model),
    }
    if not chief:
        _write_json(os.path.join(run_dir, f"worker_{worker_index(strategy)}.summary.json"), summary)
    if chief:
        model_path = os.path.join(run_dir, "model.keras")
        tmp_path = os.path.join(run_dir, "model.tmp.keras")
        model.save(tmp_path)
        os.replace(tmp_path, model_path)
        data_lib.save_preprocessing(model_path, info.preprocessing)
        summary["model_path"] = model_path
        _write_json(os.path.join(run_dir, "summary.json"), summary)
    return summary


def format_summary(summary):
    """The one-line summary printed at the end of a run."""
    acc = summary.get("final_val_accuracy")
    return (
        f"{summary['model']} on {summary['dataset']}: val_accuracy "
        f"{'n/a' if acc is None else f'{acc:.4f}'} after {summary['epochs']} epochs, "
        f"{summary['params']:,} params, {summary['train_time_s']:.0f} s training, "
        f"model: {summary.get('model_path', '(not written on this worker)')}"
    )
