"""Training SE networks with tf.distribute: one device, many GPUs, many hosts, TPU.

The paper's recipe (Hu et al., 2018, Sec. 5) is the default `TrainConfig`: SGD momentum
0.9, learning rate ``0.6 * global_batch / 1024``, weight decay 1e-4, ÷10 every 30 epochs.

One code path serves every strategy: a custom step run with ``strategy.run`` and
reduced with ``strategy.reduce`` (Keras 3 ``model.fit`` fails under
``MultiWorkerMirroredStrategy``, keras-team/keras#20585), on a Keras model and
optimizer built inside ``strategy.scope()``. `Trainer` reads as its steps::

    restore → for each epoch: train_epoch → sync_batchnorm → evaluate → log → checkpoint
            → finalize

Invariants, each kept in the method named:
* Epoch ``k``'s data order and augmentation depend only on ``(seed, k)``
  (`keras_se.data.make_dataset`), so a resumed run computes what the uninterrupted
  run computes; a run resumed at step ``s`` skips the epoch's first ``s`` global
  batches before decoding them (`Trainer.train_dataset`).
* The history is written before the epoch's checkpoint, and trimmed to the
  checkpoint's epoch on restore, so each epoch appears exactly once (`Trainer.log`,
  `Trainer.restore`).
* Only the chief writes the run directory; every worker saves checkpoints (the
  MultiWorkerMirroredStrategy pattern), non-chief workers into scratch directories
  (`Trainer.checkpoint`).
* BatchNorm moving statistics (found by layer type) are averaged across replicas
  before evaluation, so every worker holds, evaluates and saves the same model
  (`Trainer.sync_batchnorm`).
* A SIGTERM stops every worker at the same step boundary (the flag is summed across
  workers inside the step) after a step checkpoint; the run raises `Preempted`
  (``keras-se train`` exits with code 3). A non-finite loss raises `Diverged` before
  anything is saved.
* Validation is sharded over replicas and workers, padded with weight-0 images to whole
  batches, and reduced as sums, so ``val_accuracy`` equals a single-device evaluation.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import shutil
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_se import data as data_lib
from keras_se import distribute, finetune, speed
from keras_se.excitation_log import ExcitationLog
from keras_se.finetune import batchnorm_layers
from keras_se.run_setup import (  # noqa: F401 - re-exported: keras_se.training's interface
    build_model,
    check_config,
    learning_rate_schedule,
    synchronize_batchnorm,
    with_float32_head,
)
from keras_se.rundir import RunDir
from keras_se.utils import model_stats
from keras_se_core import choices
from keras_se_core.configs import RESUMABLE_CHANGES, TrainConfig
from keras_se_core.errors import UsageError

__all__ = ["TrainConfig", "Trainer", "train", "Preempted", "Diverged", "format_summary"]

# Re-exported names of earlier versions (the facts live in keras_se_core).
STRATEGIES, SCHEDULES = choices.STRATEGIES, choices.SCHEDULES
make_strategy, weights_digest = distribute.make_strategy, distribute.weights_digest


class Preempted(Exception):  # noqa: N818 (an outcome, not a failure)
    """SIGTERM received: the run saved a checkpoint at a step boundary and stopped.

    Not a user error (no `UsageError`): running the same configuration again resumes.

    Example:
        >>> from keras_se_core.errors import UsageError
        >>> issubclass(Preempted, UsageError)
        False
        >>> try:  # doctest: +SKIP
        ...     summary = train(config)
        ... except Preempted:
        ...     summary = train(config)  # resumes at the saved step
    """


class Diverged(UsageError):
    """The loss became non-finite; the last good checkpoint is kept as it was.

    A `UsageError`: ``keras-se train`` prints it as one line (exit 2).

    Example:
        >>> from keras_se_core.errors import UsageError
        >>> issubclass(Diverged, UsageError)
        True
        >>> train(TrainConfig(learning_rate=1e6, out="runs/too_fast"))  # doctest: +SKIP
        Traceback (most recent call last):
        keras_se.training.Diverged: ...
    """


# --------------------------------------------------------------------------- the trainer
class Trainer:
    """One training run: ``Trainer(config).run()`` returns the summary dict.

    See the module docstring for the steps and the invariants each method keeps.

    Example (`train` is ``Trainer(config, verbose=verbose).run()``):
        >>> import tempfile
        >>> out = tempfile.mkdtemp()
        >>> trainer = Trainer(TrainConfig(epochs=1, steps_per_epoch=2, out=out), verbose=0)
        >>> trainer.run_dir.path == out
        True
        >>> summary = trainer.run()  # doctest: +SKIP
        >>> summary["epochs"]  # doctest: +SKIP
        1
    """

    def __init__(self, config, *, verbose=1):
        # Every attribute of a Trainer is declared here; the method named sets it.
        self.config = check_config(config)
        self.verbose = verbose
        self.run_dir = RunDir(config.out)
        # `setup`: devices, data and the model.
        self.strategy = None  # the tf.distribute strategy
        self.chief = None  # this process writes the run directory
        self.info = None  # `keras_se.data.DatasetInfo` (classes, sizes, preprocessing)
        self.sources = None  # per split: what `keras_se.data.make_dataset` reads
        self.steps_per_epoch = None
        self.excitations = None  # `ExcitationLog` (--log-excitations, chief) or None
        # `_build_model`: the textbook model (saved, logged, exported), its fast twin (the
        # compiled steps run it: `keras_se.speed.accelerate`, the same variables), the
        # optimizer, the position variables and the BatchNorm statistics to synchronise.
        self.model = None
        self.fast_model = None
        self.optimizer = None
        self.epoch_var = self.step_var = self.sums_var = None
        self.moving_stats = []
        # `_build_steps`: the compiled train/eval steps (rebuilt by `set_phase`).
        self.train_step = self.eval_step = self._sync_moving_stats = None
        self.backbone_frozen = None  # --freeze-epochs: the phase the compiled steps were built for
        # `restore`: the history, where the run resumes, the checkpoint manager, the writer.
        self.history = []
        self.position = (0, 0)  # (completed epochs, steps done in the next one)
        self.manager = None
        self.writer = None
        # `_run` and `train_epoch`: the SIGTERM flag (set by the handler), the epoch's step
        # times and running sums (loss, correct, seconds).
        self.sigterm = [0]
        self.step_times = []
        self.epoch_sums = None

    # ----------------------------------------------------------------- setup
    def run(self):
        """Sets up (removing a directory it created if setup fails), restores, trains."""
        created = self.run_dir.create()
        try:
            self.setup()
            if self.chief:  # one run per directory: a second process is refused, naming the first
                self.run_dir.lock()
            self.restore()
        except BaseException:
            self.run_dir.unlock()
            self.run_dir.remove_created(created)  # only directories left empty
            raise
        try:
            return self._run()
        finally:
            self.run_dir.unlock()

    def _run(self):
        if self.chief:
            self.run_dir.write_config(self.config, self.info.to_dict())
        if self.excitations and self.position[1] == 0:
            self.excitations.catch_up(self.position[0], self.writer)
        with distribute.sigterm_flag() as self.sigterm:
            for epoch in range(self.position[0], self.config.epochs):
                self.set_phase(epoch)
                self.train_epoch(epoch)
                self.sync_batchnorm()
                row = self.evaluate(epoch)
                self.log(row)
                self.checkpoint(epoch + 1, 0)
                if self.excitations and self.excitations.due(epoch + 1):
                    self.excitations.log(epoch + 1, self.writer)  # after the checkpoint: once
        return self.finalize()

    def setup(self):
        """Run directory check, strategy, data, model, optimizer and checkpoint objects."""
        config = self.config
        self._check_resumable()
        # Devices and collectives must be configured before TensorFlow runs any op.
        if config.cpu_devices:
            distribute.split_cpu(config.cpu_devices)
        self.strategy = distribute.make_strategy(
            config.strategy, tpu=config.tpu, cluster_timeout=config.cluster_timeout
        )
        keras.utils.set_random_seed(config.seed)
        self.chief = distribute.is_chief(self.strategy)
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise UsageError(
                f"`batch_size` must be divisible by the number of replicas ({replicas}). "
                f"Received: batch_size={config.batch_size}"
            )
        self.info, self.sources = data_lib.describe_dataset(
            config.dataset,
            data_dir=config.data_dir,
            manual_dir=config.manual_dir,
            image_size=config.image_size,
        )
        if self.info.image_size_note and self.chief and self.verbose:
            print(self.info.image_size_note)  # how an image folder's input size was chosen
        if self.info.num_classes < 2:
            raise UsageError(
                f"`dataset` must have at least 2 classes to train a classifier "
                f"(found {self.info.num_classes}). Received: dataset={config.dataset!r}"
            )
        full_steps = self.info.train_size // config.batch_size
        if full_steps < 1:
            raise UsageError(
                f"`batch_size` is larger than the training split ({self.info.train_size} images). "
                f"Received: batch_size={config.batch_size}"
            )
        self.steps_per_epoch = min(full_steps, config.steps_per_epoch or full_steps)
        self._build_model()
        self._build_steps()
        if config.log_excitations and self.chief:
            self.excitations = ExcitationLog(
                self.model,
                self.run_dir,
                self.info,
                self.sources["validation"],
                every=config.log_excitations,
                epochs=config.epochs,
            )

    def _check_resumable(self):
        """A directory holding a different run is an error (a changed command never mixes runs)."""
        saved = self.run_dir.saved_train_config()
        if not saved:
            return
        saved = {
            **json.loads(json.dumps(TrainConfig().to_dict())),
            **saved,
        }  # older versions: defaults
        current = json.loads(json.dumps(self.config.to_dict(), default=str))
        differ = sorted(
            k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k]
        )
        if differ:
            raise UsageError(
                f"`out` holds a run with different settings ({', '.join(differ)}); use a new --out to "
                f"start another run. Received: out={self.config.out!r}"
            )

    def _build_model(self):
        config = self.config
        previous_policy = keras.config.dtype_policy()
        if config.mixed_precision:
            keras.config.set_dtype_policy(f"mixed_{config.mixed_precision}")
        try:
            with self.strategy.scope():
                self.model, preprocessing = build_model(
                    config, self.info, verbose=self.verbose and self.chief
                )
                finetune.check_needs(config, self.model)
                if config.freeze_bn:  # for the whole run, before the optimizer sees the variables
                    finetune.freeze_batchnorm(self.model)
                if preprocessing is not None:  # the weights' normalisation, the run's image size
                    self.info.preprocessing = dataclasses.replace(
                        preprocessing, image_size=self.info.preprocessing.image_size
                    )
                optimizer = keras.optimizers.SGD(
                    learning_rate=learning_rate_schedule(config, self.steps_per_epoch),
                    momentum=config.momentum,
                    weight_decay=config.weight_decay or None,
                )
                if config.mixed_precision == "float16":
                    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
                optimizer.build(self.model.trainable_variables)
                self.optimizer = optimizer
                # The compiled steps run the fast twin (the same variables); the run saves,
                # logs and exports ``self.model``, the textbook graph.
                self.fast_model = speed.accelerate(self.model)
                # Position: completed epochs; steps done in the next epoch and its running sums
                # (loss, correct, seconds), so a run resumed mid-epoch logs the whole epoch.
                self.epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
                self.step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
                self.sums_var = tf.Variable(tf.zeros(3, tf.float64), trainable=False, name="sums")
        finally:
            keras.config.set_dtype_policy(previous_policy)
        self.moving_stats = [
            v
            for layer in batchnorm_layers(self.model)
            for v in (layer.moving_mean, layer.moving_variance)
        ]

    # ----------------------------------------------------------------- compiled steps
    def _build_steps(self):
        config, strategy, optimizer = self.config, self.strategy, self.optimizer
        model = self.fast_model
        classes = self.info.num_classes
        loss_fn = keras.losses.CategoricalCrossentropy(
            label_smoothing=config.label_smoothing, reduction=None
        )

        def replica_step(images, labels, stop):
            with tf.GradientTape() as tape:
                probs = model(images, training=True)
                per_example = loss_fn(tf.one_hot(labels, classes), tf.cast(probs, tf.float32))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
                scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32))
            # Each worker's SIGTERM flag rides on the step; summed over all replicas, a
            # positive value stops every worker at this same step boundary.
            return tf.reduce_sum(per_example), correct, tf.identity(stop)  # a per-replica value

        @tf.function(jit_compile=config.jit_compile or None)
        def train_step(batch, stop):
            outs = strategy.run(replica_step, args=(*batch, stop))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None) for x in outs]

        def replica_eval(images, labels, weights):
            probs = tf.cast(model(images, training=False), tf.float32)
            per_example = keras.losses.categorical_crossentropy(tf.one_hot(labels, classes), probs)
            correct = tf.cast(tf.equal(tf.argmax(probs, -1), labels), tf.float32)
            return (
                tf.reduce_sum(per_example * weights),
                tf.reduce_sum(correct * weights),
                tf.reduce_sum(weights),
            )

        @tf.function
        def eval_step(batch):
            outs = strategy.run(replica_eval, args=batch)
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None) for x in outs]

        @tf.function
        def sync_moving_stats():
            local = strategy.run(lambda: [tf.identity(v.value) for v in self.moving_stats])
            for variable, values in zip(self.moving_stats, local):
                variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None))

        self.train_step, self.eval_step, self._sync_moving_stats = (
            train_step,
            eval_step,
            sync_moving_stats,
        )

    def set_phase(self, epoch):
        """``--freeze-epochs``: only the classifier trains before that epoch, then everything
        (BatchNorm stays frozen under ``--freeze-bn``). The optimizer was built on every
        variable, so its state and the checkpoints are the same in both phases; the
        compiled steps are rebuilt when the trainable variables change."""
        if not self.config.freeze_epochs:
            return
        frozen = epoch < self.config.freeze_epochs
        if frozen == self.backbone_frozen:
            return
        finetune.freeze_backbone(self.model, trainable=not frozen)
        if self.config.freeze_bn:
            finetune.freeze_batchnorm(self.model)
        self.backbone_frozen = frozen
        self._build_steps()
        if self.verbose and self.chief:
            trainable = sum(int(np.prod(v.shape)) for v in self.model.trainable_variables)
            print(
                f"Epoch {epoch + 1}: "
                + ("classifier only" if frozen else "backbone unfrozen")
                + f" ({trainable:,} trainable parameters)"
            )

    def _distributed(self, split, **kwargs):
        """The split's pipeline, one per input pipeline (worker), batched per replica."""

        def fn(ctx):
            return data_lib.make_dataset(
                self.info,
                self.sources[split],
                batch_size=self.config.batch_size,
                num_input_pipelines=ctx.num_input_pipelines,
                input_pipeline_id=ctx.input_pipeline_id,
                replicas_per_pipeline=ctx.num_replicas_in_sync // ctx.num_input_pipelines,
                **kwargs,
            )

        return self.strategy.distribute_datasets_from_function(fn)

    def train_dataset(self, epoch, start_step):
        """Epoch ``epoch`` from global batch ``start_step`` on (the caller takes the steps it needs)."""
        return self._distributed(
            "train", training=True, seed=self.config.seed, epoch=epoch, start_step=start_step
        )

    # ----------------------------------------------------------------- the steps of a run
    def restore(self):
        """Restores the latest checkpoint; sets ``self.position = (epoch, step)``."""
        version = RunDir.format_version(self.run_dir.read_config() or {"format_version": 2})
        objects = dict(model=self.model, optimizer=self.optimizer, epoch=self.epoch_var)
        if version >= 2:
            objects.update(step=self.step_var, sums=self.sums_var)
        latest = self._restore_newest(tf.train.Checkpoint(**objects))
        self.history = self.run_dir.read_history()
        if latest:
            done = int(self.epoch_var.numpy())
            self.history = [row for row in self.history if row["epoch"] <= done]
            if self.verbose and self.chief:
                print(
                    f"Resuming {self.run_dir.path} at epoch {done + 1}, step {int(self.step_var.numpy())} ({latest})"
                )
        else:
            self.history = []
        self.position = (int(self.epoch_var.numpy()), int(self.step_var.numpy()))
        if self.position[0] > self.config.epochs:
            raise UsageError(
                f"`epochs` is smaller than the {self.position[0]} epochs this run has done; rerun "
                f"with --epochs >= {self.position[0]} or use a new --out. Received: epochs={self.config.epochs}"
            )
        if self.chief:  # what a failed save left behind (the chief owns checkpoints/)
            self.run_dir.remove_partial_checkpoints()
        ckpt_dir = self.run_dir.checkpoint_dir
        if not self.chief:  # non-chief workers write to a scratch directory (the MWMS pattern)
            ckpt_dir = self.run_dir.worker_checkpoint_dir(distribute.worker_index(self.strategy))
        all_objects = dict(objects, step=self.step_var, sums=self.sums_var)
        self.manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**all_objects), ckpt_dir, max_to_keep=self.config.keep_checkpoints
        )
        self.writer = (
            tf.summary.create_file_writer(self.run_dir.logs_dir)
            if self.chief
            else tf.summary.create_noop_writer()
        )

    def _restore_newest(self, checkpoint):
        """Restores the newest checkpoint that can be restored; returns its prefix (or None).

        A checkpoint whose files are missing or unreadable is skipped with a line saying
        why, the next older one is tried, and the skipped files are renamed out of the
        checkpoint manager's way (`RunDir.set_aside_checkpoints`). A directory that once
        held a checkpoint but has none left that restores is an error: a run is never
        silently started over (and its older checkpoints never rotated away).
        """
        candidates, skipped = self.run_dir.checkpoint_candidates(), {}
        for prefix in candidates:
            try:
                checkpoint.restore(prefix).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError) as err:
                reason = " ".join((getattr(err, "message", None) or str(err)).split())[:160]
                skipped[prefix] = reason
                if self.chief:
                    print(
                        f"Skipping checkpoint {prefix}: cannot be restored ({reason})",
                        file=sys.stderr,
                    )
                continue
            if skipped and self.chief:
                self.run_dir.set_aside_checkpoints(
                    list(skipped), keep=[c for c in candidates if c not in skipped]
                )
            return prefix
        if skipped or self.run_dir.has_checkpoint_state():
            listing = "; ".join(f"{os.path.basename(p)}: {r}" for p, r in skipped.items())
            raise UsageError(
                f"`out` holds a run but none of its checkpoints can be restored "
                f"({listing or 'the checkpoint files are missing'}); restore the files or use a "
                f"new --out. Received: out={self.config.out!r}"
            )
        return None

    def train_epoch(self, epoch):
        """Trains one epoch (from the restored step); checkpoints every N steps and on SIGTERM."""
        config, steps = self.config, self.steps_per_epoch
        start_step = self.position[1] if epoch == self.position[0] else 0
        sums = self.sums_var.numpy().tolist() if start_step else [0.0, 0.0, 0.0]
        bar = keras.utils.Progbar(
            steps,
            stateful_metrics=["loss", "accuracy", "images/s"],
            verbose=self.verbose if self.chief else 0,
        )
        if self.verbose and self.chief:
            print(
                f"Epoch {epoch + 1}/{config.epochs}"
                + (f" (from step {start_step + 1})" if start_step else "")
            )
        start = last = time.perf_counter()
        self.step_times = []
        iterator = iter(self.train_dataset(epoch, start_step))
        for step in range(start_step, steps):
            loss_sum, correct, stop = self.train_step(
                next(iterator), tf.constant(float(self.sigterm[0]))
            )
            loss_sum, correct, stop = (
                float(loss_sum),
                float(correct),
                float(stop),
            )  # waits for the step
            if not math.isfinite(loss_sum):
                raise Diverged(
                    f"the loss is not finite (loss sum {loss_sum}) at epoch {epoch + 1}, step {step + 1}; "
                    f"stopped without saving. Last good checkpoint: {self.manager.latest_checkpoint or 'none'}. "
                    f"Lower --lr or check the data. Received: lr={config.peak_learning_rate()}"
                )
            now = time.perf_counter()
            self.step_times.append(now - last)
            sums = [sums[0] + loss_sum, sums[1] + correct, sums[2] + now - last]
            last = now
            seen = (step + 1) * config.batch_size
            bar.update(
                step + 1,
                [
                    ("loss", sums[0] / seen),
                    ("accuracy", sums[1] / seen),
                    (
                        "images/s",
                        (step + 1 - start_step) * config.batch_size / max(now - start, 1e-9),
                    ),
                ],
            )
            if step + 1 < steps and (
                stop or (config.checkpoint_every and (step + 1) % config.checkpoint_every == 0)
            ):
                self.checkpoint(epoch, step + 1, sums)
                if stop:
                    raise Preempted(
                        f"SIGTERM: saved a checkpoint at epoch {epoch + 1}, step {step + 1}; rerun the "
                        f"same command to resume. ({self.manager.latest_checkpoint})"
                    )
        self.epoch_sums = sums

    def sync_batchnorm(self):
        """Averages BatchNorm moving statistics across replicas (they have no aggregation)."""
        if self.strategy.num_replicas_in_sync > 1 and self.moving_stats:
            self._sync_moving_stats()

    def evaluate(self, epoch):
        """Validation over all replicas and workers; returns the epoch's history row.

        With ``validation_steps`` only the split's first that many global batches (every
        worker's pipeline pads to the same number of batches, so all stop together).
        """
        val_loss = val_correct = val_count = 0.0
        batches = self._distributed("validation", training=False, weighted=True)
        for batch in itertools.islice(batches, self.config.validation_steps):
            loss_sum, correct, count = self.eval_step(batch)
            val_loss, val_correct, val_count = (
                val_loss + float(loss_sum),
                val_correct + float(correct),
                val_count + float(count),
            )
        images = self.steps_per_epoch * self.config.batch_size
        loss_sum, correct, seconds = self.epoch_sums
        return {
            "epoch": epoch + 1,
            "loss": loss_sum / images,
            "accuracy": correct / images,
            "val_loss": val_loss / val_count,
            "val_accuracy": val_correct / val_count,
            "learning_rate": float(keras.ops.convert_to_numpy(self.optimizer.learning_rate)),
            "images_per_second": images / seconds,
            "time_s": seconds,
            # median over the epoch's steps: excludes the first step's tracing/compilation
            "step_time_s": float(np.median(self.step_times[1:] or self.step_times)),
        }

    def log(self, row):
        """Appends the row to the history (written by the chief before the checkpoint), TensorBoard."""
        self.history.append(row)
        if self.verbose and self.chief:
            print(
                f"  val_loss {row['val_loss']:.4f} - val_accuracy {row['val_accuracy']:.4f} - "
                f"{row['images_per_second']:.0f} images/s"
            )
        with self.writer.as_default(step=row["epoch"]):
            for key in (
                "loss",
                "accuracy",
                "val_loss",
                "val_accuracy",
                "learning_rate",
                "images_per_second",
            ):
                tf.summary.scalar(key, row[key])
        self.writer.flush()
        # History first, then the checkpoint: a crash in between redoes this epoch and
        # the restore trims the history back to the checkpoint's epoch.
        if self.chief:
            self.run_dir.write_history(self.history)

    def checkpoint(self, epoch, step, sums=(0.0, 0.0, 0.0)):
        """Saves model, optimizer and position (every worker; only the chief's is kept)."""
        if step:
            # Replicas hold different BN moving statistics until the epoch end; the checkpoint
            # keeps one copy, so average first (EMAs are linear: the epoch-end average is the same).
            self.sync_batchnorm()
        self.epoch_var.assign(epoch)
        self.step_var.assign(step)
        self.sums_var.assign(tf.constant(sums, tf.float64))
        try:
            self.manager.save(checkpoint_number=epoch * self.steps_per_epoch + step)
        except (OSError, tf.errors.OpError) as err:
            message = getattr(err, "message", None) or str(err)
            raise UsageError(
                f"could not write a checkpoint in {self.manager.directory} ({' '.join(message.split())[:200]}); "
                f"the previous checkpoint is intact: {self.manager.latest_checkpoint or 'none'}"
            ) from err

    def finalize(self):
        """The summary; the chief writes ``model.keras`` and ``summary.json``."""
        config, history, stats = self.config, self.history, model_stats(self.model)

        def median(key):
            return float(np.median([row[key] for row in history])) if history else None

        summary = {
            "model": config.model,
            "dataset": self.info.name,
            "epochs": len(history),
            "final_val_accuracy": history[-1]["val_accuracy"] if history else None,
            "best_val_accuracy": max((r["val_accuracy"] for r in history), default=None),
            "params": stats.params,
            "macs": stats.macs,
            "train_time_s": sum(row.get("time_s", 0.0) for row in history),
            "images_per_second": median("images_per_second"),
            "steps_per_epoch": self.steps_per_epoch,
            "time_per_step_s": median("time_s") / self.steps_per_epoch if history else None,
            "replicas": self.strategy.num_replicas_in_sync,
            "strategy": distribute.strategy_name(self.strategy),
            "run_dir": self.run_dir.path,
            "weights_sha256": distribute.weights_digest(self.model),
        }
        if not self.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
            self.run_dir.write_summary(summary, worker=distribute.worker_index(self.strategy))
            return summary
        summary["model_path"] = self.run_dir.save_model(self.model, self.info.preprocessing)
        self.run_dir.write_summary(summary)
        return summary


def train(config, *, verbose=1):
    """Trains ``config.model`` on ``config.dataset``; resumes from ``config.out``.

    Args:
        config: a `TrainConfig`.
        verbose: 1 for a progress bar per epoch, 0 for silence.

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        UsageError: a bad setting or run directory (one line from ``keras-se train``).
        Diverged: the loss became non-finite.
        Preempted: SIGTERM; a checkpoint was saved, rerun to resume.

    Example:
        >>> from keras_se.training import TrainConfig, train
        >>> summary = train(TrainConfig(model="se_resnet18", epochs=1, out="/tmp/run", steps_per_epoch=2))  # doctest: +SKIP
        >>> sorted(summary)[:3]  # doctest: +SKIP
        ['best_val_accuracy', 'dataset', 'epochs']
    """
    return Trainer(config, verbose=verbose).run()


def format_summary(summary):
    """The one-line summary printed at the end of a run.

    Example:
        >>> summary = {"model": "se_resnet18", "dataset": "digits", "final_val_accuracy": 0.9861,
        ...            "epochs": 10, "params": 11_260_354, "train_time_s": 83.4,
        ...            "model_path": "runs/se_resnet18/model.keras"}
        >>> print(format_summary(summary))
        se_resnet18 on digits: val_accuracy 0.9861 after 10 epochs, 11,260,354 params, 83 s training, model: runs/se_resnet18/model.keras
    """
    acc = summary.get("final_val_accuracy")
    return (
        f"{summary['model']} on {summary['dataset']}: val_accuracy "
        f"{'n/a' if acc is None else f'{acc:.4f}'} after {summary['epochs']} epochs, "
        f"{summary['params']:,} params, {summary['train_time_s']:.0f} s training, "
        f"model: {summary.get('model_path', '(not written on this worker)')}"
    )
