"""The TF Serving directory layout: ``<base>/models.config`` and ``<base>/<name>/<version>/``.

Versions are numbered directories, never overwritten; an export is written into a
temporary ``<base>/<name>/.tmp-export-<version>-<pid>-<hex>`` (a name TF Serving ignores)
and published with one ``os.rename`` (`publish`). Temporary directories of processes that
are gone are removed by the next export (`remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil

from keras_se_core import fileio
from keras_se_core.errors import UsageError

#: Files and names of the TF Serving layout.
MODELS_CONFIG = "models.config"
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
REQUEST_FILE = "request.json"
METADATA_FILE = "keras_se_export.json"
TMP_PREFIX = ".tmp-export-"

_TMP_RE = re.compile(r"^" + re.escape(TMP_PREFIX) + r"(\d+)-(\d+)-[0-9a-f]+$")


class VersionExistsError(UsageError, FileExistsError):
    """The requested version exists already (versions are never overwritten).

    A `UsageError` (so the CLI prints one line and exits 2) and a ``FileExistsError``.

    Example:
        >>> issubclass(VersionExistsError, FileExistsError)
        True
        >>> export_model("runs/se_resnet18", "models/", version=1)  # doctest: +SKIP
        Traceback (most recent call last):
        VersionExistsError: ...
    """


def existing_versions(model_dir):
    """Sorted numbered versions in ``<base>/<name>`` (what TF Serving would load).

    Example:
        >>> import os, tempfile
        >>> model_dir = tempfile.mkdtemp()
        >>> for entry in ("1", "3", "notes"):
        ...     os.mkdir(os.path.join(model_dir, entry))
        >>> existing_versions(model_dir), next_version(model_dir)
        ([1, 3], 4)
    """
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(n) for n in os.listdir(model_dir) if n.isdigit())


def next_version(model_dir):
    """One more than the highest existing version in ``model_dir``, or 1.

    Example (see also `existing_versions`):
        >>> next_version("no/such/models/se_resnet18")
        1
    """
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(model_dir):
    """Removes temporary export directories whose exporting process is gone.

    Returns the removed paths. Directories of running exports are left alone.

    Example (a temporary directory left by process id 999999999, which cannot be alive):
        >>> import os, tempfile
        >>> model_dir = tempfile.mkdtemp()
        >>> os.mkdir(os.path.join(model_dir, f"{TMP_PREFIX}1-999999999-00ff00ff"))
        >>> [os.path.basename(p) for p in remove_stale_temporaries(model_dir)]
        ['.tmp-export-1-999999999-00ff00ff']
        >>> os.listdir(model_dir)
        []
    """
    removed = []
    if not os.path.isdir(model_dir):
        return removed
    for entry in sorted(os.listdir(model_dir)):
        match = _TMP_RE.match(entry)
        if match and not _pid_alive(int(match.group(2))):
            path = os.path.join(model_dir, entry)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def prepare_model_dir(base_dir, name):
    """Creates ``<base>/<name>`` if needed; one clear error when the base is unusable."""
    model_dir = os.path.join(base_dir, name)
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise UsageError(f"`base` exists and is not a directory. Received: base={base_dir!r}")
    try:
        os.makedirs(model_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"`base` is not writable ({err.strerror or err}). Received: base={base_dir!r}"
        ) from err
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise UsageError(f"`base` is not writable. Received: base={base_dir!r}")
    return model_dir


def version_path(model_dir, name, version):
    """``<model_dir>/<version>`` for a new version: ``VersionExistsError`` if it exists."""
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise VersionExistsError(
            f"Version {version} of {name!r} already exists; versions are never "
            f"overwritten (omit --version for the next one). Received: version={version}, "
            f"path={final!r}"
        )
    return final


def temporary_path(model_dir, version):
    """A fresh ``<model_dir>/.tmp-export-<version>-<pid>-<hex>`` (not created)."""
    return os.path.join(model_dir, f"{TMP_PREFIX}{version}-{os.getpid()}-{secrets.token_hex(4)}")


def publish(tmp, final, name, version):
    """One rename makes the version visible, complete (never over an existing version)."""
    exists = VersionExistsError(
        f"Version {version} of {name!r} was created by another export meanwhile. "
        f"Received: version={version}, path={final!r}"
    )
    if os.path.exists(final):
        raise exists
    try:
        os.rename(tmp, final)
    except OSError as err:
        if os.path.exists(final):
            raise exists from err
        raise


# ---------------------------------------------------------------------- models.config
def read_models_config(path):
    """The ``ModelServerConfig`` at ``path`` (empty when there is none); UsageError if unreadable."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    if os.path.exists(path):
        try:
            with open(path) as f:
                text_format.Parse(f.read(), config)
        except (OSError, text_format.ParseError) as err:
            raise UsageError(
                f"Existing {MODELS_CONFIG} cannot be read or parsed, not overwriting it "
                f"({' '.join(str(err).split())}). Received: {path!r}"
            ) from err
    return config


def write_models_config(path, name, base_path):
    """Adds (or updates) ``name`` in the model_config_list, keeping other models."""
    from google.protobuf import text_format

    config = read_models_config(path)
    entries = config.model_config_list.config
    entry = next((e for e in entries if e.name == name), None) or entries.add()
    entry.name = name
    entry.base_path = base_path
    entry.model_platform = "tensorflow"
    fileio.write_text(path, text_format.MessageToString(config))
