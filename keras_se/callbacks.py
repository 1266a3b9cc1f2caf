"""Keras callbacks for ``model.fit`` users: the excitation analysis while a network learns.

`ExcitationMonitor` is ``keras-se train --log-excitations`` for any training loop that
calls ``model.fit``: every N epochs (and after the last) it runs the analysis of Hu et
al. (2018), Section 7.2 ("Role of Excitation") on a fixed sample, and writes the same
TensorBoard tags and the same ``excitations/epoch_K.json`` files, through the same code
(`keras_se.excitation_log.ExcitationRecorder`).

Example:
    >>> import keras_se
    >>> from keras_se.callbacks import ExcitationMonitor
    >>> monitor = ExcitationMonitor((x_val[:500], y_val[:500]), log_dir="logs/se", every=5)  # doctest: +SKIP
    >>> model.fit(x, y, epochs=20, callbacks=[monitor])  # doctest: +SKIP
"""

from __future__ import annotations

import os

import keras
import numpy as np

from keras_se.excitation_log import ExcitationRecorder, due
from keras_se.rundir import RunDir
from keras_se_core.validation import check_positive_int


class ExcitationMonitor(keras.callbacks.Callback):
    """Logs the SE excitations of the model being fitted, every ``every`` epochs.

    Writes into ``log_dir``, after every ``every``-th epoch and after the last one:

    * TensorBoard summaries (TensorFlow backend only: the writer is TensorFlow's):
      ``excitation/<block>`` histograms of the gate values, ``excitation_mean/<block>``
      and ``specificity/<block>`` scalars, and the ``figures/specificity_by_depth`` and
      ``figures/excitation_by_depth`` images — the tags of ``keras-se train
      --log-excitations``;
    * ``<log_dir>/excitations/epoch_K.json`` (K counted from 1): the full
      `keras_se.analysis.ExcitationAnalysis` with ``"epoch": K``, on every backend. On
      JAX and PyTorch only the JSON is written (TensorBoard summaries need TensorFlow).

    Works for any model with SE layers (`keras_se.SqueezeExcite`, any
    `keras_se.layers.SEGate`) at its top level and one image input.

    Args:
        sample: ``(images, labels)``: preprocessed images (what the model takes) and
            class indices (or one-hot rows); analysed whole at each logged epoch
            (the paper uses 50 images per class).
        log_dir: directory for the event file and ``excitations/``.
        every: analyse after every N-th epoch (and after the last).
        class_names: names of the classes; default ``"0"``, ``"1"``, ... up to the
            largest label.

    Raises:
        ValueError: bad arguments (named), or, when training starts, a model without
            SE layers (the message names the model).

    Example:
        >>> import numpy as np
        >>> from keras_se import models
        >>> model = models.get("se_resnet18", input_shape=(16, 16, 3), classes=3)
        >>> model.compile("sgd", "sparse_categorical_crossentropy")
        >>> x, y = np.random.rand(6, 16, 16, 3).astype("float32"), np.arange(6) % 3
        >>> monitor = ExcitationMonitor((x, y), log_dir="/tmp/se_logs", every=1)
        >>> _ = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])  # doctest: +SKIP
    """

    def __init__(self, sample, *, log_dir, every=1, class_names=None):
        super().__init__()
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise ValueError(
                "`sample` must be a pair (images, labels). "
                f"Received: sample of type {type(sample).__name__}"
            )
        images, labels = (np.asarray(part) for part in sample)
        if len(images) == 0 or len(images) != len(labels):
            raise ValueError(
                "`sample` must hold as many labels as images, at least one. Received: "
                f"{len(images)} images and {len(labels)} labels"
            )
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"`log_dir` must be a directory path. Received: log_dir={log_dir!r}")
        check_positive_int("every", every)
        indices = labels.argmax(-1) if labels.ndim == 2 else labels.astype("int64")
        if class_names is None:
            class_names = [str(i) for i in range(int(indices.max()) + 1)]
        self.images, self.labels = images, indices
        self.class_names = list(class_names)
        self.log_dir, self.every = os.fspath(log_dir), every
        self.run_dir = RunDir(self.log_dir)  # the owner of the excitations/epoch_K.json format
        self.recorder, self.writer, self.epochs = None, None, None

    def on_train_begin(self, logs=None):
        self.recorder = ExcitationRecorder(
            self.model, self.images, self.labels, class_names=self.class_names
        )
        self.epochs = self.params.get("epochs") if self.params else None
        if keras.backend.backend() == "tensorflow" and self.writer is None:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        epoch += 1  # Keras counts from 0; the logs and the CLI from 1
        if due(epoch, every=self.every, epochs=self.epochs):
            self.recorder.record(epoch, self.run_dir, self.writer)

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.flush()
