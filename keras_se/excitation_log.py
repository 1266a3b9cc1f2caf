"""Excitations watched while a network learns: the paper's analysis every N epochs, in TensorBoard.

Hu et al. (2018), Section 7.2 ("Role of Excitation") analyses one trained SE-ResNet-50.
`ExcitationLog` runs the same analysis (`keras_se.analysis`) during training, at the end
of every N-th epoch (and the last), on a fixed validation sample that follows the
paper's protocol: the first 50 images of each class in the validation split's fixed
order (at most 10 classes, spread over the label range). It writes to the run's
TensorBoard logs (``logs/``):

* ``excitation/<block>`` — a histogram of the block's gate values (images × channels);
* ``excitation_mean/<block>`` and ``specificity/<block>`` — the mean gate and the
  class-specificity η² as scalars (see `keras_se.analysis` for η²);
* ``figures/specificity_by_depth`` and ``figures/excitation_by_depth`` — the two
  figures of `keras_se.visualize` as images;

and ``excitations/epoch_K.json`` in the run directory (`keras_se.rundir.RunDir`), the
full `ExcitationAnalysis`. Only the chief writes.

Resume: an epoch is logged right after its checkpoint, and its JSON is written last; a
run restored at epoch K whose ``excitations/epoch_K.json`` is missing (killed between
the checkpoint and the log) logs epoch K from the restored weights before training on,
so every due epoch is logged once.

`ExcitationRecorder` is the one implementation of the analysis and its outputs; the
training loop uses it through `ExcitationLog`, ``model.fit`` users through
`keras_se.callbacks.ExcitationMonitor`.
"""

from __future__ import annotations

import io

import numpy as np

from keras_se import analysis as analysis_lib
from keras_se import data as data_lib

#: The paper's protocol: 50 images per class; and at most this many classes.
IMAGES_PER_CLASS = 50
MAX_CLASSES = 10


def sample_classes(num_classes, limit=MAX_CLASSES):
    """Up to ``limit`` class indices spread evenly over ``range(num_classes)``."""
    if num_classes <= limit:
        return list(range(num_classes))
    return sorted({round(i * (num_classes - 1) / (limit - 1)) for i in range(limit)})


def fixed_sample(info, source, *, per_class=IMAGES_PER_CLASS, batch_size=100):
    """The first ``per_class`` images of each sampled class, in the split's fixed order.

    Returns ``(images, labels)``: preprocessed float32 images and class indices.
    """
    wanted = set(sample_classes(info.num_classes))
    counts = dict.fromkeys(wanted, 0)
    images, labels = [], []
    for x, y in data_lib.make_dataset(info, source, training=False, batch_size=batch_size):
        x, y = x.numpy(), y.numpy()
        for image, label in zip(x, y):
            label = int(label)
            if label in counts and counts[label] < per_class:
                counts[label] += 1
                images.append(image)
                labels.append(label)
        if all(c >= per_class for c in counts.values()):
            break
    return np.stack(images), np.array(labels, "int64")


#: Images per probe call of `ExcitationRecorder.analyse`.
_BATCH = 100


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


class ExcitationRecorder:
    """The analysis and its outputs, shared by `ExcitationLog` and the Keras callback.

    One implementation of what ``keras-se train --log-excitations`` and
    `keras_se.callbacks.ExcitationMonitor` write: the TensorBoard summaries (TensorFlow
    only) and the epoch's JSON (`keras_se.rundir.RunDir.write_excitations`).

    Args:
        model: a model with SE layers (`keras_se.SqueezeExcite`, any
            `keras_se.layers.SEGate`); the probe shares its layers and weights.
        images, labels: the fixed sample (preprocessed images, class indices).
        class_names: the names of the classes ``labels`` index.

    Raises:
        ValueError: ``model`` has no SE layers (the message names the model).
    """

    def __init__(self, model, images, labels, *, class_names):
        self.class_names = list(class_names)
        self.blocks = analysis_lib.find_se_blocks(model)
        self.probe = analysis_lib.excitation_model(model, self.blocks)
        self.model_name = model.name
        self.images, self.labels = images, labels

    def analyse(self):
        """The `ExcitationAnalysis` of the sample and the raw gates, one ``(N, C)`` per block."""
        pad_to = _BATCH if len(self.images) > _BATCH else None  # one batch shape, one trace
        batches = [
            analysis_lib.probe_gates(self.probe, self.images[start : start + _BATCH], pad_to=pad_to)
            for start in range(0, len(self.images), _BATCH)
        ]
        gates = [np.concatenate(block) for block in zip(*batches)]
        result = analysis_lib.analyze_gates(
            self.model_name, self.blocks, gates, self.labels, class_names=self.class_names
        )
        return result, gates

    @staticmethod
    def write_summaries(writer, epoch, result, gates):
        """The TensorBoard summaries of one analysis (needs TensorFlow)."""
        import tensorflow as tf

        from keras_se import visualize

        with writer.as_default(step=epoch):
            for stats, gate in zip(result.blocks, gates):
                tf.summary.histogram(f"excitation/{stats.name}", gate.ravel())
                tf.summary.scalar(f"excitation_mean/{stats.name}", float(gate.mean()))
                if np.isfinite(stats.specificity):
                    tf.summary.scalar(f"specificity/{stats.name}", stats.specificity)
            for name, figure in (
                ("specificity_by_depth", visualize.specificity_by_depth_figure(result)),
                ("excitation_by_depth", visualize.excitation_by_depth_figure(result)),
            ):
                png = tf.io.decode_png(_png(figure), channels=4)
                tf.summary.image(f"figures/{name}", png[None])
        writer.flush()

    def record(self, epoch, run_dir, writer=None):
        """Analyses now, writes the summaries (when ``writer``), then the epoch's JSON last."""
        result, gates = self.analyse()
        if writer is not None:
            self.write_summaries(writer, epoch, result, gates)
        run_dir.write_excitations(epoch, dict(result.to_dict(), epoch=epoch))
        return result


class ExcitationLog:
    """Analyses the SE blocks of ``model`` every ``every`` epochs and logs the results.

    Args:
        model: the model being trained (the probe shares its layers and weights).
        run_dir: the `keras_se.rundir.RunDir`.
        info, source: the `DatasetInfo` and the validation source the sample comes from.
        every: analyse after every N-th epoch (and after the last).
        epochs: the run's number of epochs.
        sample: ``(images, labels)`` to analyse instead of `fixed_sample` of ``source``.
    """

    def __init__(self, model, run_dir, info, source, *, every, epochs, sample=None):
        self.run_dir, self.every, self.epochs = run_dir, every, epochs
        images, labels = sample if sample is not None else fixed_sample(info, source)
        self.recorder = ExcitationRecorder(model, images, labels, class_names=info.class_names)

    def due(self, epoch):
        """True when epoch ``epoch`` (1-based) is analysed."""
        return due(epoch, every=self.every, epochs=self.epochs)

    def catch_up(self, epoch, writer):
        """Logs ``epoch`` (the restored one) if it was due and its log is missing."""
        if epoch and self.due(epoch) and epoch not in self.run_dir.excitation_epochs():
            self.log(epoch, writer)

    def analyse(self):
        """The `ExcitationAnalysis` of the sample and the raw gates, one ``(N, C)`` per block."""
        return self.recorder.analyse()

    def log(self, epoch, writer):
        """Analyses now and writes the TensorBoard summaries, then ``excitations/epoch_K.json``."""
        return self.recorder.record(epoch, self.run_dir, writer)


def due(epoch, *, every, epochs=None):
    """True when the 1-based ``epoch`` is analysed: every ``every``-th and the last."""
    return epoch % every == 0 or (epochs is not None and epoch == epochs)
