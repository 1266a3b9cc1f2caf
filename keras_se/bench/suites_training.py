"""Benchmarks of the training loop itself: `keras_se.training.Trainer` against ``model.fit``,
bfloat16 against float32, and the bytes each worker reads with sharded input.

Like every `keras_se.bench` figure, A and B run interleaved in one process after warm-up
and only their ratio is judged. The read volume is measured in fresh processes, one per
(topology, worker), from ``/proc/self/io`` (``rchar``: bytes returned by ``read`` calls,
page cache included) around one epoch of the worker's input pipeline.

Run ``python -m keras_se.bench.worker read-volume ROOT N I`` for one worker's figure.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from keras_se.bench.harness import Figure, interleave
from keras_se.bench.process import read_worker_result, run_worker
from keras_se_core.configs import TrainConfig

__all__ = [
    "GENERATED_TFDS",
    "bench_excitation_log",
    "bench_loop_vs_fit",
    "bench_precision",
    "bench_read_volume",
    "worker_read_bytes",
    "write_tfds",
]


def _trainer(out, **overrides):
    from keras_se.training import Trainer

    values = dict(model="se_resnet18", dataset="digits", batch_size=64, epochs=1000, out=out)
    values.update(overrides)
    trainer = Trainer(TrainConfig(**values), verbose=0)
    trainer.setup()
    trainer.restore()
    return trainer


def _trainer_epochs(trainer):
    """A callable that runs the trainer's next epoch (its loop only: no evaluation or saving)."""
    epoch = [0]

    def run():
        trainer.train_epoch(epoch[0])
        epoch[0] += 1

    return run


def _per_step_figure(name, description, labels, times, steps):
    """A TensorFlow `Figure` of epoch times (`interleave`'s two lists) divided by ``steps``."""
    a, b = ([t / steps for t in side] for side in times)
    return Figure(name, description, *labels, a, b, backend="tensorflow")


def bench_loop_vs_fit(*, steps, repeats, image_size=32, batch=64, model="se_resnet18"):
    """``keras-se train``'s loop vs ``compile(); fit()`` of the same model, data and optimizer."""
    import keras

    from keras_se import data

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(
            os.path.join(tmp, "loop"),
            model=model,
            steps_per_epoch=steps,
            image_size=image_size,
            batch_size=batch,
        )
        fit_model = keras.models.clone_model(trainer.model)
        fit_model.compile(
            optimizer=keras.optimizers.SGD(
                trainer.config.peak_learning_rate(),
                momentum=0.9,
                weight_decay=trainer.config.weight_decay,
            ),
            loss="sparse_categorical_crossentropy",
            jit_compile=False,
        )
        epoch = [0]

        def fit():
            ds = data.make_dataset(
                trainer.info,
                trainer.sources["train"],
                training=True,
                batch_size=batch,
                seed=0,
                epoch=epoch[0],
            ).take(steps)
            fit_model.fit(ds, epochs=1, verbose=0)
            epoch[0] += 1

        a, b = interleave(_trainer_epochs(trainer), fit, repeats=repeats, warmup=1)
    description = f"keras-se train loop vs model.fit, {model} {image_size}², b{batch}, per step"
    return _per_step_figure("loop_vs_fit", description, ("Trainer", "model.fit"), (a, b), steps)


def bench_precision(*, steps, repeats, image_size=32, batch=64, model="se_resnet18"):
    """The training loop in mixed bfloat16 vs float32 (CPUs with AVX512_BF16 / AMX gain)."""
    shared = dict(model=model, steps_per_epoch=steps, image_size=image_size, batch_size=batch)
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = _trainer(os.path.join(tmp, "bf16"), mixed_precision="bfloat16", **shared)
        fp32 = _trainer(os.path.join(tmp, "fp32"), **shared)
        a, b = interleave(_trainer_epochs(bf16), _trainer_epochs(fp32), repeats=repeats, warmup=1)
    description = f"training step, mixed bfloat16 vs float32, {model} {image_size}², b{batch}"
    return _per_step_figure("bf16_vs_fp32", description, ("bfloat16", "float32"), (a, b), steps)


def bench_excitation_log(*, repeats, model="se_resnet18", image_size=32, batch=64, steps=None):
    """The cost of ``--log-excitations``: a training epoch plus one analysis vs the epoch alone.

    The quickstart's setting (digits, 1,437 training images; the analysis sample is the
    whole 360-image validation split, at most 50 per class). A = epoch + log, B = epoch.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(
            os.path.join(tmp, "run"),
            model=model,
            image_size=image_size,
            batch_size=batch,
            log_excitations=1,
            steps_per_epoch=steps,
        )
        writer = tf.summary.create_file_writer(os.path.join(tmp, "logs"))
        epoch = _trainer_epochs(trainer)
        logged = [0]

        def epoch_and_log():
            epoch()
            logged[0] += 1
            trainer.excitations.log(logged[0], writer)

        a, b = interleave(epoch_and_log, epoch, repeats=repeats, warmup=1)
    return Figure(
        "excitation_log_overhead",
        f"training epoch + --log-excitations analysis vs the epoch alone ({model}, digits {image_size}², "
        f"b{batch}, {len(trainer.excitations.recorder.labels)} images analysed)",
        "epoch + log",
        "epoch",
        a,
        b,
        backend="tensorflow",
    )


# --------------------------------------------------------------------------- read volume
GENERATED_TFDS = "keras_se_generated_images"


def _generated_builder():
    """A TFDS builder of random PNG images (registered on first use, not at import)."""
    import tensorflow_datasets as tfds

    registered = getattr(_generated_builder, "cls", None)
    if registered is not None:
        return registered

    class KerasSeGeneratedImages(tfds.core.GeneratorBasedBuilder):
        """Random 64x64 PNGs in 2 classes; ``images`` training examples, 1/8 as many for test."""

        VERSION = tfds.core.Version("1.0.0")
        images = 800

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(64, 64, 3)),
                        "label": tfds.features.ClassLabel(num_classes=2),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {
                "train": self._generate_examples(self.images, 0),
                "test": self._generate_examples(max(self.images // 8, 2), 1),
            }

        def _generate_examples(self, count, seed):
            rng = np.random.default_rng(seed)
            for i in range(count):
                yield (
                    i,
                    {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "label": i % 2},
                )

    _generated_builder.cls = KerasSeGeneratedImages
    return KerasSeGeneratedImages


def write_tfds(data_dir, *, images=800, files=4):
    """Prepares the generated TFDS dataset in ``data_dir``, each split in ``files`` files."""
    import tensorflow_datasets as tfds

    builder = _generated_builder()(data_dir=data_dir)
    builder.images = images
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(num_shards=files))
    return GENERATED_TFDS


def _rchar():
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


def worker_read_bytes(data_dir, num_workers, worker, *, sharded=True, batch_size=32):
    """Bytes read by worker ``worker`` of ``num_workers`` over one training epoch."""
    from keras_se import data

    _generated_builder()
    info, sources = data.describe_dataset(GENERATED_TFDS, data_dir=data_dir)
    source = sources["train"]
    if not sharded:
        source.file_lengths = None  # every worker reads every record and keeps its slice
    ds = data.make_dataset(
        info,
        source,
        training=True,
        batch_size=batch_size,
        num_input_pipelines=num_workers,
        input_pipeline_id=worker,
    )
    before = _rchar()
    images = sum(int(x.shape[0]) for x, _ in ds)
    return {"bytes": _rchar() - before, "images": images}


def bench_read_volume(*, images=800, workers=(1, 2, 4), timeout=600):
    """Bytes read per worker for 1, 2, 4 workers (a fresh process each), against 1/N of one worker's."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_tfds(tmp, images=images, files=max(workers))
        for sharded in (True, False):
            for n in workers:
                for i in range(n):
                    unsharded = [] if sharded else ["--unsharded"]
                    out = run_worker("read-volume", tmp, n, i, *unsharded, timeout=timeout)
                    row = read_worker_result(out.stdout)
                    rows.append(dict(row, workers=n, worker=i, sharded=sharded))
    one = next(r["bytes"] for r in rows if r["workers"] == 1 and r["sharded"])
    figures = []
    for sharded in (True, False):
        for n in workers[1:]:
            per_worker = [r["bytes"] for r in rows if r["workers"] == n and r["sharded"] == sharded]
            figures.append(
                Figure(
                    f"read_volume_{n}" if sharded else f"read_volume_{n}_unsharded",
                    f"bytes read per worker of {n}, TFDS in {max(workers)} files"
                    + ("" if sharded else ", unsharded (global slices)"),
                    f"worker of {n}",
                    f"1/{n} of 1 worker",
                    per_worker,
                    [one / n] * n,
                    unit="B",
                    backend="tensorflow",
                )
            )
    return figures, rows
