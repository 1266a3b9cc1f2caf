"""`RunDir`: the one owner of a training run directory's files.

Every other module (training, export, visualize, tuning, quickstart) reads and writes a
run through this class, never by file name::

    config.json                  format version, the `TrainConfig`, the dataset description
    checkpoints/                 tf.train checkpoints: model, optimizer, position (epoch, step)
    history.json, history.csv    one row per completed epoch
    logs/                        TensorBoard event files
    excitations/epoch_K.json     excitation statistics logged during training
    model.keras                  the final model (model.preprocessing.json beside it)
    summary.json                 final accuracy, parameters, time
    worker_K.summary.json        non-chief workers' summaries (multi-worker runs)
    .lock                        the running process's id; an advisory lock (`RunDir.lock`)

Format versions: 1 (keras_se 0.1: checkpoints hold model, optimizer and epoch) and
2 (checkpoints also hold the step inside the epoch and the epoch's running sums, so a
run resumes mid-epoch). A version-1 directory resumes (its checkpoint is read as
version 1 and later checkpoints are version 2); a directory written by a newer
keras_se is refused with an error naming both versions.

Example:
    >>> import tempfile
    >>> run = RunDir(tempfile.mkdtemp())
    >>> run.write_history([{"epoch": 1, "val_accuracy": 0.5}])
    >>> run.read_history()
    [{'epoch': 1, 'val_accuracy': 0.5}]
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import glob
import json
import os
import re
import shutil

from keras_se_core.errors import UsageError
from keras_se_core.fileio import atomic_open, atomic_path, write_json

#: The run-directory format this version writes (see the module docstring).
FORMAT_VERSION = 2


class RunDir:
    """A training run directory (see the module docstring for its files).

    Args:
        path: the directory (need not exist yet).
    """

    CONFIG = "config.json"
    HISTORY = "history.json"
    HISTORY_CSV = "history.csv"
    SUMMARY = "summary.json"
    MODEL = "model.keras"
    CHECKPOINTS = "checkpoints"
    LOGS = "logs"
    EXCITATIONS = "excitations"
    LOCK = ".lock"

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))

    def __repr__(self):
        return f"RunDir({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    # ----------------------------------------------------------------- layout
    @property
    def config_path(self):
        return self.file(self.CONFIG)

    @property
    def model_path(self):
        return self.file(self.MODEL)

    @property
    def summary_path(self):
        return self.file(self.SUMMARY)

    @property
    def logs_dir(self):
        return self.file(self.LOGS)

    @property
    def checkpoint_dir(self):
        return self.file(self.CHECKPOINTS)

    def worker_checkpoint_dir(self, index):
        """Scratch checkpoints of non-chief worker ``index`` (the MWMS pattern: all save)."""
        return self.file(f".worker_{index}_checkpoints")

    def worker_summary_path(self, index):
        return self.file(f"worker_{index}.summary.json")

    def excitations_path(self, epoch):
        return os.path.join(self.file(self.EXCITATIONS), f"epoch_{int(epoch)}.json")

    @classmethod
    def is_run_dir(cls, path):
        """True when ``path`` is a directory holding a run's ``config.json``."""
        return os.path.isfile(os.path.join(os.fspath(path), cls.CONFIG))

    # ----------------------------------------------------------------- creation
    def create(self, *, what="out"):
        """Creates the directory (and parents); UsageError naming ``what`` if not writable.

        Returns the list of directories that did not exist before, so a run that fails
        before its first epoch can remove exactly what it created (`remove_created`).
        """
        created, head = [], self.path
        while head and not os.path.exists(head):
            created.append(head)
            head = os.path.dirname(head)
        try:
            os.makedirs(self.path, exist_ok=True)
            with atomic_open(self.file(".write_test")) as f:
                f.write("ok")
            os.remove(self.file(".write_test"))
        except OSError as err:
            raise UsageError(
                f"`{what}` is not a writable directory. Received: {what}={self.path!r} "
                f"({err.strerror or err})"
            ) from err
        return created

    def lock(self, *, what="out"):
        """Takes the run directory's advisory lock for this process (held until it exits).

        ``fcntl.flock`` on ``.lock``: the kernel releases it when the process ends, however
        it ends, so a killed run never leaves a stale lock. The file holds the owner's
        process id, which a second run names in its error.

        Raises:
            UsageError: another live process holds the lock (naming its id).
        """
        fd = os.open(self.file(self.LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"`{what}` is in use by another run (process {owner}); wait for it to end or use "
                f"another --{what}. Received: {what}={self.path!r}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd  # kept open: closing it would release the lock
        return self

    def unlock(self):
        """Releases the lock taken by `lock` and removes ``.lock`` (a no-op without it)."""
        fd = getattr(self, "_lock_fd", None)
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.file(self.LOCK))
        os.close(fd)
        self._lock_fd = None

    @staticmethod
    def remove_created(created):
        """Removes directories returned by `create` if they are still empty."""
        for path in created:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                return

    # ----------------------------------------------------------------- config
    def read_config(self, *, what="out"):
        """The ``config.json`` dict (``{}`` if absent); refuses newer format versions.

        ``what``: the argument that named this directory, for the error messages
        (``out`` for training, ``source`` for export and visualize).
        """
        if not os.path.exists(self.config_path):
            return {}
        received = f"Received: {what}={self.path!r}"
        try:
            with open(self.config_path) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise UsageError(
                f"`{what}` holds an unreadable {self.CONFIG} ({err}). {received}"
            ) from err
        if not isinstance(config, dict):
            raise UsageError(
                f"`{what}` holds a {self.CONFIG} that is not a JSON object. {received}"
            )
        version = self.format_version(config)
        if version > FORMAT_VERSION:
            raise UsageError(
                f"`{what}` holds a run directory of format version {version}, written by a newer "
                f"keras_se; this version reads versions 1 to {FORMAT_VERSION}. {received}"
            )
        return config

    @staticmethod
    def format_version(config):
        """The format version of a ``config.json`` dict (1 when it has none)."""
        return int(config.get("format_version", 1))

    def write_config(self, train_config, dataset):
        """Writes the run's settings and dataset description (``DatasetInfo.to_dict()``)."""
        write_json(
            self.config_path,
            {
                "format_version": FORMAT_VERSION,
                "train": train_config.to_dict(),
                **dataset,
                "model": train_config.model,
            },
        )

    def saved_train_config(self):
        """The saved ``train`` settings dict (``{}`` for a new directory)."""
        return self.read_config().get("train", {})

    # ----------------------------------------------------------------- history / summary
    def read_history(self):
        path = self.file(self.HISTORY)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return json.load(f)

    def write_history(self, rows):
        """Writes ``history.json`` and ``history.csv`` (each atomically)."""
        write_json(self.file(self.HISTORY), rows)
        with atomic_open(self.file(self.HISTORY_CSV), newline="") as f:
            if rows:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

    def read_summary(self):
        with open(self.summary_path) as f:
            return json.load(f)

    def write_summary(self, summary, *, worker=None):
        """The chief's ``summary.json``, or a non-chief worker's own summary file."""
        write_json(
            self.summary_path if worker is None else self.worker_summary_path(worker), summary
        )

    def write_excitations(self, epoch, stats):
        os.makedirs(self.file(self.EXCITATIONS), exist_ok=True)
        write_json(self.excitations_path(epoch), stats)

    def excitation_epochs(self):
        """Epochs with a saved ``excitations/epoch_K.json``, ascending."""
        paths = glob.glob(os.path.join(self.file(self.EXCITATIONS), "epoch_*.json"))
        return sorted(int(os.path.basename(p)[len("epoch_") : -len(".json")]) for p in paths)

    # ----------------------------------------------------------------- model
    def save_model(self, model, preprocessing):
        """Writes ``model.keras`` atomically, then its preprocessing sidecar."""
        from keras_se import data

        with atomic_path(self.model_path) as tmp:  # the temporary name keeps ".keras"
            model.save(tmp)
        data.save_preprocessing(self.model_path, preprocessing)
        return self.model_path

    def has_model(self):
        return os.path.isfile(self.model_path)

    def load_model(self):
        """The final model (``keras_se`` layers registered), its preprocessing recorded.

        `keras_se.models.preprocessing.of` gives the `Preprocessing` of its sidecar.
        """
        import keras

        from keras_se import data
        from keras_se.models import preprocessing

        model = keras.models.load_model(self.model_path, safe_mode=True)
        return preprocessing.attach(model, data.load_preprocessing(self.model_path))

    # ----------------------------------------------------------------- checkpoints
    CHECKPOINT_STATE = "checkpoint"  # tf.train.CheckpointManager's list of checkpoints

    def checkpoint_candidates(self):
        """Checkpoint prefixes to restore from, newest first (``checkpoints/ckpt-N``).

        Every prefix with an ``.index`` file, and every prefix the state file names (whose
        files may be missing: restoring it then fails and the caller says why), by number.
        """
        prefixes = {
            path[: -len(".index")]
            for path in glob.glob(os.path.join(self.checkpoint_dir, "ckpt-*.index"))
        }
        state = self.file(os.path.join(self.CHECKPOINTS, self.CHECKPOINT_STATE))
        if os.path.exists(state):
            with open(state) as f:
                for name in re.findall(r'checkpoint_paths?: "([^"]+)"', f.read()):
                    prefixes.add(os.path.join(self.checkpoint_dir, os.path.basename(name)))

        def number(prefix):
            found = re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix))
            return int(found.group(1)) if found else -1

        return sorted((p for p in prefixes if number(p) >= 0), key=number, reverse=True)

    def set_aside_checkpoints(self, prefixes, *, keep):
        """Renames the files of unusable checkpoints ``prefixes`` to ``*.unusable`` and
        rewrites the state file to list ``keep`` (prefixes, newest first), so that the
        checkpoint manager neither lists nor rotates them; nothing is deleted."""
        import tensorflow as tf

        for prefix in prefixes:
            for path in glob.glob(glob.escape(prefix) + ".*"):
                if not path.endswith(".unusable"):
                    os.replace(path, path + ".unusable")
        if not keep:
            return
        # The manager lists (and rotates) only checkpoints newer than the state's
        # last_preserved_timestamp: keep each kept checkpoint's own save time.
        state = tf.train.get_checkpoint_state(self.checkpoint_dir)
        saved = {}
        if state is not None:
            saved = {
                os.path.basename(path): stamp
                for path, stamp in zip(
                    state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps
                )
            }
        oldest_first = list(reversed(keep))
        stamps = [
            saved.get(os.path.basename(p)) or os.path.getmtime(p + ".index") for p in oldest_first
        ]
        preserved = state.last_preserved_timestamp if state is not None else 0.0
        tf.compat.v1.train.update_checkpoint_state(
            self.checkpoint_dir,
            keep[0],
            all_model_checkpoint_paths=oldest_first,
            all_model_checkpoint_timestamps=stamps,
            last_preserved_timestamp=min(preserved, min(stamps) - 1),
        )

    def has_checkpoint_state(self):
        """True once a checkpoint was saved here (the manager's state file exists)."""
        return os.path.exists(os.path.join(self.checkpoint_dir, self.CHECKPOINT_STATE))

    def remove_partial_checkpoints(self):
        """Deletes temporary files a failed checkpoint save left behind (``*_temp*``)."""
        for path in glob.glob(os.path.join(self.checkpoint_dir, "*_temp*")):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
